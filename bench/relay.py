"""The relay against the lean floor, over real sockets: the rows of the performance table.

Each round runs every scenario on the project's relay, then on the lean floor
(`bench.lean`: the same libraries with nothing else), A and B in turn, so a machine whose
speed drifts moves both; the table gives each row's median over the rounds and the ratio.
Relay CPU is the relay processes' own user + system time (from /proc), never the load
generator's, which runs in this process on the same cores.

- fan-out: one operator, 100 factories over 2 replicas, commands as fast as the factories
  take them (a window in flight): relay CPU per delivery, latency, loss; then at a steady
  20,000 deliveries/s, for the latency of a relay that is not saturated;
- status: 50 factories at 20 statuses/s each, 5 operators, 2 replicas: relay CPU per
  delivery, latency, loss;
- connections: 2,000 identified idle sessions on one replica: relay CPU per Identify
  (connect + Hello + Identify + READY), resident memory per session;
- heartbeats: 500 of those sessions heartbeating 10 times a second: relay CPU per
  heartbeat and its ACK.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import ClientConnection

from bench.cluster import RelayProcess, close_all, frame, identified, percentile, relays
from bench.sizes import seconds, size
from shared.identity import UserType

FANOUT_FACTORIES = 100
FANOUT_WINDOW = 32
STALL_SECONDS = 10.0
"""No delivery completing a command for this long ends the run (the loss is reported)."""
FANOUT_PACED_COMMANDS_PER_SECOND = 200.0
"""20,000 deliveries/s, well below saturation."""
STATUS_FACTORIES = 50
STATUS_OP = 5
COMMAND_OP = 4
STATUS_RATE = 20
STATUS_OPERATORS = 5
IDENTIFY_CONCURRENCY = 100
HEARTBEAT_RATE = 10
ROUNDS = 3


@dataclass
class Row:
    name: str
    unit: str
    goal: str
    project: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)

    def line(self) -> str:
        project, floor = statistics.median(self.project), statistics.median(self.floor)
        return (
            f"  {self.name:<44} {project:>8.1f} {self.unit:<4} {floor:>8.1f} {self.unit:<4} "
            f"{project / floor:>5.2f}x   (goal {self.goal})"
        )


ROWS = {
    "identify": Row("relay CPU per Identify", "µs", "<= 1.1x"),
    "status": Row("relay CPU per status delivery (2 replicas)", "µs", "<= 1.1x"),
    "fanout": Row("relay CPU per fan-out delivery (2 replicas)", "µs", "<= 1.0x"),
    "heartbeat": Row("relay CPU per heartbeat", "µs", "<= 1.2x"),
    "memory": Row("resident memory per idle session", "KiB", "<= 1.1x"),
}


async def _fanout(
    replicas: list[RelayProcess], rate: float | None = None
) -> tuple[dict[str, float], str]:
    """Commands as fast as the factories take them, or `rate` commands per second (the
    latency of a relay that is not saturated; no row of the table)."""
    factories = [
        await identified(replicas[i % 2].url, f"factory-{i}", UserType.FACTORY)
        for i in range(FANOUT_FACTORIES)
    ]
    operator = await identified(replicas[0].url, "operator-1", UserType.OPERATOR)
    latencies: list[float] = []
    received: dict[int, int] = {}
    window = asyncio.Semaphore(FANOUT_WINDOW)

    async def factory_reader(ws: ClientConnection) -> None:
        async for raw in ws:
            message = orjson.loads(raw)
            if message["op"] != COMMAND_OP:  # the relay's own events
                continue
            payload = message["d"]["payload"]
            latencies.append(time.perf_counter() - payload["t0"])
            count = received.get(payload["n"], 0) + 1
            received[payload["n"]] = count
            if count == FANOUT_FACTORIES:
                window.release()

    readers = [asyncio.create_task(factory_reader(ws)) for ws in factories]
    sent = 0
    cpu_before = sum(r.cpu_seconds() for r in replicas)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds(10.0, 1.0):
        try:  # a command some factory never gets would hold its place in the window
            async with asyncio.timeout(STALL_SECONDS):
                await window.acquire()
        except TimeoutError:
            break
        if rate is not None:
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        await operator.send(
            frame(COMMAND_OP, {"payload": {"n": sent, "t0": time.perf_counter()}}), text=True
        )
        sent += 1
    with suppress(TimeoutError):  # wait for the commands still in flight
        async with asyncio.timeout(STALL_SECONDS):
            for _ in range(FANOUT_WINDOW):
                await window.acquire()
    elapsed = time.perf_counter() - started
    cpu = sum(r.cpu_seconds() for r in replicas) - cpu_before
    delivered = sum(received.values())
    for task in readers:
        task.cancel()
    await close_all([*factories, operator])
    pace = "as fast as taken" if rate is None else f"{rate * FANOUT_FACTORIES:,.0f}/s"
    per_delivery = cpu / max(1, delivered) * 1e6
    return {} if rate else {"fanout": per_delivery}, (
        f"fan-out ({pace}): 1 operator -> {FANOUT_FACTORIES} factories, {elapsed:.1f} s: "
        f"{delivered / elapsed:,.0f} delivered/s, p50 {percentile(latencies, 0.5) * 1e3:.2f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, "
        f"lost {sent * FANOUT_FACTORIES - delivered}, relay CPU "
        f"{cpu / max(1, delivered) * 1e6:.1f} µs per delivery"
    )


async def _status(replicas: list[RelayProcess]) -> tuple[dict[str, float], str]:
    operators = [
        await identified(replicas[i % 2].url, f"operator-{i}", UserType.OPERATOR)
        for i in range(STATUS_OPERATORS)
    ]
    factories = [
        await identified(replicas[i % 2].url, f"factory-{i}", UserType.FACTORY)
        for i in range(STATUS_FACTORIES)
    ]
    latencies: list[float] = []
    counts = [0] * STATUS_OPERATORS
    duration = seconds(10.0, 1.0)

    async def operator_reader(index: int, ws: ClientConnection) -> None:
        async for raw in ws:
            received = orjson.loads(raw)
            if received["op"] != STATUS_OP:  # the relay's own events (presence, say)
                continue
            latencies.append(time.perf_counter() - received["d"]["payload"]["t0"])
            counts[index] += 1

    async def factory_writer(index: int, ws: ClientConnection) -> int:
        period = 1 / STATUS_RATE
        await asyncio.sleep(period * index / STATUS_FACTORIES)
        sent = 0
        next_at = time.perf_counter()
        while sent < STATUS_RATE * duration:
            status = {"payload": {"t0": time.perf_counter(), "temperature": 71.5, "rpm": 1200}}
            await ws.send(frame(STATUS_OP, status), text=True)
            sent += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        return sent

    readers = [asyncio.create_task(operator_reader(i, ws)) for i, ws in enumerate(operators)]
    cpu_before = sum(r.cpu_seconds() for r in replicas)
    sent = sum(await asyncio.gather(*(factory_writer(i, ws) for i, ws in enumerate(factories))))
    await asyncio.sleep(1.0)
    cpu = sum(r.cpu_seconds() for r in replicas) - cpu_before
    for task in readers:
        task.cancel()
    await close_all([*operators, *factories])
    delivered = sum(counts)
    return {"status": cpu / max(1, delivered) * 1e6}, (
        f"status: {STATUS_FACTORIES} factories x {STATUS_RATE}/s -> {STATUS_OPERATORS} "
        f"operators: p50 {percentile(latencies, 0.5) * 1e3:.2f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, "
        f"lost {sent * STATUS_OPERATORS - delivered} of {sent * STATUS_OPERATORS:,}"
    )


async def _connections(replica: RelayProcess) -> tuple[dict[str, float], str]:
    sessions = size(2000, 100)
    await asyncio.sleep(0.5)
    rss_before = replica.rss_bytes()
    gate = asyncio.Semaphore(IDENTIFY_CONCURRENCY)

    async def one(index: int) -> ClientConnection:
        async with gate:
            return await identified(replica.url, f"viewer-{index}", UserType.VIEWER)

    cpu_before = replica.cpu_seconds()
    started = time.perf_counter()
    clients = list(await asyncio.gather(*(one(i) for i in range(sessions))))
    elapsed = time.perf_counter() - started
    cpu_per_identify = (replica.cpu_seconds() - cpu_before) / sessions
    await asyncio.sleep(1.0)
    per_session = (replica.rss_bytes() - rss_before) / sessions
    heartbeat, acks = await _heartbeats(replica, clients)
    await close_all(clients)
    return {
        "identify": cpu_per_identify * 1e6,
        "memory": per_session / 1024,
        "heartbeat": heartbeat,
    }, (
        f"connections: {sessions:,} identified idle sessions: {sessions / elapsed:,.0f} "
        f"identifies/s ({IDENTIFY_CONCURRENCY} at a time); heartbeat ACK p50 "
        f"{percentile(acks, 0.5) * 1e3:.2f} ms, p99 {percentile(acks, 0.99) * 1e3:.2f} ms"
    )


async def _heartbeats(
    replica: RelayProcess, clients: list[ClientConnection]
) -> tuple[float, list[float]]:
    """Relay CPU per heartbeat round trip, and the round trips."""
    beating = clients[: size(500, 20)]
    duration = seconds(5.0, 1.0)
    round_trips: list[float] = []

    async def beat(index: int, ws: ClientConnection) -> int:
        period = 1 / HEARTBEAT_RATE
        await asyncio.sleep(period * index / len(beating))
        count = 0
        next_at = time.perf_counter()
        while count < HEARTBEAT_RATE * duration:
            sent_at = time.perf_counter()
            await ws.send(frame(1, None), text=True)
            await ws.recv()
            round_trips.append(time.perf_counter() - sent_at)
            count += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        return count

    cpu_before = replica.cpu_seconds()
    count = sum(await asyncio.gather(*(beat(i, ws) for i, ws in enumerate(beating))))
    return (replica.cpu_seconds() - cpu_before) / count * 1e6, round_trips


def _round(lean: bool) -> Iterator[tuple[dict[str, float], str]]:
    with relays(2, lean=lean) as replicas:
        yield asyncio.run(_fanout(replicas))
        yield asyncio.run(_fanout(replicas, rate=FANOUT_PACED_COMMANDS_PER_SECOND))
        yield asyncio.run(_status(replicas))
    with relays(1, lean=lean) as replicas:
        yield asyncio.run(_connections(replicas[0]))


def run() -> Iterator[str]:
    rounds = size(ROUNDS, 1)
    for number in range(1, rounds + 1):
        for lean in (False, True):
            for figures, line in _round(lean):
                for key, value in figures.items():
                    row = ROWS[key]
                    (row.floor if lean else row.project).append(value)
                yield f"round {number}, {'lean floor' if lean else 'project'}: {line}"
    yield f"median of {rounds} rounds      {'project':>18} {'lean floor':>14}  ratio"
    for row in ROWS.values():
        yield row.line()
