"""Data access for users: lookups, creation, changes that revoke tokens, deletion."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.core.security import hash_password
from auth_service.models import User
from auth_service.schemas import UserCreate, UserUpdate
from shared.identity import username_key


class UsernameTakenError(Exception):
    """Another user has this name (compared regardless of case)."""


def revocation_cutoff() -> datetime:
    """Now, rounded down to the millisecond like a token's `iat` (see shared.tokens).

    A token minted in the same millisecond as the change is kept: it was minted with the
    new password, type or state, which is what a login right after a change expects.
    """
    return datetime.fromtimestamp(math.floor(time.time() * 1000) / 1000, UTC)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_name(session: AsyncSession, username: str) -> User | None:
    statement = select(User).where(User.username_key == username_key(username))
    return (await session.execute(statement)).scalar_one_or_none()


async def list_users(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[User], int]:
    total = await session.scalar(select(func.count()).select_from(User))
    page = select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    return list((await session.scalars(page)).all()), total or 0


async def count_users(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(User)) or 0


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
    user.tokens_revoked_before = revocation_cutoff()
    return user.tokens_revoked_before
