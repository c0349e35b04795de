"""The key rotation runbook (docs/operations.md), walked with real auth and relay processes.

Three steps, each a restart with new settings, as an operator does them:
1. publish the new key: every verifier accepts it (the auth service still signs with the old);
2. switch: the auth service signs with the new key and still accepts the old one;
3. retire the old key, once every token it signed has expired (`ACCESS_TOKEN_TTL_SECONDS`).
At every step every token in use keeps working at the auth service and the relay; after
step 3 a token of the retired key is refused (401, 4004). With `JWKS_URL` the relay is
never restarted: its session opened before step 1 stays open throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from shared.keys import write_key_pair
from shared.protocol import CloseCode, Op
from tests.processes import AuthProcess, RelayProcess, ServiceProcess
from tests.relay.harness import RECV_TIMEOUT, Client, Connector

ADMIN = ("rotation-admin", "rotation admin password")
OLD_SECRET = "rotation-old-secret-" + "o" * 32
NEW_SECRET = "rotation-new-secret-" + "n" * 32
JWKS_REFRESH_SECONDS = 1
JWKS_PROPAGATION_SECONDS = 2 * JWKS_REFRESH_SECONDS + 0.5
"""Step 1 and 3 wait this long with `JWKS_URL`: the runbook's "wait for the relays' refresh"."""

Settings = dict[str, str]


@dataclass
class Plan:
    """The auth and relay settings at steps 0 (before) to 3 of one kind of rotation."""

    auth: list[Settings]
    relay: list[Settings]
    relay_restarts: bool


def hs256_plan() -> Plan:
    steps: list[Settings] = [
        {"JWT_SECRET": OLD_SECRET},
        {"JWT_SECRET": OLD_SECRET, "JWT_PREVIOUS_SECRETS": NEW_SECRET},
        {"JWT_SECRET": NEW_SECRET, "JWT_PREVIOUS_SECRETS": OLD_SECRET},
        {"JWT_SECRET": NEW_SECRET},
    ]
    return Plan(auth=steps, relay=steps, relay_restarts=True)


def key_files(folder: Path) -> dict[str, str]:
    for name in ("old", "new"):
        write_key_pair(folder / f"{name}.key", folder / f"{name}.pub")
    both = folder / "both.pub"
    both.write_bytes((folder / "old.pub").read_bytes() + (folder / "new.pub").read_bytes())
    return {name: str(folder / name) for name in ("old.key", "new.key", "old.pub", "new.pub")} | {
        "both.pub": str(both)
    }


def eddsa_auth(files: dict[str, str]) -> list[Settings]:
    eddsa = {"JWT_ALGORITHM": "EdDSA"}
    return [
        {**eddsa, "JWT_PRIVATE_KEY_FILE": files["old.key"]},
        {
            **eddsa,
            "JWT_PRIVATE_KEY_FILE": files["old.key"],
            "JWT_PREVIOUS_PUBLIC_KEY_FILES": files["new.pub"],
        },
        {
            **eddsa,
            "JWT_PRIVATE_KEY_FILE": files["new.key"],
            "JWT_PREVIOUS_PUBLIC_KEY_FILES": files["old.pub"],
        },
        {**eddsa, "JWT_PRIVATE_KEY_FILE": files["new.key"]},
    ]


def key_file_plan(folder: Path) -> Plan:
    files = key_files(folder)
    relay = [
        {"JWT_ALGORITHM": "EdDSA", "JWT_PUBLIC_KEY_FILE": files[name]}
        for name in ("old.pub", "both.pub", "both.pub", "new.pub")
    ]
    return Plan(auth=eddsa_auth(files), relay=relay, relay_restarts=True)


def jwks_plan(folder: Path, auth: ServiceProcess) -> Plan:
    relay = {
        "JWT_ALGORITHM": "EdDSA",
        "JWKS_URL": f"{auth.http_url}/.well-known/jwks.json",
        "JWKS_REFRESH_SECONDS": str(JWKS_REFRESH_SECONDS),
    }
    return Plan(auth=eddsa_auth(key_files(folder)), relay=[relay] * 4, relay_restarts=False)


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[AuthProcess]:
    process = AuthProcess(tmp_path / "auth", jwt_secret=OLD_SECRET, admin=ADMIN)
    yield process
    process.kill()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path / "relay", jwt_secret=OLD_SECRET)
    yield process
    process.kill()


@pytest.fixture(params=["hs256", "eddsa-key-files", "eddsa-jwks-url"])
def plan(request: pytest.FixtureRequest, tmp_path: Path, auth: AuthProcess) -> Plan:
    if request.param == "hs256":
        return hs256_plan()
    if request.param == "eddsa-key-files":
        return key_file_plan(tmp_path)
    return jwks_plan(tmp_path, auth)


async def restart(process: ServiceProcess, settings: Settings) -> None:
    """Stop (if running) and start again on the same port with these settings.

    In a thread: the test's clients must go on answering (the relay's 1012 close) meanwhile.
    """
    base = {name: value for name, value in process.settings.items() if not name.startswith("JW")}
    await asyncio.to_thread(_restart, process, {**base, "JWT_SECRET": OLD_SECRET, **settings})


def _restart(process: ServiceProcess, settings: Settings) -> None:
    if process.running:
        process.stop()
    process.settings = settings
    process.start()


async def log_in(auth: AuthProcess) -> str:
    async with httpx.AsyncClient(base_url=auth.http_url, timeout=10) as http:
        response = await http.post("/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]})
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


async def auth_accepts(auth: AuthProcess, token: str) -> bool:
    async with httpx.AsyncClient(base_url=auth.http_url, timeout=10) as http:
        response = await http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def open_session(connect: Connector, relay: RelayProcess, token: str) -> Client | None:
    """An identified session with this token, or None if the relay refused it (4004)."""
    client = await connect.raw(relay)
    await client.send({"op": Op.IDENTIFY, "d": {"token": token}})
    try:
        async with asyncio.timeout(RECV_TIMEOUT):
            frame = orjson.loads(await client.ws.recv())
    except ConnectionClosed as closed:
        code = None if closed.rcvd is None else closed.rcvd.code
    else:
        assert frame["t"] == "READY"
        return client
    assert code == CloseCode.AUTHENTICATION_FAILED
    return None


async def relay_accepts(connect: Connector, relay: RelayProcess, token: str) -> bool:
    client = await open_session(connect, relay, token)
    if client is not None:
        await client.close()
    return client is not None


async def still_open(session: Client) -> bool:
    await session.send({"op": Op.HEARTBEAT, "d": None})
    return await session.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


async def step(plan: Plan, number: int, auth: AuthProcess, relay: RelayProcess) -> None:
    """Restart the auth service (and the relay, unless it follows `JWKS_URL`) for a step."""
    restarts = [restart(auth, plan.auth[number])]
    if plan.relay_restarts:
        restarts.append(restart(relay, plan.relay[number]))
    await asyncio.gather(*restarts)


def kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def test_rotating_the_signing_key_refuses_no_token_in_use_and_retires_the_old(
    plan: Plan, auth: AuthProcess, relay: RelayProcess, connect: Connector
) -> None:
    await asyncio.gather(restart(auth, plan.auth[0]), restart(relay, plan.relay[0]))
    old_token = await log_in(auth)
    session = await open_session(connect, relay, old_token)
    assert session is not None

    # Step 1: publish the new key; the auth service still signs with the old one.
    await step(plan, 1, auth, relay)
    if not plan.relay_restarts:
        await asyncio.sleep(JWKS_PROPAGATION_SECONDS)
    step_one_token = await log_in(auth)
    assert kid(step_one_token) == kid(old_token)
    for token in (old_token, step_one_token):
        assert await auth_accepts(auth, token)
        assert await relay_accepts(connect, relay, token)

    # Step 2: sign with the new key; the old one still verifies.
    await step(plan, 2, auth, relay)
    new_token = await log_in(auth)
    assert kid(new_token) != kid(old_token)
    for token in (old_token, step_one_token, new_token):
        assert await auth_accepts(auth, token)
        assert await relay_accepts(connect, relay, token)

    # Step 3, once the old key's tokens have expired: retire it.
    await step(plan, 3, auth, relay)
    if not plan.relay_restarts:
        assert await still_open(session)  # never interrupted, no relay restart
        await asyncio.sleep(JWKS_PROPAGATION_SECONDS)
    assert await auth_accepts(auth, new_token)
    assert await relay_accepts(connect, relay, new_token)
    assert not await auth_accepts(auth, old_token)
    assert not await relay_accepts(connect, relay, old_token)
