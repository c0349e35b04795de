"""`factory-bridge`: connect a factory machine, simulated or a PLC over Modbus TCP, to the relay.

Settings come from the environment, `.env` and `.factory-bridge.env` (which
`auth-service demo-users` writes for the demo factory); `factory-bridge --help` lists
them with their defaults. The register map is in `relay_client.bridge.modbus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay_client.bridge.bridge import Bridge
from relay_client.bridge.machine import Machine, SimulatedMachine
from relay_client.client import RelayClient
from shared.cli import command_parser
from shared.logging import configure_logging
from shared.settings import load_settings


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_", env_file=(".env", ".factory-bridge.env"), extra="ignore"
    )

    relay_url: str = Field(default="ws://127.0.0.1:8001/ws", pattern=r"^wss?://")
    auth_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://")
    username: str = Field(min_length=3, max_length=64)
    password: SecretStr
    status_interval_seconds: float = Field(default=1.0, gt=0, le=3600)

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
    )
    async with client, open_machine(settings) as machine:
        await Bridge(client, machine, settings.status_interval_seconds).run()


DESCRIPTION = (
    "Log in to the auth service as a factory, connect to the relay, publish the machine's "
    "status every interval and answer operators' commands (COMMAND_ACK or "
    "COMMAND_REJECTED). The machine is simulated, or a PLC over Modbus TCP "
    "(BRIDGE_MACHINE=modbus, needs the modbus extra)."
)


def main(argv: Sequence[str] | None = None) -> None:
    command_parser("factory-bridge", DESCRIPTION, [BridgeSettings]).parse_args(argv)
    settings = load_settings(BridgeSettings)
    configure_logging("INFO", service="factory-bridge")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_bridge(settings))


if __name__ == "__main__":
    main()
