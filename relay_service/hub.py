"""This replica's identified sessions, indexed by audience, and the fan-out to them.

The hub is synchronous on purpose: delivering a message only appends a frame to each
listening session's bounded queue, so one slow socket never holds up the others and the
broker's listener never waits.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

from relay_service import metrics
from relay_service.channels import Channels, unpack
from shared.logging import get_logger
from shared.protocol import CloseCode, Op
from shared.revocation import RevocationEvent
from shared.tokens import TokenClaims

log = get_logger(__name__)

RECENT_REVOCATION_SECONDS = 10.0
DISPATCH_PREFIXES: dict[int, bytes] = {
    op: b'{"op":%d,"s":' % op for op in (Op.COMMAND, Op.STATUS, Op.EVENT)
}


class Listener(Protocol):
    """What the hub needs of a session."""

    @property
    def claims(self) -> TokenClaims | None: ...

    def dispatch(self, prefix: bytes, body: bytes) -> None: ...

    def close_soon(self, code: CloseCode, reason: str) -> None: ...


class Hub:
    def __init__(self, channels: Channels) -> None:
        self._channels = channels
        self._audiences: dict[str, set[Listener]] = {}
        self._sessions: set[Listener] = set()
        self._recent_revocations: deque[tuple[float, RevocationEvent]] = deque()

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[Listener]:
        return list(self._sessions)

    def add(self, session: Listener, claims: TokenClaims) -> list[str]:
        """Register an identified session; returns the channels it is the first to need."""
        self._sessions.add(session)
        first = []
        for channel in self._channels.audience_of(claims.user_type, claims.username):
            listeners = self._audiences.setdefault(channel, set())
            if not listeners:
                first.append(channel)
            listeners.add(session)
        return first

    def remove(self, session: Listener, claims: TokenClaims) -> list[str]:
        """Forget a session; returns the channels nobody on this replica needs any more."""
        self._sessions.discard(session)
        last = []
        for channel in self._channels.audience_of(claims.user_type, claims.username):
            listeners = self._audiences.get(channel)
            if listeners is None:
                continue
            listeners.discard(session)
            if not listeners:
                del self._audiences[channel]
                last.append(channel)
        return last

    def deliver(self, channel: str, message: bytes) -> None:
        """The broker's handler: fan a message out to this replica's listeners of `channel`."""
        if channel == self._channels.revocations:
            self._revoke_from(message)
            return
        listeners = self._audiences.get(channel)
        if not listeners:
            return
        op, ts_ms, body = unpack(message)
        metrics.DELIVERY_LATENCY.observe(max(0.0, time.time() - ts_ms / 1000))
        prefix = DISPATCH_PREFIXES[op]
        for session in listeners:
            session.dispatch(prefix, body)
        metrics.FRAMES_OUT[op].inc(len(listeners))

    def was_revoked_recently(self, claims: TokenClaims) -> bool:
        """Covers a revocation published while this session's Identify was being checked."""
        return any(event.revokes(claims) for _, event in self._recent_revocations)

    def _revoke_from(self, message: bytes) -> None:
        try:
            event = RevocationEvent.from_json(message)
        except (ValueError, KeyError, TypeError) as error:
            log.error("revocation_event_malformed", error=str(error))
            return
        self._revoke(event)

    def _revoke(self, event: RevocationEvent) -> None:
        now = time.monotonic()
        self._recent_revocations.append((now, event))
        while self._recent_revocations[0][0] < now - RECENT_REVOCATION_SECONDS:
            self._recent_revocations.popleft()
        for session in self.sessions():
            claims = session.claims
            if claims is not None and event.revokes(claims):
                session.close_soon(CloseCode.AUTHENTICATION_FAILED, "token revoked")
