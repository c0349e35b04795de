"""The project's services as real child processes, started the way the ops team starts them.

`ServiceProcess` runs a console script (`relay-service`, `auth-service serve`,
`factory-bridge`) in a working directory of its own (no `.env` there: only the
environment given counts), waits for its `/readyz`, stops it with SIGTERM and always
kills it on teardown. Its output goes to files beside it, shown when it fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import httpx
import pytest

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Listener:
    """A port that accepts connections and counts them: proof that a command connected."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self._socket.setblocking(False)
        self.port: int = self._socket.getsockname()[1]

    def connections(self) -> int:
        """How many connections arrived (closed ones included) since the last call."""
        count = 0
        while True:
            try:
                connection, _ = self._socket.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1

    def close(self) -> None:
        self._socket.close()


def console_script(name: str) -> str:
    """The installed console script beside this interpreter."""
    script = Path(sys.executable).parent / name
    assert script.exists(), f"{name} is not installed: pip install -e ."
    return str(script)


def service_env(settings: Mapping[str, str], workdir: Path | None = None) -> dict[str, str]:
    """Only what a process needs from ours, so no developer setting leaks into a test.

    State a process keeps (`factory-bridge`'s state file) goes under `workdir`, never
    into the developer's home.
    """
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    if workdir is not None:
        env["XDG_STATE_HOME"] = str(workdir / "state")
    env.update(settings)
    return env


def run_to_exit(
    command: Sequence[str],
    workdir: Path,
    settings: Mapping[str, str],
    *,
    stdin: str = "",
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run a command that should end by itself (a CLI, or a service refusing its settings)."""
    return subprocess.run(
        list(command),
        input=stdin,
        capture_output=True,
        text=True,
        cwd=workdir,
        env=service_env(settings, workdir),
        timeout=timeout,
        check=False,
    )


class ServiceProcess:
    """One service as a child process; `http` services listen on `port` and have `/readyz`."""

    def __init__(
        self,
        command: Sequence[str],
        workdir: Path,
        *,
        name: str,
        settings: Mapping[str, str] | None = None,
        http: bool = True,
    ) -> None:
        self.command = list(command)
        self.workdir = workdir
        self.name = name
        self.http = http
        self.port = free_port()
        self.settings: dict[str, str] = dict(settings or {})
        if http:
            self.settings = {"HOST": "127.0.0.1", "PORT": str(self.port), **self.settings}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.port}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.port}.err"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, f"{self.name} was never started"
        return self._process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, wait: bool = True) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._process = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=service_env(self.settings, self.workdir),
                stdout=out,
                stderr=err,
            )
        if wait and self.http:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.http_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"{self.name} not ready within {timeout} s:\n{self.logs()}")

    def terminate(self) -> None:
        """Send SIGTERM without waiting."""
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} still running {timeout} s after SIGTERM:\n{self.logs()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.terminate()
        return self.wait(timeout)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def logs(self, lines: int = 30) -> str:
        parts = []
        for path in (self.stderr_path, self.stdout_path):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


class RelayProcess(ServiceProcess):
    """One relay replica (`relay-service`) on a port of its own."""

    def __init__(
        self,
        workdir: Path,
        *,
        jwt_secret: str,
        name: str = "relay",
        redis_url: str | None = None,
        redis_prefix: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        base = {"JWT_SECRET": jwt_secret, "LOG_LEVEL": "INFO"}
        if redis_url is not None:
            base["REDIS_URL"] = redis_url
        if redis_prefix is not None:
            base["REDIS_PREFIX"] = redis_prefix
        super().__init__(
            [console_script("relay-service")],
            workdir,
            name=name,
            settings={**base, **(settings or {})},
        )

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


class AuthProcess(ServiceProcess):
    """The auth service (`auth-service serve`) on an SQLite file of its own."""

    def __init__(
        self,
        workdir: Path,
        *,
        jwt_secret: str,
        admin: tuple[str, str],
        settings: Mapping[str, str] | None = None,
    ) -> None:
        base = {
            "JWT_SECRET": jwt_secret,
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/auth.db",
            "FIRST_ADMIN_USERNAME": admin[0],
            "FIRST_ADMIN_PASSWORD": admin[1],
            "LOG_LEVEL": "INFO",
        }
        super().__init__(
            [console_script("auth-service"), "serve"],
            workdir,
            name="auth",
            settings={**base, **(settings or {})},
        )
