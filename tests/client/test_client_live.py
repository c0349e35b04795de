"""The Python client against the real auth service and relay."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from relay_client import ClientStoppedError, RelayClient
from relay_client import login as relay_login
from shared.identity import UserType
from tests.client.conftest import (
    ADMIN,
    JWT_SECRET,
    PASSWORD,
    WAIT,
    Stack,
    client_for,
    login,
    next_message,
)
from tests.processes import RelayProcess, ServiceProcess, console_script

DOCS_BRIDGE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "bridge.py"


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a client's state (its attributes change inside its own task)."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 — nothing to await but the state itself
            await asyncio.sleep(0.05)


async def test_a_client_given_credentials_logs_in_and_identifies(stack: Stack) -> None:
    username = stack.create_user(UserType.VIEWER)
    async with client_for(stack, username) as client:
        assert client.connected
        assert client.user is not None
        assert (client.user.username, client.user.type) == (username, "viewer")


async def test_a_command_reaches_the_factory_and_its_event_comes_back(
    stack: Stack, operator: RelayClient
) -> None:
    factory_name = stack.create_user(UserType.FACTORY)
    async with client_for(stack, factory_name) as factory:
        await operator.send_command({"action": "start"}, target=factory_name, id="cmd-1")
        command = await next_message(factory, 4)
        assert (command.id, command.target) == ("cmd-1", factory_name)
        assert command.payload == {"action": "start"}
        assert command.sender == operator.user
        await factory.send_event("COMMAND_ACK", {"command_id": command.id})
        ack = await next_message(operator, 6, "COMMAND_ACK")
        assert ack.payload == {"command_id": "cmd-1"}


async def test_the_client_survives_a_relay_restart(stack: Stack, tmp_path: Path) -> None:
    relay = RelayProcess(tmp_path, jwt_secret=JWT_SECRET, settings=stack.relay.settings)
    relay.settings["PORT"] = str(relay.port)
    relay.start()
    factory_name = stack.create_user(UserType.FACTORY)
    try:
        async with (
            client_for(stack, stack.create_user(UserType.OPERATOR), relay) as operator,
            client_for(stack, factory_name, relay) as factory,
        ):
            assert relay.stop() == 0
            relay.start()
            await wait_until(lambda: operator.sessions_opened == 2)
            await wait_until(lambda: factory.sessions_opened == 2)
            await operator.send_command({"after": "restart"}, target=factory_name)
            assert (await next_message(factory, 4)).payload == {"after": "restart"}
    finally:
        relay.kill()


async def test_a_revoked_token_is_replaced_by_a_new_login(stack: Stack) -> None:
    username = stack.create_user(UserType.VIEWER)
    tokens: list[str] = []

    async def provide() -> str:
        tokens.append(await relay_login(stack.auth.http_url, username, PASSWORD))
        return tokens[-1]

    async with RelayClient(stack.relay.ws_url, token_provider=provide) as client:
        async with httpx.AsyncClient(base_url=stack.auth.http_url) as http:
            bearer = {"Authorization": f"Bearer {tokens[0]}"}
            assert (await http.post("/auth/logout", headers=bearer)).status_code == 204
        await wait_until(lambda: client.sessions_opened == 2)
        assert len(tokens) == 2
        assert client.connected


async def test_the_client_stops_on_a_code_that_means_fix_the_client(stack: Stack) -> None:
    async with client_for(stack, stack.create_user(UserType.VIEWER)) as viewer:
        await viewer.send_command({"viewers": "may not"})
        with pytest.raises(ClientStoppedError) as stopped:
            await next_message(viewer, 4)
        assert stopped.value.code == 4010


async def test_a_dead_connection_is_noticed_by_its_missing_acks(
    stack: Stack, tmp_path: Path
) -> None:
    relay = RelayProcess(
        tmp_path, jwt_secret=JWT_SECRET, settings={"HEARTBEAT_INTERVAL_MS": "300"}
    ).start()
    token = login(stack.auth, *ADMIN)
    try:
        async with RelayClient(relay.ws_url, token=token) as client:
            os.kill(relay.process.pid, signal.SIGSTOP)
            try:
                await wait_until(lambda: not client.connected)
            finally:
                os.kill(relay.process.pid, signal.SIGCONT)
            await wait_until(lambda: client.sessions_opened == 2)
    finally:
        relay.kill()


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, str(DOCS_BRIDGE)], id="docs-example"),
        pytest.param([console_script("factory-bridge")], id="factory-bridge"),
    ],
)
async def test_a_bridge_answers_commands_and_reports_status(
    stack: Stack, operator: RelayClient, tmp_path: Path, command: list[str]
) -> None:
    factory_name = stack.create_user(UserType.FACTORY)
    settings = {
        "RELAY_URL": stack.relay.ws_url,
        "AUTH_URL": stack.auth.http_url,
        "FACTORY_USERNAME": factory_name,
        "FACTORY_PASSWORD": PASSWORD,
        "BRIDGE_RELAY_URL": stack.relay.ws_url,
        "BRIDGE_AUTH_URL": stack.auth.http_url,
        "BRIDGE_USERNAME": factory_name,
        "BRIDGE_PASSWORD": PASSWORD,
        "BRIDGE_STATUS_INTERVAL_SECONDS": "0.2",
    }
    bridge = ServiceProcess(command, tmp_path, name="bridge", settings=settings, http=False)
    bridge.start()
    try:
        status = await next_message(operator, 5)
        assert status.sender.username == factory_name
        await operator.send_command({"action": "start"}, target=factory_name, id="cmd-7")
        ack = await next_message(operator, 6, "COMMAND_ACK")
        assert ack.payload["command_id"] == "cmd-7"
        assert ack.sender.username == factory_name
    finally:
        bridge.kill()
