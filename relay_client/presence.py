"""Which factories are online, for admins, operators and viewers.

Every READY carries a snapshot of the factories (online now, or seen recently), and each
change afterwards comes as a `PRESENCE_UPDATE` event. Each READY starts again from its
snapshot: a factory it leaves out is neither online nor seen recently, and is forgotten.
An update may repeat what the snapshot showed, and one heard on the previous session may
be newer than a snapshot read on another replica, so per factory the entry with the
latest `since` wins. A factory's statuses (op 5) keep its `status` current.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class FactoryPresence:
    username: str
    online: bool
    since: int
    """When it went online (or offline), ms since the epoch."""
    status: dict[str, Any] | None = None
    """The `d` of its latest status dispatch (`id`, `from`, `payload`, `ts`), or None."""


def parse_presence(data: Any) -> FactoryPresence | None:
    """A snapshot entry or a `PRESENCE_UPDATE`'s `d`, or None if it is not one."""
    if not isinstance(data, Mapping):
        return None
    username, online, since = data.get("username"), data.get("online"), data.get("since")
    if not isinstance(username, str) or not isinstance(online, bool):
        return None
    if isinstance(since, bool) or not isinstance(since, int):
        return None
    status = data.get("status")
    return FactoryPresence(username, online, since, status if isinstance(status, dict) else None)


class PresenceBook:
    """username → FactoryPresence; each method returns the entries it changed."""

    def __init__(self) -> None:
        self.factories: dict[str, FactoryPresence] = {}

    def snapshot(self, entries: Any) -> list[FactoryPresence]:
        """READY's `factories` (see the module); returns the entries that changed."""
        parsed = [parse_presence(data) for data in entries] if isinstance(entries, list) else []
        listed = {entry.username for entry in parsed if entry is not None}
        self.factories = {name: e for name, e in self.factories.items() if name in listed}
        changed = []
        for entry in parsed:
            if entry is not None and self._keep(entry, take_status=True):
                changed.append(self.factories[entry.username])
        return changed

    def update(self, data: Any) -> FactoryPresence | None:
        """A `PRESENCE_UPDATE`'s `d` (it carries no status: the last one is kept)."""
        entry = parse_presence(data)
        if entry is None or not self._keep(entry, take_status=False):
            return None
        return self.factories[entry.username]

    def status(self, username: str, data: dict[str, Any]) -> FactoryPresence:
        """A factory's status dispatch: it is online (since its status, if not known yet)."""
        known = self.factories.get(username)
        if known is None:
            known = FactoryPresence(username, online=True, since=_ts(data))
        self.factories[username] = replace(known, status=data)
        return self.factories[username]

    def _keep(self, entry: FactoryPresence, *, take_status: bool) -> bool:
        known = self.factories.get(entry.username)
        if known is not None and entry.since < known.since:
            return False
        if known is not None and not take_status:
            entry = replace(entry, status=known.status)
        if entry == known:
            return False
        self.factories[entry.username] = entry
        return True


def _ts(data: Mapping[str, Any]) -> int:
    ts = data.get("ts")
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
