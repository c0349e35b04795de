"""`factory-bridge` as a command: its help, its usage errors, its settings, its login."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay_client.bridge.cli import BridgeSettings
from tests.cli import BROKEN_SETTINGS, assert_help, assert_usage_error, write_broken_dotenv
from tests.processes import Listener, console_script, run_to_exit

TIMEOUT = 30


def bridge(*args: str) -> list[str]:
    return [console_script("factory-bridge"), *args]


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_help_lists_the_settings_without_reading_them(tmp_path: Path, option: str) -> None:
    write_broken_dotenv(tmp_path)
    result = run_to_exit(bridge(option), tmp_path, BROKEN_SETTINGS, timeout=TIMEOUT)
    assert_help(result, BridgeSettings)


def test_help_connects_to_nothing(tmp_path: Path, listener: Listener) -> None:
    settings = {
        "BRIDGE_USERNAME": "factory-1",
        "BRIDGE_PASSWORD": "a password",
        "BRIDGE_AUTH_URL": f"http://127.0.0.1:{listener.port}",
        "BRIDGE_RELAY_URL": f"ws://127.0.0.1:{listener.port}/ws",
    }
    result = run_to_exit(bridge("--help"), tmp_path, settings, timeout=TIMEOUT)
    assert_help(result, BridgeSettings)
    assert listener.connections() == 0


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    assert_usage_error(run_to_exit(bridge("--machine", "modbus"), tmp_path, {}, timeout=TIMEOUT))
