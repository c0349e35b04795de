"""A real auth service and relay, sharing Redis, for the client's live tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from shared.identity import UserType
from tests.processes import AuthProcess, RelayProcess

JWT_SECRET = "client-test-secret-0123456789abcdefghijk"
ADMIN = ("admin", "admin-password-123")
PASSWORD = "password-1234"


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


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("client-stack")
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}"}
    auth = AuthProcess(workdir, jwt_secret=JWT_SECRET, admin=ADMIN, settings=shared)
    relay = RelayProcess(
        workdir, jwt_secret=JWT_SECRET, settings={**shared, "HEARTBEAT_INTERVAL_MS": "1000"}
    )
    try:
        auth.start()
        relay.start()
        yield Stack(auth, relay, login(auth, *ADMIN))
    finally:
        relay.kill()
        auth.kill()
