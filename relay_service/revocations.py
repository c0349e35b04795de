"""The relay's one owner of revocation: the check at Identify and the closing of live sessions.

The auth service writes revocations to Redis and publishes an event for each
(`shared.revocation`). At Identify the relay looks the token up in Redis; a revocation
published while that lookup was under way is caught by the window of recent events,
checked after the await. Each event closes this replica's sessions it covers with 4004.
Without Redis the relay cannot learn of revocations (tokens then end at `exp`).

The lookup is bounded: when Redis fails it or does not answer within the timeout, the
check raises `RevocationCheckUnavailableError` and Identify fails closed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable

import orjson

from relay_service.broker.base import BadMessageError
from relay_service.hub import Listener
from shared.protocol import CloseCode
from shared.redis_connect import REDIS_ERRORS
from shared.revocation import RedisRevocations, RevocationEvent
from shared.tokens import TokenClaims

RECENT_SECONDS = 10.0
"""How long an event is remembered for Identifies whose Redis lookup it may have raced."""


class RevocationCheckUnavailableError(Exception):
    """Redis failed the revocation lookup, or did not answer it in time."""


class Revocations:
    def __init__(
        self,
        store: RedisRevocations | None,
        sessions: Callable[[], Iterable[Listener]],
        *,
        timeout_seconds: float,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._timeout = timeout_seconds
        self._recent: deque[tuple[float, RevocationEvent]] = deque()

    @property
    def enabled(self) -> bool:
        """Whether revocations reach this relay at all (they travel through Redis)."""
        return self._store is not None

    async def is_revoked(self, claims: TokenClaims) -> bool:
        """Revoked in Redis, or by an event heard while asking (checked after the await).

        Raises `RevocationCheckUnavailableError` when Redis cannot answer within the timeout."""
        revoked = False
        if self._store is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    revoked = await self._store.is_revoked(claims)
            except TimeoutError:
                raise RevocationCheckUnavailableError(
                    f"no answer within {self._timeout:g} s"
                ) from None
            except REDIS_ERRORS as error:
                raise RevocationCheckUnavailableError(str(error) or repr(error)) from None
        return revoked or any(event.revokes(claims) for _, event in self._recent)

    def on_event(self, channel: str, message: bytes) -> None:
        """The broker's handler for the revocation channel: remember, then close."""
        try:
            event = RevocationEvent.from_json(message)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise BadMessageError("malformed", f"revocation event: {error!r}") from None
        self._remember(event)
        for session in self._sessions():
            claims = session.claims
            if claims is not None and event.revokes(claims):
                session.close_soon(CloseCode.AUTHENTICATION_FAILED, "token revoked")

    def _remember(self, event: RevocationEvent) -> None:
        now = time.monotonic()
        self._recent.append((now, event))
        while self._recent[0][0] < now - RECENT_SECONDS:
            self._recent.popleft()
