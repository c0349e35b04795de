"""A replica's drain, seen from the survivor: two relays on one Redis; DRAIN_SESSIONS
identified sessions on replica A, heartbeat probes on replica B. SIGTERM to A closes its
sessions with 1012, paced at `DRAIN_RATE_PER_SECOND` (the default, then all at once);
each client reconnects to B at once and identifies. Measured: how long until every
session is back (on B), B's Identify rate and CPU per Identify meanwhile, and the
heartbeat round trip of B's other sessions during the drain (p50, p99) against before it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import orjson
from websockets.asyncio.client import ClientConnection

from bench.cluster import RelayProcess, close_all, identified, percentile, relays
from shared.identity import UserType

DRAIN_SESSIONS = 2000
IDENTIFY_CONCURRENCY = 100
PROBES = 5
PROBE_INTERVAL_SECONDS = 0.05
DRAIN_RATES = (1000, 1_000_000)
"""The default pace, and (in effect) all at once, as before the pacing."""


async def _probe(ws: ClientConnection, samples: list[float], stop: asyncio.Event) -> None:
    """Heartbeat round trips on one session of the survivor until `stop`."""
    while not stop.is_set():
        sent = time.perf_counter()
        await ws.send(orjson.dumps({"op": 1, "d": None}), text=True)
        while orjson.loads(await ws.recv()).get("op") != 2:
            pass
        samples.append(time.perf_counter() - sent)
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)


async def _moved(ws: ClientConnection, index: int, survivor: RelayProcess) -> ClientConnection:
    """Wait for this session's 1012, then identify on the survivor."""
    await ws.wait_closed()
    if ws.close_code != 1012:
        raise RuntimeError(f"closed with {ws.close_code}, not 1012")
    return await identified(survivor.url, f"viewer-{index}", UserType.VIEWER)


async def _drain(replicas: list[RelayProcess], rate: int) -> list[str]:
    draining, survivor = replicas
    gate = asyncio.Semaphore(IDENTIFY_CONCURRENCY)

    async def one(index: int) -> ClientConnection:
        async with gate:
            return await identified(draining.url, f"viewer-{index}", UserType.VIEWER)

    sessions = await asyncio.gather(*(one(i) for i in range(DRAIN_SESSIONS)))
    probes = [
        await identified(survivor.url, f"probe-{i}", UserType.OPERATOR) for i in range(PROBES)
    ]
    before: list[float] = []
    stop = asyncio.Event()
    probing = [asyncio.create_task(_probe(ws, before, stop)) for ws in probes]
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*probing)

    during: list[float] = []
    stop = asyncio.Event()
    probing = [asyncio.create_task(_probe(ws, during, stop)) for ws in probes]
    cpu_before = survivor.cpu_seconds()
    started = time.perf_counter()
    draining.process.send_signal(signal.SIGTERM)
    moved = await asyncio.gather(*(_moved(ws, i, survivor) for i, ws in enumerate(sessions)))
    elapsed = time.perf_counter() - started
    cpu_per_identify = (survivor.cpu_seconds() - cpu_before) / DRAIN_SESSIONS
    stop.set()
    await asyncio.gather(*probing)
    await close_all([*moved, *probes])
    return [
        f"drain: {DRAIN_SESSIONS:,} sessions closed with 1012 at {rate:,}/s "
        f"and re-identified on the survivor in {elapsed:.2f} s ({DRAIN_SESSIONS / elapsed:,.0f} "
        f"identifies/s, survivor CPU {cpu_per_identify * 1e6:.0f} µs each); the survivor's "
        f"heartbeat round trip p50 {percentile(during, 0.5) * 1e3:.2f} ms, "
        f"p99 {percentile(during, 0.99) * 1e3:.2f} ms during the drain "
        f"(before: p50 {percentile(before, 0.5) * 1e3:.2f} ms, "
        f"p99 {percentile(before, 0.99) * 1e3:.2f} ms)"
    ]


def run() -> Iterator[str]:
    for rate in DRAIN_RATES:
        with relays(2, DRAIN_RATE_PER_SECOND=str(rate)) as replicas:
            yield from asyncio.run(_drain(replicas, rate))
