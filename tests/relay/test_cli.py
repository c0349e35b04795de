"""`relay-service` as a command: its help, its usage errors, a port it cannot have."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relay_service.config import RelaySettings
from relay_service.relay import Relay
from relay_service.server import running
from tests.cli import BROKEN_SETTINGS, assert_help, assert_usage_error, write_broken_dotenv
from tests.processes import Listener, RelayProcess, console_script, run_to_exit
from tests.relay.harness import JWT_SECRET

TIMEOUT = 30


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_help_lists_the_settings_without_reading_them(tmp_path: Path, option: str) -> None:
    write_broken_dotenv(tmp_path)
    result = run_to_exit(
        [console_script("relay-service"), option], tmp_path, BROKEN_SETTINGS, timeout=TIMEOUT
    )
    assert_help(result, RelaySettings)


def test_help_connects_to_nothing(tmp_path: Path, listener: Listener) -> None:
    settings = {
        "JWT_SECRET": JWT_SECRET,
        "REDIS_URL": f"redis://127.0.0.1:{listener.port}/0",
    }
    result = run_to_exit(
        [console_script("relay-service"), "--help"], tmp_path, settings, timeout=TIMEOUT
    )
    assert_help(result, RelaySettings)
    assert listener.connections() == 0


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run_to_exit(
        [console_script("relay-service"), "--port", "9000"], tmp_path, {}, timeout=TIMEOUT
    )
    assert_usage_error(result)


@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_a_port_in_use_is_one_line_naming_it_and_port(
    tmp_path: Path, listener: Listener, broker: str, redis_url: str
) -> None:
    settings = {"JWT_SECRET": JWT_SECRET, "PORT": str(listener.port)}
    if broker == "redis":
        settings["REDIS_URL"] = redis_url
    result = run_to_exit([console_script("relay-service")], tmp_path, settings, timeout=TIMEOUT)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{listener.port}: port {listener.port} is already"
        " in use: stop what holds it, or set PORT"
    ]


async def test_a_relay_that_cannot_listen_disconnects_its_broker(
    listener: Listener, redis_url: str, redis_prefix: str
) -> None:
    settings = RelaySettings(
        jwt_secret=JWT_SECRET,
        port=listener.port,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
    )
    relay = Relay(settings)
    with pytest.raises(OSError, match="in use"):
        async with running(relay):
            pytest.fail("the relay listened on a port in use")
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize("level", ["info", "Info", "INFO", "debug", "Warning", "error"])
def test_log_level_is_read_in_any_case(level: str) -> None:
    settings = RelaySettings(jwt_secret=JWT_SECRET, log_level=level)
    assert settings.log_level == level.upper()


def test_the_relay_starts_with_a_lower_case_log_level(tmp_path: Path) -> None:
    relay = RelayProcess(tmp_path, jwt_secret=JWT_SECRET, settings={"LOG_LEVEL": "info"})
    try:
        relay.start()
        assert relay.stop() == 0
    finally:
        relay.kill()
    assert '"event": "relay_listening"' in relay.stdout_path.read_text()


def test_an_invalid_log_level_stops_the_relay_with_one_line_naming_it(tmp_path: Path) -> None:
    settings = {"JWT_SECRET": JWT_SECRET, "LOG_LEVEL": "verbose"}
    result = run_to_exit([console_script("relay-service")], tmp_path, settings, timeout=TIMEOUT)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: invalid setting LOG_LEVEL: ")
