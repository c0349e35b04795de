"""Presence and last status (which factories are online, since when, and what each said
last): `Presence` holds the rules, a store (`MemoryStore` for a single replica,
`RedisStore` across replicas) makes each step atomic."""

from __future__ import annotations

from relay_service.presence.glue import presence_for
from relay_service.presence.memory import MemoryStore
from relay_service.presence.redis import RedisStore
from relay_service.presence.store import PresenceStore, Stored
from relay_service.presence.tracker import Presence

__all__ = ["MemoryStore", "Presence", "PresenceStore", "RedisStore", "Stored", "presence_for"]
