"""Data access for users: lookups, creation, changes that revoke tokens, deletion."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.core.security import hash_password
from auth_service.models import User
from auth_service.schemas import UserCreate, UserUpdate
from shared import revocation as shared_revocation
from shared.identity import UserType, username_key


class UsernameTakenError(Exception):
    """Another user has this name (compared regardless of case)."""


async def revocation_cutoff() -> datetime:
    """The cutoff of a change made now, returned once it has come (under a second).

    Commit the change after this: tokens minted before it, even in the same second, are
    revoked, and tokens minted with the change are not (see `shared.revocation`).
    """
    cutoff = shared_revocation.revocation_cutoff(time.time())
    await shared_revocation.wait_for_cutoff(cutoff)
    return datetime.fromtimestamp(cutoff, UTC)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_name(session: AsyncSession, username: str) -> User | None:
    statement = select(User).where(User.username_key == username_key(username))
    return (await session.execute(statement)).scalar_one_or_none()


async def list_users(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[User], int]:
    total = await session.scalar(select(func.count()).select_from(User))
    page = select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    return list((await session.scalars(page)).all()), total or 0


async def list_factories(
    session: AsyncSession, *, limit: int, offset: int
) -> tuple[list[User], int]:
    """The factory users, by name (case-insensitive order), a page at a time."""
    factories = User.type == UserType.FACTORY
    total = await session.scalar(select(func.count()).select_from(User).where(factories))
    page = select(User).where(factories).order_by(User.username_key).limit(limit).offset(offset)
    return list((await session.scalars(page)).all()), total or 0


async def count_users(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(User)) or 0


async def count_active_admins(session: AsyncSession, *, lock: bool = False) -> int:
    """Enabled admins; with `lock`, their rows stay locked until the transaction ends
    (PostgreSQL; SQLite serializes writers anyway)."""
    statement = select(User.id).where(User.type == UserType.ADMIN, User.disabled.is_(False))
    if lock:
        statement = statement.with_for_update()
    return len((await session.scalars(statement)).all())


async def create_user(session: AsyncSession, data: UserCreate) -> User:
    """Insert and commit a user; `UsernameTakenError` if the name is taken in any case."""
    if await get_user_by_name(session, data.username) is not None:
        raise UsernameTakenError(data.username)
    user = User(
        username=data.username,
        username_key=username_key(data.username),
        password_hash=await hash_password(data.password),
        type=data.type,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:  # created concurrently since the check above
        await session.rollback()
        raise UsernameTakenError(data.username) from None
    return user


async def replace_password_hash(session: AsyncSession, user: User, new_hash: str) -> None:
    """The same password under the current hashing parameters: revokes nothing. Commits."""
    user.password_hash = new_hash
    await session.commit()


async def apply_update(user: User, changes: UserUpdate) -> datetime | None:
    """Apply a change (not committed); returns the revocation cutoff if tokens must go.

    Setting a password always revokes (it cannot be compared without hashing); a type or
    `disabled` value revokes only when it differs from the current one.
    """
    revokes = False
    if changes.password is not None:
        user.password_hash = await hash_password(changes.password)
        revokes = True
    if changes.type is not None and changes.type != user.type:
        user.type = changes.type
        revokes = True
    if changes.disabled is not None and changes.disabled != user.disabled:
        user.disabled = changes.disabled
        revokes = True
    if not revokes:
        return None
    user.tokens_revoked_before = await revocation_cutoff()
    return user.tokens_revoked_before
