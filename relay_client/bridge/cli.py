"""`factory-bridge`: connect a simulated factory machine to the relay.

Settings come from the environment, `.env` and `.factory-bridge.env` (which
`auth-service demo-users` writes for the demo factory): `BRIDGE_RELAY_URL`,
`BRIDGE_AUTH_URL`, `BRIDGE_USERNAME`, `BRIDGE_PASSWORD`, `BRIDGE_STATUS_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay_client.bridge.bridge import Bridge
from relay_client.bridge.machine import SimulatedMachine
from relay_client.client import RelayClient
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


async def run_bridge(settings: BridgeSettings) -> None:
    client = RelayClient(
        settings.relay_url,
        auth_url=settings.auth_url,
        username=settings.username,
        password=settings.password.get_secret_value(),
    )
    async with client:
        await Bridge(client, SimulatedMachine(), settings.status_interval_seconds).run()


def main() -> None:
    settings = load_settings(BridgeSettings)
    configure_logging("INFO", service="factory-bridge")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_bridge(settings))


if __name__ == "__main__":
    main()
