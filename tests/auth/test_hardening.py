"""Smaller hardening: the last admin, token caching, secrets never echoed, look-alike
usernames, NUL bytes, a database that never answers, readiness, rehashing."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from passlib.context import CryptContext

from auth_service.core import security
from auth_service.core.config import AuthSettings
from auth_service.core.db import run_migrations
from auth_service.main import create_app
from auth_service.models import User
from shared.identity import UserType, username_key
from tests.auth.conftest import (
    PASSWORD,
    Account,
    Accounts,
    client_for,
    make_settings,
    unique_name,
)
from tests.auth.stack import fresh_postgres_database
from tests.processes import free_port

SECRET = "my very secret password"


# -- The last active admin ------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: "the last admin" counts every admin in it."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'alone.db'}"
        run_migrations(url)
        yield url
        return
    yield from fresh_postgres_database(request.getfixturevalue("postgres_server_url"))


@pytest.fixture
async def lone_app(empty_database: str) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(empty_database))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def lone_admin(lone_app: FastAPI, password_hash: str) -> Account:
    return await Accounts(lone_app.state.services, password_hash).create(UserType.ADMIN)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("DELETE", None, id="delete"),
        pytest.param("PATCH", {"type": "operator"}, id="demote"),
        pytest.param("PATCH", {"disabled": True}, id="disable"),
    ],
)
async def test_the_last_active_admin_cannot_remove_itself(
    lone_app: FastAPI, lone_admin: Account, method: str, body: dict[str, object] | None
) -> None:
    async with client_for(lone_app) as client:
        response = await client.request(
            method, f"/users/{lone_admin.id}", json=body, headers=lone_admin.headers
        )
        assert response.status_code == 409
        assert "last active admin" in response.json()["detail"]
        assert (await client.get("/auth/me", headers=lone_admin.headers)).status_code == 200


async def test_a_disabled_admin_does_not_count_as_an_active_one(
    lone_app: FastAPI, lone_admin: Account, password_hash: str
) -> None:
    """A disabled admin does not count: the enabled one is still the last."""
    accounts = Accounts(lone_app.state.services, password_hash)
    disabled = await accounts.create(UserType.ADMIN)
    async with client_for(lone_app) as client:
        response = await client.patch(
            f"/users/{disabled.id}", json={"disabled": True}, headers=lone_admin.headers
        )
        assert response.status_code == 200
        response = await client.delete(f"/users/{lone_admin.id}", headers=lone_admin.headers)
    assert response.status_code == 409


async def test_an_admin_may_step_down_while_another_remains(
    lone_app: FastAPI, lone_admin: Account, password_hash: str
) -> None:
    await Accounts(lone_app.state.services, password_hash).create(UserType.ADMIN)
    async with client_for(lone_app) as client:
        response = await client.patch(
            f"/users/{lone_admin.id}", json={"type": "operator"}, headers=lone_admin.headers
        )
    assert response.status_code == 200


# -- Token responses, 422s, usernames at login ----------------------------------------------


@pytest.mark.parametrize("route", ["form", "basic"])
async def test_token_responses_are_never_cached(
    client: httpx.AsyncClient, admin: Account, route: str
) -> None:
    if route == "form":
        response = await client.post(
            "/auth/token", data={"username": admin.username, "password": PASSWORD}
        )
    else:
        response = await client.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/users", {"username": "x", "password": SECRET}, id="create"),
        pytest.param(
            "POST",
            "/users",
            {"username": "valid-name", "password": SECRET, "type": "viewer", "extra": SECRET},
            id="unknown-field",
        ),
        pytest.param("PATCH", "/users/{id}", {"password": SECRET, "type": "boss"}, id="update"),
    ],
)
async def test_a_422_never_echoes_what_was_submitted(
    client: httpx.AsyncClient, admin: Account, method: str, path: str, body: dict[str, str]
) -> None:
    response = await client.request(
        method, path.format(id=admin.id), json=body, headers=admin.headers
    )
    assert response.status_code == 422
    assert SECRET not in response.text
    assert all("input" not in error for error in response.json()["detail"])


async def test_a_422_on_the_login_form_never_echoes_the_password(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/auth/token", data={"password": SECRET})
    assert response.status_code == 422
    assert SECRET not in response.text


async def test_a_case_folding_look_alike_username_is_a_plain_401(
    client: httpx.AsyncClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Kelvin sign lowercases to "k": it must not reach the user `kiosk-…`."""
    user = await accounts.create(username=unique_name("kiosk"))
    checked: list[str | None] = []
    original = security._verify

    def spy(password: str, password_hash: str | None) -> tuple[bool, str | None]:
        checked.append(password_hash)
        return original(password, password_hash)

    monkeypatch.setattr(security, "_verify", spy)
    look_alike = "\u212a" + user.username[1:]
    response = await client.post("/auth/token", data={"username": look_alike, "password": PASSWORD})
    assert response.status_code == 401
    assert response.json() == {"detail": "incorrect username or password"}
    assert checked == [None]  # the dummy hash: the same time as an unknown user


async def test_a_nul_byte_in_a_password_is_a_plain_401(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.post(
        "/auth/token", data={"username": admin.username, "password": "bad\x00password"}
    )
    assert response.status_code == 401


async def test_a_nul_byte_in_a_username_at_login_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/auth/token", auth=("admin\x00", PASSWORD))
    assert response.status_code == 422
    assert response.json() == {"detail": "username: control characters are not allowed"}


# -- Rehashing under newer argon2 parameters --------------------------------------------------


async def test_a_login_rehashes_a_hash_made_with_older_parameters(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    weaker = CryptContext(schemes=["argon2"], argon2__memory_cost=8192, argon2__time_cost=1)
    old_hash = str(weaker.hash(PASSWORD))
    name = unique_name("legacy")
    async with accounts.services.sessions() as session:
        user = User(
            username=name,
            username_key=username_key(name),
            password_hash=old_hash,
            type=UserType.VIEWER,
        )
        session.add(user)
        await session.commit()

    first = await client.get("/auth/token", auth=(name, PASSWORD))
    stored = await accounts.get(user.id)

    assert first.status_code == 200
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await client.get("/auth/token", auth=(name, PASSWORD))).status_code == 200


async def test_a_current_hash_is_left_as_it_is(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    user = await accounts.create()
    before = await accounts.get(user.id)
    assert (await client.get("/auth/token", auth=(user.username, PASSWORD))).status_code == 200
    after = await accounts.get(user.id)
    assert before is not None
    assert after is not None
    assert after.password_hash == before.password_hash


# -- A database that accepts TCP and never answers; readiness ----------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stopped = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stopped.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stopped.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


@pytest.fixture
async def hung_database(silent_server: int) -> AsyncIterator[httpx.AsyncClient]:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{silent_server}/nowhere"
    app = create_app(make_settings(url, database_timeout_seconds=1))
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield client


async def test_a_database_that_never_answers_makes_login_503_within_the_timeout(
    hung_database: httpx.AsyncClient,
) -> None:
    async with asyncio.timeout(10):  # the timeout is 1 s; the hang is for ever
        response = await hung_database.post(
            "/auth/token", data={"username": "someone", "password": "a-password-123"}
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


async def test_readiness_names_a_database_that_never_answers(
    hung_database: httpx.AsyncClient,
) -> None:
    async with asyncio.timeout(10):
        response = await hung_database.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"detail": "database unreachable"})


async def test_readiness_names_an_unreachable_redis(sqlite_database: str) -> None:
    settings: AuthSettings = make_settings(
        sqlite_database, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        response = await client.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"detail": "redis unreachable"})
