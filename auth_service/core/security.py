"""Password hashing: argon2id through libpass's passlib API, always off the event loop."""

from __future__ import annotations

import asyncio
import functools

from passlib.context import CryptContext

# argon2id with the OWASP Password Storage Cheat Sheet minimum: 19 MiB of memory,
# 2 iterations, 1 degree of parallelism. Raise them here (and only here) to harden;
# existing hashes keep verifying since the parameters are stored in each hash, and are
# replaced at the user's next login (`verify_password`).
ARGON2_MEMORY_COST_KIB = 19456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

_context = CryptContext(
    schemes=["argon2"],
    argon2__type="ID",
    argon2__memory_cost=ARGON2_MEMORY_COST_KIB,
    argon2__time_cost=ARGON2_TIME_COST,
    argon2__parallelism=ARGON2_PARALLELISM,
)


@functools.cache
def _dummy_hash() -> str:
    """A hash no password is checked against for real: unknown users cost the same time."""
    return str(_context.hash("dummy password for unknown users"))


def _verify(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    if password_hash is None:
        _context.verify(password, _dummy_hash())
        return False, None
    ok, new_hash = _context.verify_and_update(password, password_hash)
    return bool(ok), None if new_hash is None else str(new_hash)


async def hash_password(password: str) -> str:
    return str(await asyncio.to_thread(_context.hash, password))


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Check a password; with no hash (unknown user), spend the same time and say no.

    Also returns a new hash when the password is right but its hash was made with older
    parameters than `ARGON2_*` (libpass's `verify_and_update`): store it, so raising the
    parameters reaches every user at their next login.
    """
    return await asyncio.to_thread(_verify, password, password_hash)


async def warm_up() -> None:
    """Compute the dummy hash at start so the first unknown-user login is not the slow one."""
    await asyncio.to_thread(_dummy_hash)
