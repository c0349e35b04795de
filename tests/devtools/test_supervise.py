"""`python -m devtools.supervise`, which `make run` starts the three processes through.

The children are real: the auth service, the relay and `factory-bridge`, as `make run`
starts them, or small Python processes where a test needs one that misbehaves.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import psutil
import pytest

from tests.processes import console_script, free_port, run_to_exit, service_env

JWT_SECRET = "supervise-test-secret-0123456789abcdef"
REPOSITORY = Path(__file__).resolve().parents[2]
WAIT = 30.0
STOP_WAIT = 40.0


class Supervised:
    """The supervisor as a child of the test, in `workdir` (no `.env`), output in files."""

    def __init__(self, workdir: Path, children: Sequence[str], settings: dict[str, str]) -> None:
        self.workdir = workdir
        command = [sys.executable, "-m", "devtools.supervise", *children]
        env = service_env({"PYTHONPATH": str(REPOSITORY), **settings})
        with (workdir / "out").open("wb") as out, (workdir / "err").open("wb") as err:
            self.process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=err)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def wait_for_children(self, count: int) -> list[psutil.Process]:
        deadline = time.monotonic() + WAIT
        while len(children := self.children()) < count:
            assert time.monotonic() < deadline, self.stderr()
            assert self.process.poll() is None, self.stderr()
            time.sleep(0.05)
        return children

    def wait(self) -> int:
        return self.process.wait(STOP_WAIT)

    def stderr(self) -> str:
        return (self.workdir / "err").read_text()

    def kill(self) -> None:
        for child in self.children() if self.process.poll() is None else []:
            child.kill()
        self.process.kill()
        self.process.wait()


@pytest.fixture
def supervised() -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for supervisor in started:
        supervisor.kill()


def python(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def assert_none_left(children: Sequence[psutil.Process]) -> None:
    """Every child has exited and been reaped (no zombie either)."""
    assert [child.pid for child in children if child.is_running()] == []


def wait_until_ready(url: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} not ready within {WAIT} s")


def factory_connected(relay_port: int) -> bool:
    metrics = httpx.get(f"http://127.0.0.1:{relay_port}/metrics", timeout=1).text
    return 'relay_connections{type="factory"} 1.0' in metrics


def test_sigint_stops_the_auth_service_relay_and_bridge_and_exits_0(
    tmp_path: Path, supervised: list[Supervised]
) -> None:
    auth_port, relay_port = free_port(), free_port()
    settings = {
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/auth.db",
        "BRIDGE_AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "BRIDGE_RELAY_URL": f"ws://127.0.0.1:{relay_port}/ws",
        "BRIDGE_USERNAME": "factory-9",
        "BRIDGE_PASSWORD": "factory password",
    }
    created = run_to_exit(
        [console_script("auth-service"), "create-user", "factory-9", "--type", "factory"],
        tmp_path,
        settings,
        stdin="factory password\n",
    )
    assert created.returncode == 0, created.stderr
    supervisor = Supervised(
        tmp_path,
        [
            f"auth=env PORT={auth_port} {console_script('auth-service')} serve",
            f"relay=env PORT={relay_port} {console_script('relay-service')}",
            f"bridge={console_script('factory-bridge')}",
        ],
        settings,
    )
    supervised.append(supervisor)
    children = supervisor.wait_for_children(3)
    wait_until_ready(f"http://127.0.0.1:{auth_port}/readyz")
    wait_until_ready(f"http://127.0.0.1:{relay_port}/readyz")
    deadline = time.monotonic() + WAIT
    while not factory_connected(relay_port):
        assert time.monotonic() < deadline, "the bridge never connected"
        time.sleep(0.1)

    supervisor.process.send_signal(signal.SIGINT)

    assert supervisor.wait() == 0, supervisor.stderr()
    assert_none_left(children)
    assert supervisor.stderr() == ""


def test_a_child_that_ends_by_itself_stops_the_others_and_is_named(
    tmp_path: Path, supervised: list[Supervised]
) -> None:
    supervisor = Supervised(
        tmp_path,
        [
            f"relay=env PORT={free_port()} {console_script('relay-service')}",
            "broken=" + python("import time, sys; time.sleep(1); sys.exit(3)"),
        ],
        {"JWT_SECRET": JWT_SECRET},
    )
    supervised.append(supervisor)
    children = supervisor.wait_for_children(2)

    assert supervisor.wait() == 1
    assert_none_left(children)
    assert supervisor.stderr().splitlines() == [
        "supervise: broken exited with 3; stopping the others"
    ]


def test_a_child_that_ignores_the_signal_is_killed_after_the_timeout(
    tmp_path: Path, supervised: list[Supervised]
) -> None:
    stubborn = python(
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)"
    )
    supervisor = Supervised(
        tmp_path, ["--stop-timeout", "1", f"stubborn={stubborn}"], {"PYTHONUNBUFFERED": "1"}
    )
    supervised.append(supervisor)
    children = supervisor.wait_for_children(1)
    deadline = time.monotonic() + WAIT
    while "ready" not in (tmp_path / "out").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)

    supervisor.process.send_signal(signal.SIGTERM)

    assert supervisor.wait() == 1
    assert_none_left(children)
    assert supervisor.stderr().splitlines() == [
        "supervise: stubborn still running 1 s after the signal: killed"
    ]
