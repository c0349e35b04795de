"""A real auth service and relay, sharing Redis, for the client's live tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from relay_client import Message, RelayClient
from shared.identity import UserType
from tests.processes import AuthProcess, RelayProcess

JWT_SECRET = "client-test-secret-0123456789abcdefghijk"
ADMIN = ("admin", "admin-password-123")
PASSWORD = "password-1234"
WAIT = 10.0
"""The longest a test waits for a message or a state."""


@dataclass
class Stack:
    auth: AuthProcess
    relay: RelayProcess
    admin_token: str

    def create_user(self, user_type: UserType) -> str:
        """A new user of this type (password `PASSWORD`); returns its name."""
        username = f"{user_type.value}-{uuid.uuid4().hex[:8]}"
        response = httpx.post(
            f"{self.auth.http_url}/users",
            json={"username": username, "password": PASSWORD, "type": user_type.value},
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        response.raise_for_status()
        return username


def login(auth: AuthProcess, username: str, password: str) -> str:
    response = httpx.post(
        f"{auth.http_url}/auth/token", data={"username": username, "password": password}
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def client_for(stack: Stack, username: str, relay: RelayProcess | None = None) -> RelayClient:
    return RelayClient(
        (relay or stack.relay).ws_url,
        auth_url=stack.auth.http_url,
        username=username,
        password=PASSWORD,
    )


@pytest.fixture
async def operator(stack: Stack) -> AsyncIterator[RelayClient]:
    async with client_for(stack, stack.create_user(UserType.OPERATOR)) as client:
        yield client


async def next_message(client: RelayClient, op: int, name: str | None = None) -> Message:
    """The next message of this op (and event name), skipping the others."""
    async with asyncio.timeout(WAIT):
        async for message in client:
            if message.op == op and (name is None or message.name == name):
                return message
    raise AssertionError("the client stopped")


def running_stack(
    redis_url: str,
    workdir: Path,
    *,
    auth_settings: Mapping[str, str] | None = None,
    relay_settings: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """A real auth service and relay on one Redis prefix of their own, for one module."""
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}"}
    auth = AuthProcess(
        workdir, jwt_secret=JWT_SECRET, admin=ADMIN, settings={**shared, **(auth_settings or {})}
    )
    relay = RelayProcess(
        workdir,
        jwt_secret=JWT_SECRET,
        settings={**shared, "HEARTBEAT_INTERVAL_MS": "1000", **(relay_settings or {})},
    )
    try:
        auth.start()
        relay.start()
        yield Stack(auth, relay, login(auth, *ADMIN))
    finally:
        relay.kill()
        auth.kill()


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running_stack(redis_url, tmp_path_factory.mktemp("client-stack"))
