"""Checks shared by the tests of the three commands' `--help` and usage errors."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from tests.processes import Listener

BROKEN_SETTINGS = {
    "JWT_SECRET": "short",
    "LOG_LEVEL": "loud",
    "PORT": "not-a-port",
    "DATABASE_URL": "mysql://nobody@nowhere/db",
    "REDIS_URL": "http://not-redis",
    "BRIDGE_MACHINE": "plc",
    "BRIDGE_STATUS_INTERVAL_SECONDS": "-1",
}
"""Every command refuses these at start: `--help` must answer without reading them."""


def write_broken_dotenv(workdir: Path) -> None:
    """A `.env` (and the bridge's `.factory-bridge.env`) that would stop any command reading it."""
    text = "".join(f"{name}={value}\n" for name, value in BROKEN_SETTINGS.items())
    for name in (".env", ".factory-bridge.env"):
        (workdir / name).write_text(text)


def env_names(settings_class: type[BaseSettings]) -> list[str]:
    prefix = str(settings_class.model_config.get("env_prefix") or "")
    return [(prefix + name).upper() for name in settings_class.model_fields]


def assert_help(
    result: subprocess.CompletedProcess[str], *settings_classes: type[BaseSettings]
) -> None:
    """Exit 0, the usage on standard output, every setting of the classes listed."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: ")
    listed = result.stdout.partition("\nsettings (")[2]
    listed_names = {line.split()[0] for line in listed.splitlines()[1:] if line.strip()}
    expected = {name for settings_class in settings_classes for name in env_names(settings_class)}
    assert listed_names == expected


def assert_usage_error(result: subprocess.CompletedProcess[str]) -> None:
    """argparse's refusal: exit 2, the usage and one error line, no traceback."""
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ")
    assert ": error: " in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def listener() -> Iterator[Listener]:
    """A port to point a command's URLs at, to see whether it connected."""
    port = Listener()
    yield port
    port.close()
