"""Each replica's copy of every factory's presence and latest status, for READY's snapshot.

Fed by what the replica hears on the observer channels (PRESENCE_UPDATE and statuses),
seeded from the store at start and re-seeded after each broker reconnect, so a READY
costs no round trip to Redis. Per factory the entry with the latest `since` wins (and the
status with the latest `ts`), whatever order updates and seeds arrive in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from orjson import Fragment

from relay_service.presence.store import Stored
from shared.identity import username_key


@dataclass(slots=True)
class Entry:
    username: str
    online: bool
    since: int
    status: bytes | None = None
    status_ts: int = 0


class Mirror:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, username: str) -> Entry | None:
        return self._entries.get(username_key(username))

    def presence(self, username: str, online: bool, since: int) -> bool:
        """Apply a presence change; False when what the mirror has is as recent."""
        key = username_key(username)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = Entry(username, online, since)
            return True
        if since < entry.since or (since == entry.since and online == entry.online):
            return False
        entry.username, entry.online, entry.since = username, online, since
        return True

    def status(self, username: str, status: bytes, ts_ms: int) -> None:
        """Keep the latest status. A factory heard before its presence (its announcement
        is on its way) is taken as online since that status."""
        key = username_key(username)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = Entry(username, True, ts_ms, status, ts_ms)
        elif ts_ms >= entry.status_ts:
            entry.status, entry.status_ts = status, ts_ms

    def merge(
        self, stored: Iterable[Stored], local: Collection[str]
    ) -> tuple[list[Entry], set[str]]:
        """Re-seed from the store: returns the entries whose presence changed, and the keys
        of factories the mirror has online that the store does not know at all, except
        those with a session on this replica (`local`, username keys), which it writes
        again itself. The store may not know them yet (Redis was emptied or replaced,
        and their replicas are writing them again) or any more (their replica died
        meanwhile): `went_offline` settles those still missing a TTL later."""
        changed = []
        known = set()
        for record in stored:
            key = username_key(record.username)
            known.add(key)
            if self.presence(record.username, record.online, record.since):
                changed.append(self._entries[key])
            if record.status is not None:
                self.status(record.username, record.status, record.status_ts)
        missing = {
            key
            for key, entry in self._entries.items()
            if entry.online and key not in known and key not in local
        }
        return changed, missing

    def went_offline(self, key: str, since: int) -> Entry | None:
        """A factory missing from the store for a TTL is offline since `since`."""
        entry = self._entries.get(key)
        if entry is None or not entry.online or since < entry.since:
            return None
        entry.online, entry.since = False, since
        return entry

    def prune(self, before_ms: int) -> None:
        """Forget factories offline since before `before_ms` (past the retention)."""
        for key in [k for k, e in self._entries.items() if not e.online and e.since < before_ms]:
            del self._entries[key]

    def snapshot(self, after_ms: int, status_bytes: int) -> tuple[list[dict[str, Any]], int]:
        """READY's `factories`: online, or offline since `after_ms`, by username; each
        status is the raw JSON as delivered (an `orjson.Fragment`, serialized as is).

        The statuses in one snapshot total at most `status_bytes`, so READY fits the
        session's output bound; past it a factory's `status` is null (its next status
        arrives live). Returns the list and how many statuses were left out."""
        listed: list[dict[str, Any]] = []
        budget, left_out = status_bytes, 0
        for _, entry in sorted(self._entries.items()):
            if not entry.online and entry.since < after_ms:
                continue
            status: Fragment | None = None
            if entry.status is not None:
                if len(entry.status) <= budget:
                    budget -= len(entry.status)
                    status = Fragment(entry.status)
                else:
                    left_out += 1
            listed.append(
                {
                    "username": entry.username,
                    "online": entry.online,
                    "since": entry.since,
                    "status": status,
                }
            )
        return listed, left_out
