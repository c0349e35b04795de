"""A bad Redis day must not open the doors: Redis full, emptied, hung or restarted, with
the auth service, a relay and a private `redis-server` as real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.protocol import CloseCode
from shared.revocation import restored_marker_key, revoked_user_key
from tests.auth.stack import (
    ADMIN,
    HTTP_TIMEOUT,
    REPAIR_BOUND_SECONDS,
    AuthClient,
    fresh_postgres_database,
    identify,
    refused_within,
    start_auth,
    start_relay,
)
from tests.processes import AuthProcess, RelayProcess
from tests.redis_server import RedisServer, private_redis_server

PREFIX = "outage"
REVOCATIONS = ["logout", "disable", "delete"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from private_redis_server(tmp_path / "redis")


@pytest.fixture
def database(postgres_server_url: str, postgres_url: str) -> Iterator[str]:
    yield from fresh_postgres_database(postgres_server_url)


@pytest.fixture
def auth(tmp_path: Path, database: str, redis_server: RedisServer) -> Iterator[AuthProcess]:
    process = start_auth(tmp_path, database_url=database, redis_url=redis_server.url, prefix=PREFIX)
    yield process
    process.kill()


@pytest.fixture
def new_relay(tmp_path: Path, redis_server: RedisServer) -> Iterator[Callable[[], RelayProcess]]:
    """Start a relay replica now. A fresh one: it has heard no revocation event, so it
    refuses a revoked token only if the key in Redis says so."""
    started: list[RelayProcess] = []

    def start() -> RelayProcess:
        started.append(start_relay(tmp_path, redis_url=redis_server.url, prefix=PREFIX))
        return started[-1]

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def client(auth: AuthProcess) -> AuthClient:
    return AuthClient(auth)


async def wait_for_restore(redis_server: RedisServer) -> None:
    """The auth service's first restore at start has written the marker."""
    deadline = time.monotonic() + REPAIR_BOUND_SECONDS
    with redis_server.client() as redis:
        while not redis.exists(restored_marker_key(PREFIX)):
            assert time.monotonic() < deadline, "no restore at start"
            await asyncio.sleep(0.1)


# -- Full Redis (noeviction, memory full) ------------------------------------------------


async def test_a_full_redis_answers_logins_503_whatever_the_password(
    client: AuthClient, redis_server: RedisServer
) -> None:
    redis_server.fill()
    wrong = await client.login(ADMIN[0], "wrong password")
    right = await client.login(ADMIN[0], ADMIN[1])
    assert (wrong.status_code, right.status_code) == (503, 503)
    assert wrong.json() == right.json()
    assert wrong.headers["Retry-After"] == right.headers["Retry-After"] == "5"


@pytest.mark.parametrize("kind", REVOCATIONS)
async def test_a_revocation_with_redis_full_is_in_force_and_reaches_the_relays_later(
    client: AuthClient, new_relay: Callable[[], RelayProcess], redis_server: RedisServer, kind: str
) -> None:
    admin = await client.token(*ADMIN)
    user_id, token = await client.create_operator(admin)
    redis_server.fill()

    assert await client.revoke(kind, admin, user_id, token) in (200, 204)
    assert await client.me(token) == 401

    redis_server.unfill()
    code = await refused_within(new_relay(), token, REPAIR_BOUND_SECONDS)
    assert code == CloseCode.AUTHENTICATION_FAILED


# -- Emptied Redis (FLUSHALL, a restart without data) ----------------------------------------


@pytest.mark.parametrize("kind", REVOCATIONS)
async def test_a_revocation_survives_a_flushall(
    client: AuthClient, new_relay: Callable[[], RelayProcess], redis_server: RedisServer, kind: str
) -> None:
    admin = await client.token(*ADMIN)
    user_id, token = await client.create_operator(admin)
    assert await client.revoke(kind, admin, user_id, token) in (200, 204)

    with redis_server.client() as redis:
        redis.flushall()

    code = await refused_within(new_relay(), token, REPAIR_BOUND_SECONDS)
    assert code == CloseCode.AUTHENTICATION_FAILED


async def test_a_revocation_survives_a_redis_restart_without_data(
    client: AuthClient, new_relay: Callable[[], RelayProcess], redis_server: RedisServer
) -> None:
    admin = await client.token(*ADMIN)
    user_id, token = await client.create_operator(admin)
    assert await client.revoke("disable", admin, user_id, token) == 200

    redis_server.restart_empty()

    code = await refused_within(new_relay(), token, REPAIR_BOUND_SECONDS)
    assert code == CloseCode.AUTHENTICATION_FAILED


async def test_a_revocation_lost_by_a_lagging_failover_is_restored(
    client: AuthClient, new_relay: Callable[[], RelayProcess], redis_server: RedisServer
) -> None:
    """A replica promoted before it had the latest writes: the marker is there, the
    last revocation is not."""
    admin = await client.token(*ADMIN)
    user_id, token = await client.create_operator(admin)
    assert await client.revoke("disable", admin, user_id, token) == 200
    await wait_for_restore(redis_server)

    with redis_server.client() as redis:
        redis.delete(revoked_user_key(PREFIX, user_id))

    code = await refused_within(new_relay(), token, REPAIR_BOUND_SECONDS)
    assert code == CloseCode.AUTHENTICATION_FAILED


async def test_revocations_made_while_the_auth_service_was_down_are_restored_at_start(
    tmp_path: Path,
    database: str,
    redis_server: RedisServer,
    new_relay: Callable[[], RelayProcess],
) -> None:
    first = start_auth(tmp_path, database_url=database, redis_url=redis_server.url, prefix=PREFIX)
    client = AuthClient(first)
    admin = await client.token(*ADMIN)
    user_id, token = await client.create_operator(admin)
    assert await client.revoke("logout", admin, user_id, token) == 204
    first.stop()
    with redis_server.client() as redis:
        redis.flushall()

    second = start_auth(tmp_path, database_url=database, redis_url=redis_server.url, prefix=PREFIX)
    try:
        await wait_for_restore(redis_server)
        assert await identify(new_relay(), token) == CloseCode.AUTHENTICATION_FAILED
    finally:
        second.kill()


# -- Hung Redis (SIGSTOP) and a restarted one ---------------------------------------------


async def test_a_hung_redis_makes_login_answer_503_before_the_hang_ends(
    client: AuthClient, redis_server: RedisServer
) -> None:
    redis_server.pause()
    try:
        response = await client.login(ADMIN[0], ADMIN[1])  # HTTP_TIMEOUT would fail it
    finally:
        redis_server.resume()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


async def test_readiness_names_a_hung_redis(client: AuthClient, redis_server: RedisServer) -> None:
    redis_server.pause()
    try:
        async with client.http() as http:
            response = await http.get("/readyz")
    finally:
        redis_server.resume()
    assert (response.status_code, response.json()) == (503, {"detail": "redis unreachable"})


async def test_the_first_login_after_a_redis_restart_succeeds(
    client: AuthClient, redis_server: RedisServer
) -> None:
    assert (await client.login(ADMIN[0], ADMIN[1])).status_code == 200
    redis_server.restart_empty()
    response = await client.login(ADMIN[0], ADMIN[1])
    assert response.status_code == 200, response.text


async def test_readiness_is_ok_with_the_database_and_redis_up(client: AuthClient) -> None:
    async with client.http() as http:
        response = await http.get("/readyz", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
