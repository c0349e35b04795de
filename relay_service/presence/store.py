"""What the presence tracker needs of its store: a few atomic steps per factory.

The rules (when a factory goes online or offline, the grace, who is dead, what to re-write
after an outage) live in `relay_service.presence.tracker`, once, for both stores. A store
only makes each step atomic: `RedisStore` with one Lua script per factory step (the
factory's hash and its observer channel share one cluster slot) and `MemoryStore` in
process. Every step is idempotent, so the tracker retries any that failed.

A step that changes what observers see publishes the change itself, atomically with it
(`announcement`: a PRESENCE_UPDATE broker message built by the tracker), so exactly one
replica announces each change even when every replica sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Stored:
    """A factory's presence as the store has it."""

    username: str
    online: bool
    since: int
    status: bytes | None
    """The `d` of its latest status, raw JSON, exactly as delivered."""
    status_ts: int


class PresenceStore(Protocol):
    async def join(
        self, replica: str, username: str, sessions: int, now_ms: int, announcement: bytes
    ) -> bool:
        """This replica has `sessions` (> 0) sessions of the factory: cancel any grace, and
        if it was not online, make it online since `now_ms` and publish `announcement`.
        True when it went online."""

    async def leave(self, replica: str, username: str, due_ms: int) -> int:
        """This replica has no session of it any more. If no replica has one and it is
        online, its grace runs until `due_ms` (or the earlier due already set). Returns the
        due time while the grace runs, else 0."""

    async def settle(self, username: str, due_ms: int, announcement: bytes) -> bool:
        """The grace that was due at `due_ms` ran out: if it still runs (nothing identified
        since), the factory goes offline since `due_ms` and `announcement` is published.
        Either way it is no longer pending. True when it went offline."""

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` factories whose grace ran out by `now_ms`: (username, due)."""

    async def save_statuses(self, statuses: list[tuple[str, bytes, int]]) -> None:
        """Keep each factory's latest status, `(username, d, ts)` (a later `ts` wins)."""

    async def heartbeat(self, replica: str, now_ms: int) -> bool:
        """Mark the replica alive; True when the store did not know it (first heartbeat,
        declared dead meanwhile, or the store was emptied): its state must be re-written."""

    async def stale_replicas(self, before_ms: int, limit: int) -> list[tuple[str, int]]:
        """Replicas whose last heartbeat is older than `before_ms`: (replica, heartbeat)."""

    async def factories_of(self, replica: str) -> list[str]:
        """The factories the replica had sessions of."""

    async def forget_replica(self, replica: str, heartbeat_ms: int) -> None:
        """Drop a replica, unless it heartbeated after `heartbeat_ms` (it is alive)."""

    async def trim(self, before_ms: int) -> None:
        """Forget factories offline since before `before_ms` (their hashes expire alone)."""

    async def load(self, after_ms: int) -> list[Stored]:
        """Every factory online, or offline since `after_ms` or later."""
