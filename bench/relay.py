"""The relay under load, over real sockets: two replicas on one Redis, the load generator
in this process (on the same 2 cores).

- fan-out: one operator, 100 factories over both replicas, commands as fast as the
  factories take them (a window of commands in flight): delivered/s, latency, loss,
  relay CPU per delivery; then the same at a steady 20,000 deliveries/s, for the latency
  of a relay that is not saturated;
- status: 50 factories at 20 statuses/s each, 5 operators: latency, loss;
- connections: 2,000 identified idle sessions on one replica: identifies/s, resident
  memory per session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
from websockets.asyncio.client import ClientConnection

from bench.cluster import RelayProcess, close_all, frame, identified, percentile, relays
from shared.identity import UserType

FANOUT_FACTORIES = 100
FANOUT_SECONDS = 10.0
FANOUT_WINDOW = 32
FANOUT_PACED_COMMANDS_PER_SECOND = 200.0
"""The paced run: 20,000 deliveries/s, well below saturation, to show the relay's latency."""
STATUS_FACTORIES = 50
STATUS_RATE = 20
STATUS_OPERATORS = 5
STATUS_SECONDS = 10.0
IDLE_SESSIONS = 2000
IDENTIFY_CONCURRENCY = 100


async def _fanout(replicas: list[RelayProcess], rate: float | None = None) -> list[str]:
    """Commands as fast as the factories take them, or `rate` commands per second."""
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
            payload = orjson.loads(raw)["d"]["payload"]
            latencies.append(time.perf_counter() - payload["t0"])
            count = received.get(payload["n"], 0) + 1
            received[payload["n"]] = count
            if count == FANOUT_FACTORIES:
                window.release()

    readers = [asyncio.create_task(factory_reader(ws)) for ws in factories]
    sent = 0
    cpu_before = sum(r.cpu_seconds() for r in replicas)
    started = time.perf_counter()
    while time.perf_counter() - started < FANOUT_SECONDS:
        await window.acquire()
        if rate is not None:
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        await operator.send(
            frame(4, {"payload": {"n": sent, "t0": time.perf_counter()}}), text=True
        )
        sent += 1
    for _ in range(FANOUT_WINDOW):  # wait for the commands still in flight
        async with asyncio.timeout(10):
            await window.acquire()
    elapsed = time.perf_counter() - started
    cpu = sum(r.cpu_seconds() for r in replicas) - cpu_before
    delivered = sum(received.values())
    lost = sent * FANOUT_FACTORIES - delivered
    for task in readers:
        task.cancel()
    await close_all([*factories, operator])
    pace = "as fast as taken" if rate is None else f"{rate * FANOUT_FACTORIES:,.0f} deliveries/s"
    return [
        f"fan-out ({pace}): 1 operator -> {FANOUT_FACTORIES} factories on 2 replicas, "
        f"{elapsed:.1f} s: "
        f"{delivered / elapsed:,.0f} delivered/s, p50 {percentile(latencies, 0.5) * 1e3:.2f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, lost {lost}, "
        f"relay CPU {cpu / delivered * 1e6:.1f} µs per delivery "
        f"({sent:,} commands, {delivered:,} deliveries)"
    ]


async def _status(replicas: list[RelayProcess]) -> list[str]:
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

    async def operator_reader(index: int, ws: ClientConnection) -> None:
        async for raw in ws:
            latencies.append(time.perf_counter() - orjson.loads(raw)["d"]["payload"]["t0"])
            counts[index] += 1

    async def factory_writer(index: int, ws: ClientConnection) -> int:
        period = 1 / STATUS_RATE
        await asyncio.sleep(period * index / STATUS_FACTORIES)
        sent = 0
        next_at = time.perf_counter()
        while sent < STATUS_RATE * STATUS_SECONDS:
            status = {"payload": {"t0": time.perf_counter(), "temperature": 71.5, "rpm": 1200}}
            await ws.send(frame(5, status), text=True)
            sent += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        return sent

    readers = [asyncio.create_task(operator_reader(i, ws)) for i, ws in enumerate(operators)]
    sent = sum(await asyncio.gather(*(factory_writer(i, ws) for i, ws in enumerate(factories))))
    await asyncio.sleep(1.0)
    for task in readers:
        task.cancel()
    await close_all([*operators, *factories])
    lost = sent * STATUS_OPERATORS - sum(counts)
    return [
        f"status: {STATUS_FACTORIES} factories x {STATUS_RATE}/s -> {STATUS_OPERATORS} operators "
        f"on 2 replicas: p50 {percentile(latencies, 0.5) * 1e3:.2f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, "
        f"lost {lost} of {sent * STATUS_OPERATORS:,}"
    ]


async def _connections(replica: RelayProcess) -> list[str]:
    await asyncio.sleep(0.5)
    rss_before = replica.rss_bytes()
    gate = asyncio.Semaphore(IDENTIFY_CONCURRENCY)

    async def one(index: int) -> ClientConnection:
        async with gate:
            return await identified(replica.url, f"viewer-{index}", UserType.VIEWER)

    cpu_before = replica.cpu_seconds()
    started = time.perf_counter()
    clients = await asyncio.gather(*(one(i) for i in range(IDLE_SESSIONS)))
    elapsed = time.perf_counter() - started
    cpu_per_identify = (replica.cpu_seconds() - cpu_before) / IDLE_SESSIONS
    await asyncio.sleep(1.0)
    per_session = (replica.rss_bytes() - rss_before) / IDLE_SESSIONS
    await close_all(list(clients))
    return [
        f"connections: {IDLE_SESSIONS:,} identified idle sessions on one replica: "
        f"{IDLE_SESSIONS / elapsed:,.0f} identifies/s (connect + Hello + Identify + READY, "
        f"{IDENTIFY_CONCURRENCY} at a time; relay CPU {cpu_per_identify * 1e6:.0f} µs each), "
        f"{per_session / 1024:.1f} KiB resident per session"
    ]


def run() -> Iterator[str]:
    with relays(2) as replicas:
        yield from asyncio.run(_fanout(replicas))
        yield from asyncio.run(_fanout(replicas, rate=FANOUT_PACED_COMMANDS_PER_SECOND))
    with relays(2) as replicas:
        yield from asyncio.run(_status(replicas))
    with relays(1) as replicas:
        yield from asyncio.run(_connections(replicas[0]))
