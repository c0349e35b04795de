"""A client's session outlives its token: it refreshes (op 7) before `exp`, on the same
session, through its credentials; a bridge keeps answering commands across expiries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from relay_client import RelayClient
from relay_client.client import REFRESH_MARGIN_SECONDS, refresh_delay
from shared.identity import UserType
from shared.protocol import Op
from tests.client.conftest import ADMIN, PASSWORD, Stack, login, running_stack
from tests.processes import ServiceProcess, console_script
from tests.relay.harness import metric_value

TOKEN_TTL_SECONDS = 4
LIFETIMES = 3


@pytest.fixture(scope="module")
def short_tokens(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Auth service and relay where every token lives TOKEN_TTL_SECONDS."""
    yield from running_stack(
        redis_url,
        tmp_path_factory.mktemp("short-tokens"),
        auth_settings={"ACCESS_TOKEN_TTL_SECONDS": str(TOKEN_TTL_SECONDS)},
    )


def _token(issued_at: float, lifetime: float) -> str:
    claims = {"iat": int(issued_at), "exp": int(issued_at + lifetime)}
    return jwt.encode(claims, "not-verified-by-the-client-0123456789", algorithm="HS256")


def test_a_day_long_token_is_refreshed_five_minutes_before_it_expires() -> None:
    now = time.time()

    delay = refresh_delay(_token(now, 86_400), now)

    assert delay == pytest.approx(86_400 - REFRESH_MARGIN_SECONDS, abs=1)


def test_a_short_token_is_refreshed_a_quarter_of_its_life_before_it_expires() -> None:
    now = time.time()

    delay = refresh_delay(_token(now, 100), now)

    assert delay == pytest.approx(75, abs=1)


def test_an_expired_token_is_refreshed_at_once() -> None:
    now = time.time()

    assert refresh_delay(_token(now - 100, 50), now) == 0


def _with_fresh_admin(stack: Stack) -> Stack:
    """The admin's token lives TOKEN_TTL_SECONDS too: log in again before using it."""
    stack.admin_token = login(stack.auth, *ADMIN)
    return stack


async def test_a_client_keeps_its_session_across_several_token_lifetimes(
    short_tokens: Stack,
) -> None:
    stack = _with_fresh_admin(short_tokens)
    closes_before = await metric_value(stack.relay, 'relay_closes_total{code="4004"}')
    client = RelayClient(
        stack.relay.ws_url,
        auth_url=stack.auth.http_url,
        username=stack.create_user(UserType.VIEWER),
        password=PASSWORD,
    )
    async with client:
        await asyncio.sleep(TOKEN_TTL_SECONDS * LIFETIMES)

        assert client.connected
        assert client.sessions_opened == 1
    assert await metric_value(stack.relay, 'relay_closes_total{code="4004"}') == closes_before


async def test_a_bridge_answers_commands_across_token_expiries(
    short_tokens: Stack, tmp_path: Path
) -> None:
    stack = _with_fresh_admin(short_tokens)
    factory = stack.create_user(UserType.FACTORY)
    settings = {
        "BRIDGE_RELAY_URL": stack.relay.ws_url,
        "BRIDGE_AUTH_URL": stack.auth.http_url,
        "BRIDGE_USERNAME": factory,
        "BRIDGE_PASSWORD": PASSWORD,
        "BRIDGE_STATUS_INTERVAL_SECONDS": "0.5",
    }
    bridge = ServiceProcess(
        [console_script("factory-bridge")], tmp_path, name="bridge", settings=settings, http=False
    )
    operator = RelayClient(
        stack.relay.ws_url,
        auth_url=stack.auth.http_url,
        username=stack.create_user(UserType.OPERATOR),
        password=PASSWORD,
    )
    bridge.start()
    try:
        async with operator:
            await _first_status_of(operator, factory)  # the bridge is online
            acked: list[str] = []
            deadline = time.monotonic() + TOKEN_TTL_SECONDS * LIFETIMES
            number = 0
            while time.monotonic() < deadline:
                number += 1
                await operator.send_command({"action": "start"}, target=factory, id=f"c-{number}")
                acked.append(await _ack_of(operator, f"c-{number}"))
                await asyncio.sleep(0.5)

            assert acked == [f"c-{n}" for n in range(1, number + 1)]
            assert operator.sessions_opened == 1
    finally:
        bridge.kill()
    assert "relay_session_refreshed" in bridge.logs(200)


async def _first_status_of(operator: RelayClient, factory: str) -> None:
    async with asyncio.timeout(30):
        async for message in operator:
            if message.op == Op.STATUS and message.sender.username == factory:
                return


async def _ack_of(operator: RelayClient, command_id: str) -> str:
    async with asyncio.timeout(5):
        async for message in operator:
            if message.name in ("COMMAND_ACK", "COMMAND_REJECTED"):
                command: str = message.payload["command_id"]
                if command == command_id:
                    return command
    raise AssertionError("the operator's client stopped")
