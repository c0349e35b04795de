"""The presence store of a single replica (no `REDIS_URL`): the same steps, in process.

Each step mirrors one of `RedisStore`'s scripts; it runs without awaiting, so it is atomic
in the event loop. Announcements go through the in-process broker like any message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from relay_service.presence.store import Stored
from shared.identity import username_key


@dataclass(slots=True)
class _Factory:
    username: str
    online: bool = False
    since: int = 0
    status: bytes | None = None
    status_ts: int = 0
    sessions: dict[str, int] = field(default_factory=dict)
    due: int = 0


class MemoryStore:
    def __init__(
        self, publish: Callable[[str, bytes], None], channel_of: Callable[[str], str]
    ) -> None:
        self._publish = publish
        self._channel_of = channel_of
        self._factories: dict[str, _Factory] = {}
        self._pending: dict[str, int] = {}
        self._replicas: dict[str, int] = {}
        self._replica_factories: dict[str, set[str]] = {}

    def _factory(self, username: str) -> _Factory:
        key = username_key(username)
        factory = self._factories.get(key)
        if factory is None:
            factory = self._factories[key] = _Factory(username)
        return factory

    async def join(
        self, replica: str, username: str, sessions: int, now_ms: int, announcement: bytes
    ) -> bool:
        self._replica_factories.setdefault(replica, set()).add(username)
        factory = self._factory(username)
        factory.username = username
        factory.sessions[replica] = sessions
        factory.due = 0
        if factory.online:
            return False
        factory.online, factory.since = True, now_ms
        self._publish(self._channel_of(username), announcement)
        return True

    async def leave(self, replica: str, username: str, due_ms: int) -> int:
        factory = self._factories.get(username_key(username))
        due = 0
        if factory is not None:
            factory.sessions.pop(replica, None)
            if factory.online and not factory.sessions:
                due = factory.due = factory.due or due_ms
        if due:
            self._pending[username] = due
        self._replica_factories.get(replica, set()).discard(username)
        return due

    async def settle(self, username: str, due_ms: int, announcement: bytes) -> bool:
        factory = self._factories.get(username_key(username))
        if self._pending.get(username) == due_ms:
            del self._pending[username]
        if factory is None or factory.due != due_ms:
            return False
        factory.due, factory.online, factory.since = 0, False, due_ms
        self._publish(self._channel_of(username), announcement)
        return True

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        due = sorted((at, name) for name, at in self._pending.items() if at <= now_ms)
        return [(name, at) for at, name in due[:limit]]

    async def save_statuses(self, statuses: list[tuple[str, bytes, int]]) -> None:
        for username, status, ts_ms in statuses:
            factory = self._factory(username)
            if ts_ms >= factory.status_ts:
                factory.status, factory.status_ts = status, ts_ms

    async def heartbeat(self, replica: str, now_ms: int) -> bool:
        known = replica in self._replicas
        self._replicas[replica] = now_ms
        return not known

    async def stale_replicas(self, before_ms: int, limit: int) -> list[tuple[str, int]]:
        stale = [(name, at) for name, at in self._replicas.items() if at < before_ms]
        return stale[:limit]

    async def factories_of(self, replica: str) -> list[str]:
        return sorted(self._replica_factories.get(replica, ()))

    async def forget_replica(self, replica: str, heartbeat_ms: int) -> None:
        if self._replicas.get(replica) == heartbeat_ms:
            del self._replicas[replica]
            self._replica_factories.pop(replica, None)

    async def trim(self, before_ms: int) -> None:
        for key, factory in list(self._factories.items()):
            if not factory.online and factory.since < before_ms:
                del self._factories[key]

    async def load(self, after_ms: int) -> list[Stored]:
        return [
            Stored(f.username, f.online, f.since, f.status, f.status_ts)
            for f in self._factories.values()
            if f.online or (f.since and f.since >= after_ms)
        ]
