"""Instructions the relay executes per unit of work, counted by valgrind (callgrind).

CPU seconds on a shared machine move with the neighbours; the instructions a process
executes for the same work barely do. Each relay runs under `valgrind --tool=callgrind`;
the counters are zeroed (`callgrind_control -z`) just before a scenario and dumped
(`callgrind_control -d`) just after, and the figure is the dumped instruction count (Ir)
of every replica over the scenario's units of work. Scenarios are paced one unit at a time
(a command waits for all its deliveries), so batching does not depend on how slow the
relay runs under valgrind.

    python -m bench instructions             # this checkout's relay
    python -m bench.instructions --relay OTHER/.venv/bin/relay-service   # another's, A/B
    python -m bench.instructions --lean      # the lean floor (bench/lean.py), the yardstick

Needs valgrind (`callgrind_control` on PATH). Slow: a relay under callgrind runs ~50x
slower, so the scenarios are small.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection

from bench.cluster import (
    REDIS_URL,
    RELAY,
    SECRET,
    close_all,
    frame,
    free_port,
    identified,
    next_dispatch,
    wait_ready,
)
from shared.identity import UserType

IDENTIFIES = 200
IDENTIFY_CONCURRENCY = 4
FANOUT_FACTORIES = 50
FANOUT_COMMANDS = 100
FANOUT_BURST = 10
FLOOD_FACTORIES = 100
FLOOD_WINDOW = 32
FLOOD_COMMANDS = 300
"""The fan-out flood: commands kept in flight as in `bench relay`, 30,000 deliveries."""
COMMAND_OP = 4
STATUS_FACTORIES = 20
STATUS_OPERATORS = 5
STATUS_MESSAGES = 100
PRESENCE_QUIET_SECONDS = 7.0
"""The status scenario starts this long after the fan-out's factories closed, less its own
set-up: they go offline a grace (`PRESENCE_GRACE_MS`, 5 s) and a sweep after, and those
announcements are not status deliveries."""
HEARTBEAT_SESSIONS = 20
HEARTBEATS = 20
"""Per session: HEARTBEAT_SESSIONS x HEARTBEATS round trips in all."""
READY_TIMEOUT_SECONDS = 600.0
IDLE_SECONDS = 5.0
"""The idle rate (health PINGs, timers) is measured over this and taken off each figure."""
KEEP: Path | None = None
RELAY_HOST = "127.0.0.1"
OPEN_TIMEOUT = 300.0
"""A relay under valgrind on a busy machine can take long to answer a handshake."""
LEAN = str(Path(__file__).with_name("lean.py"))
_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


@dataclass
class Counted:
    process: subprocess.Popen[bytes]
    port: int
    outdir: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def zero(self) -> None:
        _control("--instr=on", self.process.pid)
        _control("-z", self.process.pid)

    def dump(self, name: str) -> int:
        """Instructions since the last zero; the profile is kept as `<name>.<port>` when
        `KEEP` names a directory (read it with callgrind_annotate)."""
        before = set(self.outdir.iterdir())
        _control("-d", self.process.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for path in set(self.outdir.iterdir()) - before:
                match = _TOTALS.search(path.read_bytes())
                if match:
                    if KEEP is not None:
                        shutil.copy(path, KEEP / f"{name}.{self.port}")
                    return int(match.group(1))
            time.sleep(0.2)
        raise RuntimeError("callgrind wrote no dump")


def _control(flag: str, pid: int) -> None:
    # valgrind names its control pipes after $HOST, which the relay's settings also read.
    env = {**os.environ, "HOST": RELAY_HOST}
    subprocess.run(
        ["callgrind_control", flag, str(pid)], env=env, check=True, capture_output=True, timeout=60
    )


@contextmanager
def counted_relays(count: int, relay: str) -> Iterator[list[Counted]]:
    """`relay`: a relay-service entry point (run by the python beside it), or a script."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    python = sys.executable if relay.endswith(".py") else str(Path(relay).with_name("python"))
    started: list[Counted] = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for _ in range(count):
                port = free_port()
                outdir = Path(workdir) / str(port)
                outdir.mkdir()
                env = {
                    **os.environ,
                    "HOST": RELAY_HOST,
                    "PORT": str(port),
                    "JWT_SECRET": SECRET,
                    "REDIS_URL": REDIS_URL,
                    "REDIS_PREFIX": prefix,
                    "LOG_LEVEL": "WARNING",
                    "RATE_LIMIT_PER_SECOND": "1000000",
                    "RATE_LIMIT_BURST": "1000000",
                    "MAX_CONNECTIONS_PER_ADDRESS": "1000000",
                    "IDENTIFY_TIMEOUT_MS": "600000",
                    "REDIS_TIMEOUT_SECONDS": "30",
                    "HEARTBEAT_INTERVAL_MS": "600000",
                }
                command = [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",  # start-up at valgrind's light speed
                    f"--callgrind-out-file={outdir}/callgrind.out.%p",
                    python,
                    relay,
                ]
                log = Path(workdir) / f"{port}.log"
                with log.open("wb") as output:
                    process = subprocess.Popen(
                        command, cwd=workdir, env=env, stdout=output, stderr=output
                    )
                started.append(Counted(process, port, outdir))
            for counted in started:
                wait_ready(
                    counted.process,
                    f"http://127.0.0.1:{counted.port}/readyz",
                    READY_TIMEOUT_SECONDS,
                )
            yield started
        finally:
            for counted in started:
                counted.process.terminate()
            for counted in started:
                try:
                    counted.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    counted.process.kill()


class Meter:
    """Instructions of every replica over a scenario, less what they spend idle meanwhile."""

    def __init__(self, replicas: list[Counted]) -> None:
        self.replicas = replicas
        self.idle_per_second = 0.0

    async def calibrate(self) -> None:
        self.start()
        await asyncio.sleep(IDLE_SECONDS)
        self.idle_per_second = self.stop("idle") / IDLE_SECONDS

    def start(self) -> None:
        for replica in self.replicas:
            replica.zero()
        self._started = time.monotonic()

    def stop(self, name: str) -> float:
        elapsed = time.monotonic() - self._started
        total = sum(replica.dump(name) for replica in self.replicas)
        return total - self.idle_per_second * elapsed


async def _identify(meter: Meter) -> tuple[float, list[ClientConnection]]:
    url = meter.replicas[0].url
    gate = asyncio.Semaphore(IDENTIFY_CONCURRENCY)

    async def one(index: int) -> ClientConnection:
        async with gate:
            return await identified(
                url, f"viewer-{index}", UserType.VIEWER, open_timeout=OPEN_TIMEOUT
            )

    meter.start()
    clients = await asyncio.gather(*(one(i) for i in range(IDENTIFIES)))
    await asyncio.sleep(0.5)
    return meter.stop("identify") / IDENTIFIES, list(clients)


async def _heartbeats(meter: Meter, clients: list[ClientConnection]) -> float:
    sessions = clients[:HEARTBEAT_SESSIONS]
    meter.start()
    for n in range(HEARTBEATS):
        for ws in sessions:
            await ws.send(frame(1, n), text=True)
            await ws.recv()
    return meter.stop("heartbeat") / (HEARTBEAT_SESSIONS * HEARTBEATS)


async def _factories_and_operator(
    meter: Meter, count: int
) -> tuple[list[ClientConnection], ClientConnection]:
    """`count` factories spread over both replicas, and an operator on the first."""
    replicas = meter.replicas
    factories = [
        await identified(
            replicas[i % 2].url, f"factory-{i}", UserType.FACTORY, open_timeout=OPEN_TIMEOUT
        )
        for i in range(count)
    ]
    operator = await identified(
        replicas[0].url, "operator-1", UserType.OPERATOR, open_timeout=OPEN_TIMEOUT
    )
    return factories, operator


async def _fanout(meter: Meter, window: int) -> float:
    factories, operator = await _factories_and_operator(meter, FANOUT_FACTORIES)
    await asyncio.sleep(1.0)
    meter.start()
    for start in range(0, FANOUT_COMMANDS, window):
        for n in range(start, start + window):
            await operator.send(frame(4, {"payload": {"n": n, "speed": 1200}}), text=True)
        for _ in range(window):
            await asyncio.gather(*(next_dispatch(ws, COMMAND_OP) for ws in factories))
    figure = meter.stop(f"fanout-{window}") / (FANOUT_COMMANDS * FANOUT_FACTORIES)
    await close_all([*factories, operator])
    return figure


async def _flood(meter: Meter) -> float:
    """Commands as fast as 100 factories take them, `FLOOD_WINDOW` in flight: the batching
    of a busy relay, which paced scenarios never see."""
    factories, operator = await _factories_and_operator(meter, FLOOD_FACTORIES)
    window = asyncio.Semaphore(FLOOD_WINDOW)
    received: dict[int, int] = {}

    async def read(ws: ClientConnection) -> None:
        async for raw in ws:
            message = orjson.loads(raw)
            if message["op"] == COMMAND_OP:
                n = message["d"]["payload"]["n"]
                received[n] = received.get(n, 0) + 1
                if received[n] == FLOOD_FACTORIES:
                    window.release()

    readers = [asyncio.create_task(read(ws)) for ws in factories]
    await asyncio.sleep(1.0)
    meter.start()
    async with asyncio.timeout(READY_TIMEOUT_SECONDS):  # a lost command would hold its place
        for n in range(FLOOD_COMMANDS):
            await window.acquire()
            await operator.send(frame(COMMAND_OP, {"payload": {"n": n, "speed": 1200}}), text=True)
        for _ in range(FLOOD_WINDOW):
            await window.acquire()
    figure = meter.stop("flood") / (FLOOD_COMMANDS * FLOOD_FACTORIES)
    for reader in readers:
        reader.cancel()
    await close_all([*factories, operator])
    return figure


async def _status(meter: Meter) -> float:
    replicas = meter.replicas
    operators = [
        await identified(
            replicas[i % 2].url, f"operator-{i}", UserType.OPERATOR, open_timeout=OPEN_TIMEOUT
        )
        for i in range(STATUS_OPERATORS)
    ]
    factories = [
        await identified(
            replicas[i % 2].url, f"factory-{i}", UserType.FACTORY, open_timeout=OPEN_TIMEOUT
        )
        for i in range(STATUS_FACTORIES)
    ]
    await asyncio.sleep(PRESENCE_QUIET_SECONDS)
    meter.start()
    for n in range(STATUS_MESSAGES):
        ws = factories[n % STATUS_FACTORIES]
        status = {"payload": {"n": n, "temperature": 71.5, "rpm": 1200}}
        await ws.send(frame(5, status), text=True)
        for reply in await asyncio.gather(*(next_dispatch(op, 5) for op in operators)):
            assert reply["d"]["payload"]["n"] == n
    figure = meter.stop("status") / (STATUS_MESSAGES * STATUS_OPERATORS)
    await close_all([*operators, *factories])
    return figure


async def _all(replicas: list[Counted]) -> list[str]:
    meter = Meter(replicas)
    await asyncio.sleep(1.0)
    await meter.calibrate()
    identify, clients = await _identify(Meter(replicas[:1]))
    heartbeat = await _heartbeats(Meter(replicas[:1]), clients)
    await close_all(clients)
    await asyncio.sleep(1.0)
    fanout = await _fanout(meter, 1)
    burst = await _fanout(meter, FANOUT_BURST)
    flood = await _flood(meter)
    status = await _status(meter)
    return [
        f"idle: {meter.idle_per_second:,.0f} instructions/s for both replicas (taken off below)",
        f"instructions per Identify (connect + Hello + Identify + READY): {identify:,.0f}",
        f"instructions per heartbeat round trip: {heartbeat:,.0f}",
        f"instructions per fan-out delivery (1 operator -> {FANOUT_FACTORIES} factories, "
        f"2 replicas, one command at a time): {fanout:,.0f}; "
        f"in bursts of {FANOUT_BURST} commands: {burst:,.0f}; "
        f"flooded ({FLOOD_FACTORIES} factories, {FLOOD_WINDOW} commands in flight): {flood:,.0f}",
        f"instructions per status delivery ({STATUS_FACTORIES} factories -> "
        f"{STATUS_OPERATORS} operators, 2 replicas, one at a time): {status:,.0f}",
    ]


def run(relay: str = RELAY) -> Iterator[str]:
    if shutil.which("callgrind_control") is None:
        yield "instructions: skipped (valgrind is not installed)"
        return
    with counted_relays(2, relay) as replicas:
        yield from asyncio.run(_all(replicas))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--relay", default=RELAY, help="a relay-service entry point")
    parser.add_argument("--lean", action="store_true", help="count the lean floor instead")
    parser.add_argument("--keep", type=Path, help="keep each scenario's profile in this directory")
    arguments = parser.parse_args()
    relay = LEAN if arguments.lean else arguments.relay
    global KEEP
    KEEP = arguments.keep
    print(f"relay: {relay}", flush=True)
    for line in run(relay):
        print(line, flush=True)


if __name__ == "__main__":
    main()
