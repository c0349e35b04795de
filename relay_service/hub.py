"""This replica's identified sessions, indexed by audience, and the fan-out to them.

The hub is a registry and a loop. It knows the channels' kinds (`relay_service.channels`):
a message on the factories' channel goes to every factory session, one on a factory shard
to the sessions of the factory its header names, one on an observer shard to every admin,
operator and viewer session (and to `on_observer_message`, presence's mirror). It is
synchronous on purpose: delivering a message only appends a frame to each listening
session's bounded outbox, so one slow socket never holds up the others and the broker's
listener never waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Protocol

from relay_service import frames, metrics
from relay_service.channels import SHARDS, Channels
from relay_service.frames import Dispatch
from shared.identity import UserType, username_key
from shared.protocol import CloseCode
from shared.tokens import TokenClaims


class Listener(Protocol):
    """What the hub needs of a session."""

    @property
    def claims(self) -> TokenClaims | None: ...

    def dispatch(self, dispatch: Dispatch) -> None: ...

    def floor(self, stream: bytes) -> tuple[str, int] | None:
        """The last message of `stream` this factory session has, while no live message
        passed it (a resume's, or READY's cursor)."""

    def close_soon(self, code: CloseCode, reason: str) -> None: ...


class Audience(Enum):
    ALL_FACTORIES = "all_factories"
    ONE_FACTORY = "one_factory"
    OBSERVERS = "observers"


class Hub:
    def __init__(self, channels: Channels, *, late_after_seconds: float) -> None:
        self._late_after = late_after_seconds
        self._audience_of: dict[str, Audience] = {channels.factories: Audience.ALL_FACTORIES}
        for n in range(SHARDS):
            self._audience_of[f"{channels.prefix}:relay:{{fown:{n}}}"] = Audience.ONE_FACTORY
            self._audience_of[f"{channels.prefix}:relay:{{obs:{n}}}"] = Audience.OBSERVERS
        self._factories: set[Listener] = set()
        self._by_factory: dict[str, set[Listener]] = {}
        self._observers: set[Listener] = set()
        self._sessions: set[Listener] = set()
        self._per_user: dict[str, int] = {}
        self._heard: dict[tuple[bytes, str], tuple[str, int]] = {}
        """Per stream with sessions here, the last message handed to them (epoch, offset):
        where filling a gap starts."""
        self.on_observer_message: Callable[[Dispatch], None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[Listener]:
        """A copy: closing a session while iterating changes the registry."""
        return list(self._sessions)

    def sessions_of(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)

    @property
    def has_factories(self) -> bool:
        return bool(self._factories)

    def factory_sessions(self) -> Iterator[tuple[str, list[Listener]]]:
        """Each factory with sessions here (by username key), with a copy of them."""
        for key, listeners in list(self._by_factory.items()):
            yield key, list(listeners)

    def add(self, session: Listener, claims: TokenClaims) -> None:
        self._sessions.add(session)
        self._per_user[claims.user_id] = self.sessions_of(claims.user_id) + 1
        if claims.user_type is UserType.FACTORY:
            self._factories.add(session)
            self._by_factory.setdefault(username_key(claims.username), set()).add(session)
        else:
            self._observers.add(session)

    def remove(self, session: Listener, claims: TokenClaims) -> bool:
        """Forget a session; False when it was not registered (refused at `add`'s caller)."""
        if session not in self._sessions:
            return False
        self._sessions.remove(session)
        remaining = self._per_user[claims.user_id] - 1
        if remaining:
            self._per_user[claims.user_id] = remaining
        else:
            del self._per_user[claims.user_id]
        if claims.user_type is UserType.FACTORY:
            self._factories.discard(session)
            key = username_key(claims.username)
            same_factory = self._by_factory.get(key, set())
            same_factory.discard(session)
            if not same_factory:
                self._by_factory.pop(key, None)
                self._heard.pop((frames.OWN, key), None)
        else:
            self._observers.discard(session)
        return True

    def deliver(self, channel: str, message: bytes) -> None:
        """The broker's handler for audience channels: fan out to this replica's listeners."""
        audience = self._audience_of.get(channel)
        if audience is None:
            return
        dispatch = frames.unpack(message)
        now = time.time()
        age = now - dispatch.ts_ms / 1000
        if age > self._late_after:  # published past its time (a publish Redis held): not now
            metrics.DROPPED["late"].inc()
            return
        metrics.DELIVERY_LATENCY.observe(max(0.0, age))
        if audience is Audience.OBSERVERS:
            self._to_observers(dispatch)
        elif dispatch.stream == frames.NOT_KEPT:
            self._to_factories_unkept(dispatch, audience)
        else:
            self.deliver_kept(dispatch, now_ms=int(now * 1000))

    def deliver_kept(self, dispatch: Dispatch, *, now_ms: int) -> None:
        """A stream's message to its factory sessions, live or read back from the stream;
        never once it has expired."""
        if dispatch.expires_at <= now_ms:
            metrics.DROPPED["expired"].inc()
            return
        if dispatch.stream == frames.ALL:
            stream, listeners = (frames.ALL, ""), self._factories
        else:
            stream = (frames.OWN, username_key(dispatch.name))
            listeners = self._by_factory.get(stream[1]) or set()
        if not listeners:
            return
        heard = self._heard.get(stream)
        if heard is not None and heard[0] == dispatch.epoch and dispatch.offset <= heard[1]:
            return  # handed over already: read back while filling a gap, then heard live
        self._heard[stream] = (dispatch.epoch, dispatch.offset)
        for session in listeners:
            session.dispatch(dispatch)
        metrics.FRAMES_OUT[dispatch.op] += len(listeners)

    def heard(self, stream: bytes, factory: str = "") -> tuple[str, int] | None:
        """The last message of a stream (`own` of `factory`) handed to sessions here."""
        return self._heard.get((stream, factory))

    def _to_factories_unkept(self, dispatch: Dispatch, audience: Audience) -> None:
        """A message to factories no stream kept (sent while the broker was unreachable,
        handed only to this replica's sessions): delivered live, the sessions' cursors
        untouched."""
        if audience is Audience.ALL_FACTORIES:
            listeners = self._factories
        else:
            listeners = self._by_factory.get(username_key(dispatch.name)) or set()
        for session in listeners:
            session.dispatch(dispatch)
        metrics.FRAMES_OUT[dispatch.op] += len(listeners)

    def _to_observers(self, dispatch: Dispatch) -> None:
        listeners = self._observers
        for session in listeners:
            session.dispatch(dispatch)
        metrics.FRAMES_OUT[dispatch.op] += len(listeners)
        if self.on_observer_message is not None:
            self.on_observer_message(dispatch)
