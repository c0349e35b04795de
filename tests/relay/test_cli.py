"""`relay-service` as a command: its help, its usage errors, a port it cannot have."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay_service.config import RelaySettings
from tests.cli import BROKEN_SETTINGS, assert_help, assert_usage_error, write_broken_dotenv
from tests.processes import Listener, console_script, run_to_exit

HELP_TIMEOUT = 30


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_help_lists_the_settings_without_reading_them(tmp_path: Path, option: str) -> None:
    write_broken_dotenv(tmp_path)
    result = run_to_exit(
        [console_script("relay-service"), option], tmp_path, BROKEN_SETTINGS, timeout=HELP_TIMEOUT
    )
    assert_help(result, RelaySettings)


def test_help_connects_to_nothing(tmp_path: Path, listener: Listener) -> None:
    settings = {
        "JWT_SECRET": "x" * 40,
        "REDIS_URL": f"redis://127.0.0.1:{listener.port}/0",
    }
    result = run_to_exit(
        [console_script("relay-service"), "--help"], tmp_path, settings, timeout=HELP_TIMEOUT
    )
    assert_help(result, RelaySettings)
    assert listener.connections() == 0


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run_to_exit(
        [console_script("relay-service"), "--port", "9000"], tmp_path, {}, timeout=HELP_TIMEOUT
    )
    assert_usage_error(result)
