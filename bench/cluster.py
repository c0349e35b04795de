"""Real relay processes for the benchmarks, and the clients that load them."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from websockets.asyncio.client import ClientConnection, connect

from shared.identity import UserType
from shared.tokens import TokenIssuer

SECRET = "bench-secret-" + "x" * 40
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RELAY = str(Path(sys.executable).with_name("relay-service"))
ISSUER = TokenIssuer(
    algorithm="HS256",
    key=SECRET,
    issuer="factory-relay-auth",
    audience="factory-relay",
    ttl_seconds=3600,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RelayProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def stats(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def cpu_seconds(self) -> float:
        times = self.stats.cpu_times()
        return float(times.user + times.system)

    def rss_bytes(self) -> int:
        return int(self.stats.memory_info().rss)


@contextmanager
def relays(
    count: int, *, redis: bool = True, lean: bool = False, **settings: str
) -> Iterator[list[RelayProcess]]:
    """Start `count` relay processes sharing one Redis namespace; stop them on exit.

    `lean` starts the lean floor (`bench.lean`) instead: the yardstick."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    started: list[RelayProcess] = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for _ in range(count):
                started.append(_start(workdir, prefix, redis, lean, settings))
            for relay in started:
                _wait_ready(relay)
            yield started
        finally:
            for relay in started:
                relay.process.terminate()
            for relay in started:
                relay.process.wait(timeout=30)


def _start(
    workdir: str, prefix: str, redis: bool, lean: bool, settings: dict[str, str]
) -> RelayProcess:
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "JWT_SECRET": SECRET,
        "REDIS_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_SECOND": "1000000",
        "RATE_LIMIT_BURST": "1000000",
        # The load generator is one address opening thousands of sessions.
        "MAX_CONNECTIONS_PER_ADDRESS": "1000000",
        **{name.upper(): value for name, value in settings.items()},
    }
    if redis:
        env["REDIS_URL"] = REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    command = [sys.executable, "-m", "bench.lean"] if lean else [RELAY]
    if lean:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return RelayProcess(start_logged(command, workdir, env, port), port)


def start_logged(
    command: list[str], workdir: str, env: dict[str, str], port: int
) -> subprocess.Popen[bytes]:
    """Start a service with its output in a log file named after its port (kept for reading)."""
    log = Path(tempfile.gettempdir()) / f"factory-relay-bench-{port}.log"
    with log.open("wb") as output:
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=output, stderr=output)


def _wait_ready(relay: RelayProcess, timeout: float = 15) -> None:
    wait_ready(relay.process, f"http://127.0.0.1:{relay.port}/readyz", timeout)


def wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float = 30) -> None:
    """Poll a service's readiness endpoint until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready")


def token(username: str, user_type: UserType) -> str:
    return ISSUER.issue(user_id=f"{username}-id", username=username, user_type=user_type)[0]


async def identified(
    url: str, username: str, user_type: UserType, *, open_timeout: float = 10
) -> ClientConnection:
    """A client past Hello and READY."""
    ws = await connect(
        url, compression=None, max_queue=None, ping_interval=None, open_timeout=open_timeout
    )
    await ws.recv()
    await ws.send(orjson.dumps({"op": 3, "d": {"token": token(username, user_type)}}), text=True)
    ready = orjson.loads(await ws.recv())
    if ready.get("t") != "READY":
        raise RuntimeError(f"identify failed: {ready}")
    return ws


async def next_dispatch(ws: ClientConnection, op: int) -> dict[str, Any]:
    """The next frame of `op` this client receives, past the server's own events
    (PRESENCE_UPDATE and the like)."""
    while True:
        received: dict[str, Any] = orjson.loads(await ws.recv())
        if received.get("op") == op and received.get("t") is None:
            return received


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def frame(op: int, d: Any) -> bytes:
    return orjson.dumps({"op": op, "d": d})


async def close_all(clients: list[ClientConnection]) -> None:
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
