"""Command streams (what the relay keeps for factories that reconnect), over real sockets
and a real Redis, the load generator in this process (on the same cores):

- memory: Redis memory per kept command (a typical 60-byte payload) and per full stream,
  read with `MEMORY USAGE` after the relay's own append script kept them;
- resume: one factory resumes after missing `RESUME_MISSED` commands: time from Identify
  to the last replayed command, and relay CPU for it;
- storm: `STORM_FACTORIES` factories on replica A, each sent `STORM_MISSED` targeted
  commands while A drains (1012); every factory reconnects to replica B at once and
  resumes: time until all are resumed, B's CPU per resume, and any command missing or
  delivered twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import orjson
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.cluster import REDIS_URL, RelayProcess, close_all, frame, identified, relays, token
from relay_service import frames
from relay_service.broker.redis_streams import RedisStreams
from relay_service.channels import Channels, Stream
from shared.identity import UserType
from shared.protocol import CloseCode, Op

MEMORY_COMMANDS = 1000
RESUME_MISSED = 1000
STORM_FACTORIES = 2000
STORM_MISSED = 2
IDENTIFY_CONCURRENCY = 100
LONG_TTL_MS = 600_000
QUIET_HEARTBEAT_MS = "600000"
"""The load generator sends no heartbeats: long enough for the slowest run."""


async def _memory() -> list[str]:
    redis = Redis.from_url(REDIS_URL)
    keys = Channels(f"bench-{uuid.uuid4().hex[:8]}").stream(Stream.OWN, "press-7")
    streams = RedisStreams(
        redis, history_size=MEMORY_COMMANDS, log_ttl_ms=LONG_TTL_MS, publish_command="PUBLISH"
    )
    stamped = {
        "id": uuid.uuid4().hex,
        "from": {"id": str(uuid.uuid4()), "username": "operator-1", "type": "operator"},
        "target": "press-7",
        "payload": {"action": "start", "rpm": 1200, "recipe": "r-17", "note": "x" * 16},
        "ts": int(time.time() * 1000),
        "expires_at": int(time.time() * 1000) + LONG_TTL_MS,
    }
    message = frames.stream_message(Op.COMMAND, None, stamped, stream=frames.OWN, target="press-7")
    size = len(frames.complete(message, "0" * frames.EPOCH_BYTES, 1))
    try:
        await streams.load()
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(MEMORY_COMMANDS):
                pipe.execute_command(*streams.append_command(keys, message))
            await pipe.execute()
        log = await redis.memory_usage(keys.log) or 0
        meta = await redis.memory_usage(keys.meta) or 0
    finally:
        await redis.delete(keys.log, keys.meta)
        await redis.aclose()
    return [
        f"streams memory: {log / MEMORY_COMMANDS:,.0f} B of Redis per kept command of "
        f"{size} B on the wire; a full stream of {MEMORY_COMMANDS:,} commands "
        f"{(log + meta) / 1024:,.0f} KiB (log {log:,} B, meta {meta} B)"
    ]


async def _send_targeted(operator: ClientConnection, target: str, count: int) -> None:
    for n in range(count):
        data = {"payload": {"n": n}, "target": target, "id": f"{target}-{n}"}
        await operator.send(frame(4, data), text=True)


async def _delivered(probe: ClientConnection, marker: str) -> None:
    """Wait until the relay has passed on everything sent before `marker`."""
    while orjson.loads(await probe.recv())["d"]["id"] != marker:
        pass


async def _resume_one(replicas: list[RelayProcess]) -> list[str]:
    relay = replicas[0]
    name = "press-resume"
    first = await identified_with(relay.url, name, None)
    cursors = first[1]["d"]["cursors"]
    await first[0].close()
    operator = await identified(relay.url, "operator-resume", UserType.OPERATOR)
    probe = await identified(relay.url, "probe-resume", UserType.FACTORY)
    await _send_targeted(operator, name, RESUME_MISSED)
    await operator.send(
        frame(4, {"payload": "mark", "target": "probe-resume", "id": "m"}), text=True
    )
    await _delivered(probe, "m")
    cpu_before = relay.cpu_seconds()
    started = time.perf_counter()
    ws, ready = await identified_with(relay.url, name, {"own": cursors["own"]})
    for _ in range(RESUME_MISSED):
        await ws.recv()
    elapsed = time.perf_counter() - started
    cpu = relay.cpu_seconds() - cpu_before
    await close_all([ws, operator, probe])
    return [
        f"resume: a factory that missed {RESUME_MISSED:,} commands resumed "
        f"(resumed {ready['d']['resumed']['own']}): READY and the whole replay in "
        f"{elapsed * 1e3:.0f} ms, relay CPU {cpu * 1e3:.0f} ms"
    ]


async def identified_with(
    url: str, username: str, resume: dict[str, Any] | None
) -> tuple[ClientConnection, dict[str, Any]]:
    """A factory past READY, resuming from `resume` when given."""
    ws = await connect(url, compression=None, max_queue=None, ping_interval=None)
    await ws.recv()
    identify: dict[str, Any] = {"token": token(username, UserType.FACTORY)}
    if resume is not None:
        identify["resume"] = resume
    await ws.send(orjson.dumps({"op": 3, "d": identify}), text=True)
    ready = orjson.loads(await ws.recv())
    if ready.get("t") != "READY":
        raise RuntimeError(f"identify failed: {ready}")
    return ws, ready


async def _storm(replicas: list[RelayProcess]) -> list[str]:
    draining, survivor = replicas
    gate = asyncio.Semaphore(IDENTIFY_CONCURRENCY)
    names = [f"press-{n}" for n in range(STORM_FACTORIES)]

    async def first(name: str) -> tuple[ClientConnection, dict[str, Any]]:
        async with gate:
            return await identified_with(draining.url, name, None)

    sessions = await asyncio.gather(*(first(name) for name in names))
    operator = await identified(survivor.url, "operator-storm", UserType.OPERATOR)
    cpu_before = survivor.cpu_seconds()
    started = time.perf_counter()
    draining.process.send_signal(signal.SIGTERM)
    for name in names:
        await _send_targeted(operator, name, STORM_MISSED)
    outcomes = await asyncio.gather(
        *(
            _come_back(ws, ready["d"]["cursors"], name, survivor)
            for (ws, ready), name in zip(sessions, names, strict=True)
        )
    )
    elapsed = time.perf_counter() - started
    cpu = survivor.cpu_seconds() - cpu_before
    await close_all([operator, *(ws for ws, _ in outcomes)])
    resumed = sum(ok for _, ok in outcomes)
    return [
        f"storm: {STORM_FACTORIES:,} factories drained (1012) from one replica, "
        f"{STORM_MISSED} commands each sent meanwhile, reconnected to the other at once: "
        f"{resumed:,} resumed with exactly their commands in {elapsed:.2f} s "
        f"(survivor CPU {cpu / STORM_FACTORIES * 1e6:.0f} µs per factory, sends included)"
    ]


async def _come_back(
    ws: ClientConnection, cursors: dict[str, Any], name: str, survivor: RelayProcess
) -> tuple[ClientConnection, bool]:
    """Read until the 1012 (keeping the last cursor, as a client does), resume on the
    survivor; True when every command arrived exactly once, in order."""
    own, ids = cursors["own"], []
    with suppress(ConnectionClosed):
        async for raw in ws:
            d = orjson.loads(raw)["d"]
            ids.append(d["id"])
            own = {"epoch": d["cursor"]["epoch"], "offset": d["cursor"]["offset"]}
    if ws.close_code != CloseCode.SERVICE_RESTART:
        raise RuntimeError(f"{name} closed with {ws.close_code}, not 1012")
    resumed, ready = await identified_with(survivor.url, name, {"own": own})
    async with asyncio.timeout(60):
        while len(ids) < STORM_MISSED:
            ids.append(orjson.loads(await resumed.recv())["d"]["id"])
    expected = [f"{name}-{n}" for n in range(STORM_MISSED)]
    return resumed, bool(ready["d"]["resumed"]["own"]) and ids == expected


def run() -> Iterator[str]:
    yield from asyncio.run(_memory())
    with relays(1, HEARTBEAT_INTERVAL_MS=QUIET_HEARTBEAT_MS) as replicas:
        yield from asyncio.run(_resume_one(replicas))
    with relays(
        2, DRAIN_RATE_PER_SECOND="1000", HEARTBEAT_INTERVAL_MS=QUIET_HEARTBEAT_MS
    ) as replicas:
        yield from asyncio.run(_storm(replicas))
