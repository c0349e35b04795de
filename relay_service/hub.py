"""This replica's identified sessions, indexed by audience, and the fan-out to them.

The hub is only a registry and a loop: it does not subscribe the broker (it tells the
relay which channels became needed or unneeded) and it knows nothing of the wire format
beyond handing each listener the dispatch's prefix and body. It is synchronous on
purpose: delivering a message only appends a frame to each listening session's bounded
outbox, so one slow socket never holds up the others and the broker's listener never
waits.
"""

from __future__ import annotations

import time
from typing import Protocol

from relay_service import frames, metrics
from relay_service.channels import Channels
from shared.protocol import CloseCode
from shared.tokens import TokenClaims


class Listener(Protocol):
    """What the hub needs of a session."""

    @property
    def claims(self) -> TokenClaims | None: ...

    def dispatch(self, prefix: bytes, body: bytes) -> None: ...

    def close_soon(self, code: CloseCode, reason: str) -> None: ...


class Hub:
    def __init__(self, channels: Channels, *, late_after_seconds: float) -> None:
        self._channels = channels
        self._late_after = late_after_seconds
        self._audiences: dict[str, set[Listener]] = {}
        self._sessions: set[Listener] = set()
        self._per_user: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[Listener]:
        """A copy: closing a session while iterating changes the registry."""
        return list(self._sessions)

    def sessions_of(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)

    def add(self, session: Listener, claims: TokenClaims) -> list[str]:
        """Register an identified session; returns the channels it is the first to need."""
        self._sessions.add(session)
        self._per_user[claims.user_id] = self.sessions_of(claims.user_id) + 1
        first = []
        for channel in self._channels.audience_of(claims.user_type, claims.username):
            listeners = self._audiences.setdefault(channel, set())
            if not listeners:
                first.append(channel)
            listeners.add(session)
        return first

    def remove(self, session: Listener, claims: TokenClaims) -> list[str] | None:
        """Forget a session; returns the channels nobody on this replica needs any more,
        or None when the session was not registered (refused at `add`'s caller)."""
        if session not in self._sessions:
            return None
        self._sessions.remove(session)
        remaining = self._per_user[claims.user_id] - 1
        if remaining:
            self._per_user[claims.user_id] = remaining
        else:
            del self._per_user[claims.user_id]
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
        """The broker's handler for audience channels: fan out to this replica's listeners."""
        listeners = self._audiences.get(channel)
        if not listeners:
            return
        dispatch = frames.unpack(message)
        age = time.time() - dispatch.ts_ms / 1000
        if age > self._late_after:  # published past its time (a publish Redis held): not now
            metrics.DROPPED["late"].inc()
            return
        metrics.DELIVERY_LATENCY.observe(max(0.0, age))
        prefix = dispatch.prefix
        for session in listeners:
            session.dispatch(prefix, dispatch.body)
        metrics.FRAMES_OUT[dispatch.op].inc(len(listeners))
