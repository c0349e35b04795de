"""One replica at scale: holding 20,000 sessions, and a 5,000-client reconnect storm.

The clients run in worker processes (each process has its own open-file limit, and one
Python process cannot drive 20,000 sockets and time heartbeats too); this process keeps a
small sample of sessions that heartbeat five times a second and times each ACK.

- hold: 20,000 identified sessions (fewer when the relay's open-file limit is lower: the
  figure says how many), each heartbeating every 30 s as clients do; the sample's ACK
  p50/p99, the relay's CPU while holding and its resident memory per session;
- storm: 5,000 clients connect and Identify at the same instant (a replica's 1012 sends
  its sessions to the survivors): how long until every one is READY, how many failed, and
  the sample's ACK p99 meanwhile.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from collections.abc import Iterator
from contextlib import suppress
from multiprocessing.synchronize import Event as EventType
from typing import Any, NamedTuple

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.cluster import RelayProcess, close_all, frame, identified, percentile, relays
from bench.sizes import seconds, size
from shared.identity import UserType

WORKERS = 4
"""Client processes (one in a quick run)."""
SAMPLE = 50
SAMPLE_RATE = 5
CLIENT_HEARTBEAT_SECONDS = 30.0
HOLD_CONCURRENCY = 100
"""Identifies in flight per worker while the hold is being built."""
FD_SPARE = 300
"""Open files the relay keeps for itself (Redis, the listener, /metrics …)."""
STORM_GOAL_SECONDS = 10.0
UNCAPPED = "1000000"
"""`MAX_CONNECTIONS` (the relay still caps it below its open-file limit)."""


def _worker(
    url: str,
    prefix: str,
    count: int,
    concurrency: int,
    start_at: Any,
    results: Any,
    stop: EventType,
) -> None:
    asyncio.run(_work(url, prefix, count, concurrency, start_at, results, stop))


async def _work(
    url: str,
    prefix: str,
    count: int,
    concurrency: int,
    start: Any,
    results: Any,
    stop: EventType,
) -> None:
    """Once every worker has started, identify `count` sessions from the instant the
    parent sets (`start`, wall clock), report, heartbeat, close."""
    results.put(None)
    await asyncio.to_thread(start.go.wait)
    start_at = start.at.value
    gate = asyncio.Semaphore(concurrency or count)
    ready_after: list[float] = []
    failures: list[str] = []
    clients: list[ClientConnection] = []

    async def one(index: int) -> None:
        async with gate:
            try:
                ws = await identified(url, f"{prefix}-{index}", UserType.VIEWER)
            except Exception as error:  # counted and reported, not raised
                failures.append(_failure(error))
                return
            ready_after.append(time.time() - start_at)
            clients.append(ws)

    await asyncio.sleep(max(0.0, start_at - time.time()))
    heartbeats = asyncio.create_task(_heartbeat_every_client(clients, stop))
    await asyncio.gather(*(one(i) for i in range(count)))
    results.put((ready_after, failures))
    await heartbeats
    await close_all(clients)


async def _heartbeat_every_client(clients: list[ClientConnection], stop: EventType) -> None:
    """Each client once per `CLIENT_HEARTBEAT_SECONDS`, spread over the period, from the
    first READY on (the relay closes a session silent for 1.5 heartbeat intervals)."""
    beat = 0
    while not stop.is_set():
        step = -(-len(clients) // int(CLIENT_HEARTBEAT_SECONDS * 2))
        for ws in clients[beat : beat + step]:
            with suppress(ConnectionClosed):  # counted by the relay, not here
                await ws.send(frame(1, None), text=True)
        beat = beat + step if beat + step < len(clients) else 0
        await asyncio.sleep(0.5)


def _failure(error: Exception) -> str:
    """The error's kind, with the close code the relay sent if it closed the session."""
    received = getattr(error, "rcvd", None)
    code = getattr(received, "code", None)
    return type(error).__name__ if code is None else f"{type(error).__name__} {code}"


class Start(NamedTuple):
    go: EventType
    at: Any
    """A shared double: the instant (wall clock) every worker begins."""


class Workers:
    """Client processes that identify sessions at a given instant and hold them."""

    def __init__(self, url: str, label: str, total: int, concurrency: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.stop = context.Event()
        self.start = Start(context.Event(), context.Value("d", 0.0))
        workers = size(WORKERS, 1)
        share = -(-total // workers)
        self.processes = [
            context.Process(
                target=_worker,
                args=(
                    url,
                    f"{label}-{n}",
                    min(share, total - n * share),
                    concurrency,
                    self.start,
                    self.results,
                    self.stop,
                ),
                daemon=True,
            )
            for n in range(workers)
            if total - n * share > 0
        ]
        for process in self.processes:
            process.start()

    async def go(self) -> float:
        """Once every process has started: the instant they begin (wall clock), soon."""
        for _ in self.processes:
            await asyncio.to_thread(self.results.get)
        self.start.at.value = start_at = time.time() + 0.2
        self.start.go.set()
        await asyncio.sleep(0.2)
        return start_at

    async def ready(self) -> tuple[list[float], list[str]]:
        ready_after: list[float] = []
        failures: list[str] = []
        for _ in self.processes:
            got, failed = await asyncio.to_thread(self.results.get)
            ready_after += got
            failures += failed
        return ready_after, failures

    def close(self) -> None:
        self.stop.set()
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


class Sample:
    """A few sessions in this process, heartbeating, each ACK timed."""

    def __init__(self, clients: list[ClientConnection]) -> None:
        self.clients = clients
        self.round_trips: list[float] = []
        self._tasks = [asyncio.create_task(self._beat(ws)) for ws in clients]

    async def _beat(self, ws: ClientConnection) -> None:
        while True:
            sent_at = time.perf_counter()
            await ws.send(frame(1, None), text=True)
            await ws.recv()
            self.round_trips.append(time.perf_counter() - sent_at)
            await asyncio.sleep(1 / SAMPLE_RATE)

    def measured(self) -> list[float]:
        taken, self.round_trips = self.round_trips, []
        return taken

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await close_all(self.clients)


def _hold_size() -> int:
    """20,000, or what the relay's open-file limit (its hard limit, to which it raises
    the soft one at start) leaves room for."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = size(20_000, 200)
    if hard == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, hard - FD_SPARE - SAMPLE)


async def _sample(replica: RelayProcess) -> Sample:
    return Sample(
        [await identified(replica.url, f"sample-{i}", UserType.VIEWER) for i in range(SAMPLE)]
    )


async def _hold(replica: RelayProcess) -> str:
    sessions = _hold_size()
    sample = await _sample(replica)
    rss_before = replica.rss_bytes()
    workers = Workers(replica.url, "hold", sessions, HOLD_CONCURRENCY)
    try:
        await workers.go()
        ready_after, failures = await workers.ready()
        await asyncio.sleep(2.0)
        sample.measured()
        cpu_before = replica.cpu_seconds()
        held = seconds(30.0, 1.0)
        await asyncio.sleep(held)
        cpu = replica.cpu_seconds() - cpu_before
        acks = sample.measured()
        per_session = (replica.rss_bytes() - rss_before) / max(1, len(ready_after))
    finally:
        workers.close()
        await sample.close()
    return (
        f"hold: {len(ready_after):,} identified sessions on one replica "
        f"(+{SAMPLE} sampled; {len(failures)} failed to identify; built in "
        f"{max(ready_after, default=0):.1f} s): heartbeat ACK p50 "
        f"{percentile(acks, 0.5) * 1e3:.2f} ms, p99 {percentile(acks, 0.99) * 1e3:.2f} ms "
        f"while holding {held:.0f} s (relay CPU {cpu / held * 100:.0f} % of a core), "
        f"{per_session / 1024:.1f} KiB resident per session"
    )


async def _storm(replica: RelayProcess) -> str:
    clients = size(5_000, 200)
    sample = await _sample(replica)
    workers = Workers(replica.url, "storm", clients, 0)
    try:
        await workers.go()
        sample.measured()
        ready_after, failures = await workers.ready()
        acks = sample.measured()
    finally:
        workers.close()
        await sample.close()
    slowest = max(ready_after, default=float("nan"))
    verdict = "yes" if not failures and slowest <= STORM_GOAL_SECONDS else "no"
    kinds = ", ".join(sorted(set(failures))) or "none"
    return (
        f"storm: {clients:,} clients connect and Identify at once on one replica: "
        f"{len(ready_after):,} READY, {len(failures)} failed ({kinds}); READY p50 "
        f"{percentile(ready_after, 0.5):.2f} s, p99 {percentile(ready_after, 0.99):.2f} s, "
        f"last {slowest:.2f} s (all within {STORM_GOAL_SECONDS:.0f} s: {verdict}); "
        f"heartbeat ACK p99 meanwhile {percentile(acks, 0.99) * 1e3:.1f} ms"
    )


def run() -> Iterator[str]:
    with relays(1, max_connections=UNCAPPED, max_sessions_per_user=UNCAPPED) as replicas:
        yield asyncio.run(_hold(replicas[0]))
    with relays(1, max_connections=UNCAPPED, max_sessions_per_user=UNCAPPED) as replicas:
        yield asyncio.run(_storm(replicas[0]))
