"""An auth service process on a fresh PostgreSQL database, a relay process, one Redis.

For the tests of what happens to logins and revocations when Redis is full, hung or
emptied: every piece is a real process, as deployed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from auth_service.core.config import normalize_database_url
from auth_service.core.db import run_migrations
from shared.protocol import Op
from tests.processes import AuthProcess, RelayProcess
from tests.services import _admin_execute, _with_database

JWT_SECRET = "stack-test-secret-0123456789abcdefghijkl"
ADMIN = ("admin", "admin password 123")
PASSWORD = "operator password 123"
SYNC_INTERVAL_SECONDS = 0.5
REDIS_TIMEOUT_SECONDS = 1.0
REPAIR_BOUND_SECONDS = 10 * SYNC_INTERVAL_SECONDS + 2 * REDIS_TIMEOUT_SECONDS
"""How long a relay may still accept a revoked token once Redis answers again: a few
sync intervals (this machine is shared and slow) and a timed-out call or two."""
HTTP_TIMEOUT = 15.0


def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database of the test's own (the first admin needs no users)."""
    name = f"relay_stack_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(server_url, f'CREATE DATABASE "{name}"'))
    url = normalize_database_url(_with_database(server_url, name))
    run_migrations(url)
    try:
        yield url
    finally:
        asyncio.run(_admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def start_auth(
    workdir: Path, *, database_url: str, redis_url: str, prefix: str, **extra: str
) -> AuthProcess:
    settings = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "REVOCATION_SYNC_INTERVAL_SECONDS": str(SYNC_INTERVAL_SECONDS),
        "REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT_SECONDS),
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        **extra,
    }
    return AuthProcess(workdir, jwt_secret=JWT_SECRET, admin=ADMIN, settings=settings).start()


def start_relay(workdir: Path, *, redis_url: str, prefix: str) -> RelayProcess:
    return RelayProcess(
        workdir, jwt_secret=JWT_SECRET, redis_url=redis_url, redis_prefix=prefix
    ).start()


@dataclass
class AuthClient:
    """What an admin and an operator do over HTTP."""

    auth: AuthProcess

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.auth.http_url, timeout=HTTP_TIMEOUT)

    async def login(self, username: str, password: str) -> httpx.Response:
        async with self.http() as http:
            return await http.post("/auth/token", data={"username": username, "password": password})

    async def token(self, username: str, password: str) -> str:
        response = await self.login(username, password)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def create_operator(self, admin_token: str) -> tuple[str, str]:
        """A new operator: its id and a token of its own."""
        name = f"operator-{uuid.uuid4().hex[:8]}"
        async with self.http() as http:
            response = await http.post(
                "/users",
                json={"username": name, "password": PASSWORD, "type": "operator"},
                headers=bearer(admin_token),
            )
        assert response.status_code == 201, response.text
        return response.json()["id"], await self.token(name, PASSWORD)

    async def revoke(self, kind: str, admin_token: str, user_id: str, token: str) -> int:
        """Revoke the operator's token by logout, by disabling it or by deleting it."""
        async with self.http() as http:
            if kind == "logout":
                response = await http.post("/auth/logout", headers=bearer(token))
            elif kind == "disable":
                response = await http.patch(
                    f"/users/{user_id}", json={"disabled": True}, headers=bearer(admin_token)
                )
            else:
                response = await http.delete(f"/users/{user_id}", headers=bearer(admin_token))
        return response.status_code

    async def me(self, token: str) -> int:
        async with self.http() as http:
            return (await http.get("/auth/me", headers=bearer(token))).status_code


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def identify(relay: RelayProcess, token: str) -> int | None:
    """Identify once: None on READY, else the close code."""
    async with connect(relay.ws_url, open_timeout=5, close_timeout=1) as ws:
        await asyncio.wait_for(ws.recv(), 5)  # Hello
        await ws.send(f'{{"op":{Op.IDENTIFY},"d":{{"token":"{token}"}}}}')
        try:
            reply = await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as closed:
            received = closed.rcvd
        else:
            assert '"READY"' in str(reply), reply
            return None
    assert received is not None, "dropped without a close frame"
    return received.code


async def refused_within(relay: RelayProcess, token: str, seconds: float) -> int | None:
    """Identify until the relay refuses the token or `seconds` pass; the close code."""
    deadline = time.monotonic() + seconds
    while True:
        code = await identify(relay, token)
        if code is not None or time.monotonic() > deadline:
            return code
        await asyncio.sleep(0.1)
