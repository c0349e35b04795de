"""A private `redis-server` on a free port, for tests that stop, hang, fill or empty Redis.

Started without persistence (a restart comes back empty, like a Redis without its data),
always killed on teardown. Tests that only need a Redis use the shared one
(`tests.services.redis_url`) with a key prefix of their own instead.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.processes import free_port
from tests.services import unavailable

START_TIMEOUT = 10.0


class RedisServer:
    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.persistent = persistent
        """Keep every write in an append-only file (fsync always), so a restart keeps it."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> RedisServer:
        executable = shutil.which("redis-server")
        if executable is None:
            unavailable("redis-server", "not installed")
        assert executable is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                executable,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--dir", str(self.workdir)),
                *(
                    ("--appendonly", "yes", "--appendfsync", "always")
                    if self.persistent
                    else ("--appendonly", "no")
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with self.client() as client:
                    client.ping()
                return self
            except redis.RedisError:
                time.sleep(0.05)
        pytest.fail(f"redis-server on port {self.port} did not start")

    def restart_empty(self) -> None:
        """Kill it and start it again on the same port, without its data."""
        self.kill()
        self.start()

    def restart(self) -> None:
        """Kill it (SIGKILL) and start it again on the same port with what it persisted."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered (a hung Redis)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def fill(self) -> None:
        """Behave like a Redis whose memory is full under `noeviction`: writes fail (OOM)."""
        with self.client() as client:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1")

    def unfill(self) -> None:
        with self.client() as client:
            client.config_set("maxmemory", "0")

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.kill()
            self._process.wait()


def private_redis_server(workdir: Path, *, persistent: bool = False) -> Iterator[RedisServer]:
    """For a fixture: a started server, killed afterwards whatever happened."""
    server = RedisServer(workdir, persistent=persistent)
    try:
        yield server.start()
    finally:
        server.kill()
