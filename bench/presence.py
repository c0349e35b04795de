"""Presence in Redis: memory per factory (`MEMORY USAGE`) and a reconnect storm's writes.

Writes `FACTORIES` factories through the relay's own store (`RedisStore`: the scripts a
replica runs), online with a status, under a prefix of its own on `REDIS_URL` (default
the local Redis), measures every key it made, and deletes them. Per factory: its hash
plus its share of the index and of its replica's set; figures for a typical status and
for the largest one a factory can send. Then `STORM` factories' first sessions joining one
replica at once (as after another replica's 1012 drain), through the tracker: how long
until every one is written (each join waits for its write before READY), and the
replica's CPU per join.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator

import orjson
from redis.asyncio import Redis

from relay_service.presence import Presence, RedisStore
from relay_service.presence.keys import PresenceKeys

FACTORIES = 1000
STORM = 2000
REPLICA = "0123456789abcdef"
TYPICAL_PAYLOAD = {"state": "running", "spindle_rpm": 1198, "temperature_c": 24.9}
LARGEST_PAYLOAD_BYTES = 65_536 - 100
"""About the largest payload a default `MAX_MESSAGE_BYTES` (64 KiB) frame carries."""


def _status(username: str, payload: object, ts_ms: int) -> bytes:
    """The `d` of a status as the relay stamps and delivers it."""
    stamp = {"id": str(uuid.uuid4()), "username": username, "type": "factory"}
    return orjson.dumps(
        {"id": uuid.uuid4().hex, "from": stamp, "target": None, "payload": payload, "ts": ts_ms}
    )


async def _bytes_per_factory(client: Redis, payload: object, online: bool) -> float:
    prefix = f"bench-presence-{uuid.uuid4().hex[:8]}"
    keys = PresenceKeys(prefix)
    store = RedisStore(
        client,
        keys,
        channel_of=lambda _: f"{prefix}:relay:bench",
        timeout_seconds=5,
        retention_seconds=604_800,
        ttl_seconds=30,
    )
    now = 1_764_430_000_000
    try:
        for n in range(FACTORIES):
            username = f"press-{n:05d}"
            await store.join(REPLICA, username, 1, now, b"-")
            await store.save_statuses([(username, _status(username, payload, now + 1), now + 1)])
            if not online:
                due = await store.leave(REPLICA, username, now + 5000)
                await store.settle(username, due, b"-")
        total = 0
        async for key in client.scan_iter(f"{prefix}:*", count=1000):
            total += await client.memory_usage(key, samples=0) or 0
        return total / FACTORIES
    finally:
        made = [key async for key in client.scan_iter(f"{prefix}:*", count=1000)]
        if made:
            await client.delete(*made)


async def _storm(client: Redis) -> str:
    prefix = f"bench-presence-{uuid.uuid4().hex[:8]}"
    store = RedisStore(
        client,
        PresenceKeys(prefix),
        channel_of=lambda _: f"{prefix}:relay:bench",
        timeout_seconds=5,
        retention_seconds=604_800,
        ttl_seconds=30,
    )
    presence = Presence(
        store,
        grace_ms=5000,
        ttl_seconds=30,
        retention_seconds=604_800,
        timeout_seconds=5,
        snapshot_status_bytes=1 << 20,
        announce=lambda username, online, since: b"-",
        notify=lambda username, online, since: None,
    )
    await presence.start()
    try:
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(presence.factory_joined(f"press-{n:05d}") for n in range(STORM)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await presence.stop()
        made = [key async for key in client.scan_iter(f"{prefix}:*", count=1000)]
        if made:
            await client.delete(*made)
    return (
        f"  {STORM:,} factories' first sessions at once: all written in {elapsed:.2f} s, "
        f"{cpu / STORM * 1e6:,.0f} µs of the replica's CPU each"
    )


async def _measure() -> list[str]:
    client = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        version = (await client.info("server"))["redis_version"]
        typical = _status("press-00000", TYPICAL_PAYLOAD, 0)
        largest = "x" * LARGEST_PAYLOAD_BYTES
        lines = [f"presence memory (Redis {version}, {FACTORIES} factories, MEMORY USAGE):"]
        for label, payload, online in (
            (f"online, typical status ({len(typical)} B d)", TYPICAL_PAYLOAD, True),
            ("offline, typical status", TYPICAL_PAYLOAD, False),
            (f"online, largest status ({LARGEST_PAYLOAD_BYTES} B payload)", largest, True),
        ):
            per_factory = await _bytes_per_factory(client, payload, online)
            lines.append(f"  {label}: {per_factory:,.0f} bytes per factory")
        lines.append(await _storm(client))
        return lines
    finally:
        await client.aclose()


def run() -> Iterator[str]:
    yield from asyncio.run(_measure())
