"""`factory-bridge` as a command: its help, its usage errors, its settings, its login."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from relay_client import LoginRefusedError, RelayClient, login
from relay_client.bridge.cli import BridgeSettings, LogSettings
from shared.identity import UserType
from tests.cli import BROKEN_SETTINGS, assert_help, assert_usage_error, write_broken_dotenv
from tests.client.conftest import ADMIN, JWT_SECRET, PASSWORD, WAIT, Stack, next_message
from tests.processes import (
    AuthProcess,
    Listener,
    ServiceProcess,
    console_script,
    free_port,
    run_to_exit,
)

TIMEOUT = 30


def bridge(*args: str) -> list[str]:
    return [console_script("factory-bridge"), *args]


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_help_lists_the_settings_without_reading_them(tmp_path: Path, option: str) -> None:
    write_broken_dotenv(tmp_path)
    result = run_to_exit(bridge(option), tmp_path, BROKEN_SETTINGS, timeout=TIMEOUT)
    assert_help(result, BridgeSettings, LogSettings)


def test_help_connects_to_nothing(tmp_path: Path, listener: Listener) -> None:
    settings = {
        "BRIDGE_USERNAME": "factory-1",
        "BRIDGE_PASSWORD": "a password",
        "BRIDGE_AUTH_URL": f"http://127.0.0.1:{listener.port}",
        "BRIDGE_RELAY_URL": f"ws://127.0.0.1:{listener.port}/ws",
    }
    result = run_to_exit(bridge("--help"), tmp_path, settings, timeout=TIMEOUT)
    assert_help(result, BridgeSettings, LogSettings)
    assert listener.connections() == 0


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    assert_usage_error(run_to_exit(bridge("--machine", "modbus"), tmp_path, {}, timeout=TIMEOUT))


def test_an_invalid_log_level_stops_the_bridge_with_one_line_naming_it(tmp_path: Path) -> None:
    settings = {"BRIDGE_USERNAME": "factory-1", "BRIDGE_PASSWORD": "x", "LOG_LEVEL": "loud"}
    result = run_to_exit(bridge(), tmp_path, settings, timeout=TIMEOUT)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: invalid setting LOG_LEVEL: ")


def test_a_state_file_that_cannot_be_written_stops_the_bridge_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    settings = {
        "BRIDGE_USERNAME": "factory-1",
        "BRIDGE_PASSWORD": "x",
        "BRIDGE_STATE_FILE": str(tmp_path / "a-file" / "state.json"),
    }
    result = run_to_exit(bridge(), tmp_path, settings, timeout=TIMEOUT)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: invalid setting BRIDGE_STATE_FILE: cannot create ")


async def test_a_lower_case_log_level_is_applied(tmp_path: Path) -> None:
    settings = {
        "BRIDGE_USERNAME": "factory-1",
        "BRIDGE_PASSWORD": "x",
        "BRIDGE_AUTH_URL": f"http://127.0.0.1:{free_port()}",
        "LOG_LEVEL": "debug",
    }
    process = start_bridge(tmp_path, settings)
    try:
        await wait_for_log(process, "relay_login_failed")
        assert process.stop() == 0
    finally:
        process.kill()
    assert any(line["level"] == "debug" for line in log_events(process))


# -- running against the real auth service and relay ----------------------------------


def bridge_settings(stack: Stack, username: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "BRIDGE_RELAY_URL": stack.relay.ws_url,
        "BRIDGE_AUTH_URL": stack.auth.http_url,
        "BRIDGE_USERNAME": username,
        "BRIDGE_PASSWORD": password,
        "BRIDGE_STATUS_INTERVAL_SECONDS": "0.2",
    }


def start_bridge(workdir: Path, settings: dict[str, str]) -> ServiceProcess:
    return ServiceProcess(bridge(), workdir, name="bridge", settings=settings, http=False).start()


def own_auth_service(workdir: Path, factory: str, **settings: str) -> AuthProcess:
    """An auth service of the test's own (not started), its database holding `factory`."""
    auth = AuthProcess(workdir, jwt_secret=JWT_SECRET, admin=ADMIN, settings=settings)
    workdir.mkdir(parents=True, exist_ok=True)
    created = run_to_exit(
        [console_script("auth-service"), "create-user", factory, "--type", "factory"],
        workdir,
        auth.settings,
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    return auth


def log_events(process: ServiceProcess) -> list[dict[str, Any]]:
    lines = process.stdout_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def wait_for_log(process: ServiceProcess, event: str) -> None:
    async with asyncio.timeout(WAIT):
        while not any(line["event"] == event for line in log_events(process)):
            assert process.running, process.logs()
            await asyncio.sleep(0.05)


def test_wrong_credentials_are_one_line_and_not_retried(stack: Stack, tmp_path: Path) -> None:
    factory = stack.create_user(UserType.FACTORY)
    settings = bridge_settings(stack, factory, "not the password")
    result = run_to_exit(bridge(), tmp_path, settings, timeout=TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: login refused (401): incorrect username or password: check BRIDGE_USERNAME"
        " and BRIDGE_PASSWORD (not retried)"
    ]
    events = [json.loads(line)["event"] for line in result.stdout.splitlines()]
    assert [event for event in events if "/auth/token" in event] == [
        f'HTTP Request: POST {stack.auth.http_url}/auth/token "HTTP/1.1 401 Unauthorized"'
    ]
    assert "relay_login_failed" not in events


async def test_sigterm_stops_the_bridge_with_exit_0(
    stack: Stack, operator: RelayClient, tmp_path: Path
) -> None:
    factory = stack.create_user(UserType.FACTORY)
    process = start_bridge(tmp_path, bridge_settings(stack, factory))
    try:
        assert (await next_message(operator, 5)).sender.username == factory
        assert process.stop() == 0
    finally:
        process.kill()


async def test_an_unreachable_auth_service_is_retried_until_it_answers(
    stack: Stack, operator: RelayClient, tmp_path: Path
) -> None:
    factory = stack.create_user(UserType.FACTORY)
    auth = own_auth_service(tmp_path / "auth", factory)
    settings = {**bridge_settings(stack, factory), "BRIDGE_AUTH_URL": auth.http_url}
    process = start_bridge(tmp_path, settings)
    try:
        await wait_for_log(process, "relay_login_failed")
        auth.start()
        assert (await next_message(operator, 5)).sender.username == factory
    finally:
        process.kill()
        auth.kill()


THROTTLE_WINDOW_SECONDS = 6
"""Long enough that a bridge started on a busy machine still meets the block, short enough
that its wait and its first status fit in the test's `WAIT`."""


async def test_a_throttled_login_waits_for_retry_after(
    stack: Stack, operator: RelayClient, tmp_path: Path
) -> None:
    factory = stack.create_user(UserType.FACTORY)
    auth = own_auth_service(
        tmp_path / "auth",
        factory,
        LOGIN_MAX_FAILURES_PER_USERNAME_AND_ADDRESS="1",
        LOGIN_MAX_FAILURES_PER_USERNAME="1",
        LOGIN_FAILURE_WINDOW_SECONDS=str(THROTTLE_WINDOW_SECONDS),
    )
    auth.start()
    settings = {**bridge_settings(stack, factory), "BRIDGE_AUTH_URL": auth.http_url}
    try:
        with pytest.raises(LoginRefusedError, match="401"):
            await login(auth.http_url, factory, "wrong password")
        process = start_bridge(tmp_path, settings)
        try:
            assert (await next_message(operator, 5)).sender.username == factory
        finally:
            process.kill()
    finally:
        auth.kill()
    # One 429 and one wait of Retry-After: an earlier retry would have met a second 429.
    [deferred] = [e for e in log_events(process) if e["event"] == "relay_login_failed"]
    assert deferred["retry_after"] >= 1
    assert deferred["error"].startswith("login deferred (429)")
