"""Token revocation: the database is the truth, Redis (when set) tells the relays.

Redis is written before the database commits: if Redis fails the request fails and
nothing is half-done; if the commit then fails, the relays refuse a few tokens the
database still accepts, which errs on the safe side.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.models import RevokedToken, User
from shared.revocation import RedisRevocations, issued_before
from shared.tokens import TokenClaims


class Revocations:
    def __init__(self, redis: RedisRevocations | None) -> None:
        self._redis = redis

    async def revoke_token(self, session: AsyncSession, claims: TokenClaims) -> None:
        """Logout: this token no longer works anywhere. Commits."""
        now = datetime.now(UTC)
        await session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
        session.add(
            RevokedToken(
                jti=claims.token_id,
                user_id=uuid.UUID(claims.user_id),
                expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
            )
        )
        if self._redis is not None:
            await self._redis.revoke_token(claims)
        try:
            await session.commit()
        except IntegrityError:  # the same token logged out concurrently: already done
            await session.rollback()

    async def commit_user_revocation(
        self, session: AsyncSession, user_id: uuid.UUID, cutoff: datetime | None
    ) -> None:
        """Commit a user change; with a cutoff, tell the relays first."""
        if cutoff is not None and self._redis is not None:
            await self._redis.revoke_user(str(user_id), cutoff.timestamp())
        await session.commit()

    @staticmethod
    async def is_revoked(session: AsyncSession, claims: TokenClaims, user: User) -> bool:
        cutoff = user.tokens_revoked_before
        if issued_before(claims, None if cutoff is None else cutoff.timestamp()):
            return True
        statement = select(RevokedToken.jti).where(RevokedToken.jti == claims.token_id)
        return (await session.scalar(statement)) is not None
