"""Token revocation: the database is the truth, Redis (when set) is the relays' copy.

A revocation (logout; a user's password, type or `disabled` changed; a user deleted) is
committed to the database first: from then on the auth service refuses the tokens,
whatever Redis does. Then the relays are told (a key they read at Identify, an event on
which they close live sessions). When that write fails (Redis down, full, hung), the
request still succeeds — the change is made and in force here — and the copy is
repaired by `RevocationSync` as soon as Redis answers again.

`RevocationSync` also restores the whole copy from the database whenever Redis lost it:
at start, after Redis was unreachable, when the marker key is gone (Redis restarted
empty, FLUSHALL) or when the last revocation this process wrote is gone (a failover to a
lagging replica). It checks every `REVOCATION_SYNC_INTERVAL_SECONDS`, so a relay accepts
a token the database says is revoked for at most about that long after Redis is back.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy.exc
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_service.models import DeletedUser, RevokedToken, User
from shared.logging import get_logger
from shared.redis_connect import REDIS_ERRORS
from shared.revocation import (
    RedisRevocations,
    RevocationCopy,
    RevocationEvent,
    TokenRevocation,
    UserCutoff,
    issued_before,
)
from shared.tokens import TokenClaims

log = get_logger(__name__)

PENDING_EVENTS_LIMIT = 10_000
"""Revocation events kept for relays while Redis cannot take them (oldest dropped first)."""
BACKING_SERVICE_ERRORS: tuple[type[Exception], ...] = (
    *REDIS_ERRORS,  # TimeoutError included
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)

LastWrite = UserCutoff | TokenRevocation


class RevocationSync:
    """Keeps the relays' copy in Redis equal to the database's revocations."""

    def __init__(
        self,
        *,
        redis: RedisRevocations,
        copy: RevocationCopy,
        sessions: async_sessionmaker[AsyncSession],
        token_ttl_seconds: int,
        interval_seconds: float,
    ) -> None:
        self.redis = redis
        self._copy = copy
        self._sessions = sessions
        self._token_ttl = token_ttl_seconds
        self._interval = interval_seconds
        self._repair_needed = True  # at start: restore whatever Redis holds
        self._pending: deque[RevocationEvent] = deque(maxlen=PENDING_EVENTS_LIMIT)
        self._last_write: tuple[LastWrite, float] | None = None
        self._failing = False

    async def tell_relays(
        self,
        event: RevocationEvent,
        write: Callable[[], Awaitable[None]],
        last: LastWrite,
        *,
        username: str,
    ) -> None:
        """Write the relays' copy of a committed revocation, or leave it to the repair."""
        try:
            await write()
        except BACKING_SERVICE_ERRORS as error:
            log.warning("revocation_copy_deferred", user=username, error=type(error).__name__)
            self._pending.append(event)
            self._repair_needed = True
            return
        self._last_write = (last, time.monotonic() + last.ttl_seconds)

    @property
    def has_pending_events(self) -> bool:
        """Revocations whose copy could not be written yet."""
        return bool(self._pending)

    def _remembered_write(self) -> LastWrite | None:
        if self._last_write is None or self._last_write[1] <= time.monotonic():
            return None
        return self._last_write[0]

    async def run(self) -> None:
        """Check (and repair) the copy every interval until cancelled."""
        while True:
            try:
                await self.sync_once()
            except BACKING_SERVICE_ERRORS as error:
                self._repair_needed = True
                if not self._failing:
                    log.warning("revocation_sync_failed", error=type(error).__name__)
                self._failing = True
            else:
                self._failing = False
            await asyncio.sleep(self._interval)

    async def sync_once(self) -> None:
        if not self._repair_needed and not await self._copy.is_missing(self._remembered_write()):
            return
        self._repair_needed = False
        events = list(self._pending)
        self._pending.clear()
        try:
            users, tokens = await self._in_force()
            await self._copy.restore(users, tokens)
            await self._copy.publish(events)
        except BaseException:
            self._repair_needed = True
            self._pending.extendleft(reversed(events))
            raise
        log.info("revocations_restored", users=len(users), tokens=len(tokens), events=len(events))

    async def _in_force(self) -> tuple[list[UserCutoff], list[TokenRevocation]]:
        """Every revocation that still concerns a token that has not expired."""
        now = datetime.now(UTC)
        since = now - timedelta(seconds=self._token_ttl)
        async with self._sessions() as session:
            changed = await session.execute(
                select(User.id, User.tokens_revoked_before).where(
                    User.tokens_revoked_before > since
                )
            )
            deleted = await session.execute(
                select(DeletedUser.id, DeletedUser.deleted_at).where(DeletedUser.deleted_at > since)
            )
            logged_out = await session.execute(
                select(RevokedToken.jti, RevokedToken.expires_at).where(
                    RevokedToken.expires_at > now
                )
            )
            users = [
                self._user_cutoff(user_id, cutoff, now)
                for user_id, cutoff in [*changed.all(), *deleted.all()]
                if cutoff is not None
            ]
            tokens = [
                TokenRevocation(jti, max(1, math.ceil((expires - now).total_seconds())))
                for jti, expires in logged_out.all()
            ]
        return users, tokens

    def _user_cutoff(self, user_id: uuid.UUID, cutoff: datetime, now: datetime) -> UserCutoff:
        left = (cutoff - now).total_seconds() + self._token_ttl
        return UserCutoff(str(user_id), cutoff.timestamp(), max(1, math.ceil(left)))


class Revocations:
    """Revoking tokens: in the database (committed first), then for the relays."""

    def __init__(self, sync: RevocationSync | None, token_ttl_seconds: int) -> None:
        self.sync = sync
        self._token_ttl = token_ttl_seconds

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
        try:
            await session.commit()
        except IntegrityError:  # the same token logged out concurrently: already done
            await session.rollback()
        if self.sync is not None:
            sync = self.sync
            ttl = max(1, math.ceil(claims.expires_at - time.time()))
            await sync.tell_relays(
                RevocationEvent(user_id=claims.user_id, token_id=claims.token_id),
                lambda: sync.redis.revoke_token(claims),
                TokenRevocation(claims.token_id, ttl),
                username=claims.username,
            )

    async def delete_user(self, session: AsyncSession, user: User, cutoff: datetime) -> None:
        """Delete a user and keep its tombstone while its tokens may live. Commits."""
        forgotten = datetime.now(UTC) - timedelta(seconds=self._token_ttl)
        await session.execute(delete(DeletedUser).where(DeletedUser.deleted_at < forgotten))
        await session.delete(user)
        session.add(DeletedUser(id=user.id, deleted_at=cutoff))
        await self.commit_user_revocation(session, user, cutoff)

    async def commit_user_revocation(
        self, session: AsyncSession, user: User, cutoff: datetime | None
    ) -> None:
        """Commit a user change; with a cutoff, then tell the relays."""
        user_id, username = str(user.id), user.username
        await session.commit()
        if cutoff is None or self.sync is None:
            return
        sync = self.sync
        revoked_before = cutoff.timestamp()
        await sync.tell_relays(
            RevocationEvent(user_id=user_id, revoked_before=revoked_before),
            lambda: sync.redis.revoke_user(user_id, revoked_before),
            UserCutoff(user_id, revoked_before, self._token_ttl),
            username=username,
        )

    @staticmethod
    async def is_revoked(session: AsyncSession, claims: TokenClaims, user: User) -> bool:
        cutoff = user.tokens_revoked_before
        if issued_before(claims, None if cutoff is None else cutoff.timestamp()):
            return True
        statement = select(RevokedToken.jti).where(RevokedToken.jti == claims.token_id)
        return (await session.scalar(statement)) is not None
