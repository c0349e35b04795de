"""`factory-bridge`: connect a factory machine, simulated or a PLC over Modbus TCP, to the relay.

Settings come from the environment, `.env` and `.factory-bridge.env` (which
`auth-service demo-users` writes for the demo factory); `factory-bridge --help` lists
them with their defaults. The register map is in `relay_client.bridge.modbus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay_client.auth import LoginRefusedError
from relay_client.bridge.bridge import Bridge
from relay_client.bridge.machine import Machine, SimulatedMachine
from relay_client.client import DEFAULT_CLOCK_SKEW_MS, ClientStoppedError, RelayClient
from relay_client.state import DEFAULT_REMEMBERED_IDS, MAX_REMEMBERED_IDS
from shared.cli import command_parser, fail
from shared.logging import configure_logging
from shared.settings import LogLevel, load_settings

ENV_FILES = (".env", ".factory-bridge.env")
SETTINGS_ERROR = 2
"""The exit code of an invalid setting, as for every other setting."""


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRIDGE_", env_file=ENV_FILES, extra="ignore")

    relay_url: str = Field(default="ws://127.0.0.1:8001/ws", pattern=r"^wss?://")
    auth_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://")
    username: str = Field(min_length=3, max_length=64)
    password: SecretStr
    status_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    state_file: Path | None = Field(
        default=None,
        description="its cursors and executed command ids; unset: "
        "$XDG_STATE_HOME (~/.local/state)/factory-bridge/<username>.json",
    )
    remembered_commands: int = Field(
        default=DEFAULT_REMEMBERED_IDS,
        ge=1,
        le=MAX_REMEMBERED_IDS,
        description="how many executed command ids the state file keeps",
    )
    clock_skew_ms: int = Field(
        default=DEFAULT_CLOCK_SKEW_MS,
        ge=0,
        le=60_000,
        description="how far past its expires_at a command is still executed",
    )

    machine: Literal["simulated", "modbus"] = "simulated"
    modbus_host: str | None = Field(default=None, min_length=1, max_length=253)
    modbus_port: int = Field(default=502, ge=1, le=65535)
    modbus_device_id: int = Field(default=1, ge=0, le=255)

    @model_validator(mode="after")
    def _modbus_ready(self) -> BridgeSettings:
        if self.machine == "modbus":
            if self.modbus_host is None:
                raise ValueError("BRIDGE_MODBUS_HOST: required when BRIDGE_MACHINE is modbus")
            if importlib.util.find_spec("pymodbus") is None:
                raise ValueError(
                    "BRIDGE_MACHINE: modbus needs pymodbus: pip install 'factory-relay[modbus]'"
                )
        return self

    def state_path(self) -> Path:
        """BRIDGE_STATE_FILE, or the default under the user's state directory."""
        if self.state_file is not None:
            return self.state_file
        state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(state_home) / "factory-bridge" / f"{self.username}.json"


class LogSettings(BaseSettings):
    """`LOG_LEVEL` without the prefix: the same setting as the services' (one `.env`)."""

    model_config = SettingsConfigDict(env_file=ENV_FILES, extra="ignore")

    log_level: LogLevel = "INFO"


DESCRIPTION = (
    "Log in to the auth service as a factory, connect to the relay, publish the machine's "
    "status every interval and answer operators' commands (COMMAND_ACK or "
    "COMMAND_REJECTED). The machine is simulated, or a PLC over Modbus TCP "
    "(BRIDGE_MACHINE=modbus, needs the modbus extra)."
)


@contextlib.asynccontextmanager
async def open_machine(settings: BridgeSettings) -> AsyncIterator[Machine]:
    """The machine the settings name, closed (for a PLC, disconnected) on the way out."""
    if settings.machine == "simulated":
        yield SimulatedMachine()
        return
    from relay_client.bridge.modbus import ModbusMachine  # the optional extra: only if asked

    assert settings.modbus_host is not None  # checked by the settings
    async with ModbusMachine(
        settings.modbus_host, settings.modbus_port, settings.modbus_device_id
    ) as machine:
        yield machine


async def run_bridge(settings: BridgeSettings) -> None:
    client = RelayClient(
        settings.relay_url,
        auth_url=settings.auth_url,
        username=settings.username,
        password=settings.password.get_secret_value(),
        state_file=settings.state_path(),
        remembered_ids=settings.remembered_commands,
        clock_skew_ms=settings.clock_skew_ms,
        deliver_expired=True,
    )
    async with client, open_machine(settings) as machine:
        await Bridge(client, machine, settings.status_interval_seconds).run()


async def run_until_stopped(settings: BridgeSettings) -> None:
    """Run the bridge until SIGTERM or SIGINT (then close its session and return)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bridge = asyncio.create_task(run_bridge(settings), name="bridge")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait({bridge, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        bridge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge  # re-raises what ended the bridge, if it ended by itself


def main(argv: Sequence[str] | None = None) -> None:
    command_parser("factory-bridge", DESCRIPTION, [BridgeSettings, LogSettings]).parse_args(argv)
    log_level = load_settings(LogSettings).log_level
    settings = load_settings(BridgeSettings)
    check_state_file(settings.state_path())
    configure_logging(log_level, service="factory-bridge")
    try:
        asyncio.run(run_until_stopped(settings))
    except (ClientStoppedError, ExceptionGroup) as error:
        stopped = _client_stopped(error)
        if stopped is None:
            raise
        fail(_explain(stopped))


def check_state_file(path: Path) -> None:
    """Stop at start with one line (as for any invalid setting) if the state file could
    not be written: a bridge that cannot save its state could execute a command twice."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        reason = f"cannot create {path.parent}: {error.strerror}"
        fail(f"invalid setting BRIDGE_STATE_FILE: {reason}", SETTINGS_ERROR)
    if path.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        fail(f"invalid setting BRIDGE_STATE_FILE: cannot write {path}", SETTINGS_ERROR)


def _client_stopped(error: BaseException) -> ClientStoppedError | None:
    """The client's final error, alone or inside the bridge's task group."""
    if isinstance(error, ClientStoppedError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := _client_stopped(inner)) is not None:
                return found
    return None


def _explain(stopped: ClientStoppedError) -> str:
    if isinstance(stopped.__cause__, LoginRefusedError):
        return f"{stopped}: check BRIDGE_USERNAME and BRIDGE_PASSWORD (not retried)"
    return str(stopped)


if __name__ == "__main__":
    main()
