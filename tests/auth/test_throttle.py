"""The login throttle: per (username, address), per address, per username at a higher
limit, and successes per username and per address; in-process and in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from auth_service.throttle import (
    Counter,
    CounterStore,
    MemoryCounterStore,
    RedisCounterStore,
)
from tests.auth.conftest import PASSWORD, Account, Accounts, client_for

PAIR_LIMIT = 3
ADDRESS_LIMIT = 5
USERNAME_LIMIT = 8
SUCCESS_PER_USERNAME = 4
SUCCESS_PER_ADDRESS = 6
LIMITS = {
    "login_max_failures_per_username_and_address": PAIR_LIMIT,
    "login_max_failures_per_address": ADDRESS_LIMIT,
    "login_max_failures_per_username": USERNAME_LIMIT,
    "login_failure_window_seconds": 60,
    "login_max_successes_per_username": SUCCESS_PER_USERNAME,
    "login_max_successes_per_address": SUCCESS_PER_ADDRESS,
    "login_success_window_seconds": 60,
}


@pytest.fixture(params=["memory", "redis"])
def redis_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    extra: dict[str, Any] = dict(LIMITS)
    if request.param == "redis":
        extra["redis_url"] = request.getfixturevalue("redis_url")
        extra["redis_prefix"] = request.getfixturevalue("redis_prefix")
    return extra


async def fail_logins(client: httpx.AsyncClient, username: str, times: int) -> None:
    for _ in range(times):
        response = await client.get("/auth/token", auth=(username, "wrong password"))
        assert response.status_code == 401


async def log_in(client: httpx.AsyncClient, username: str) -> int:
    return (await client.get("/auth/token", auth=(username, PASSWORD))).status_code


async def test_failures_for_a_username_from_one_address_block_it_there(
    client: httpx.AsyncClient, admin: Account
) -> None:
    await fail_logins(client, admin.username, PAIR_LIMIT)
    response = await client.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 429
    assert "detail" in response.json()
    assert 0 < int(response.headers["retry-after"]) <= 60


async def test_the_pair_limit_ignores_the_case_of_the_username(
    client: httpx.AsyncClient, admin: Account
) -> None:
    await fail_logins(client, admin.username.upper(), PAIR_LIMIT)
    assert await log_in(client, admin.username) == 429


async def test_failures_from_another_address_do_not_refuse_the_user(
    app: FastAPI, admin: Account
) -> None:
    async with client_for(app, "198.51.100.1") as attacker:
        await fail_logins(attacker, admin.username, PAIR_LIMIT)
        assert await log_in(attacker, admin.username) == 429
    async with client_for(app, "198.51.100.2") as user:
        assert await log_in(user, admin.username) == 200


async def test_refused_attempts_do_not_count_toward_the_username_limit(
    app: FastAPI, admin: Account
) -> None:
    async with client_for(app, "198.51.100.1") as attacker:
        await fail_logins(attacker, admin.username, PAIR_LIMIT)
        for _ in range(USERNAME_LIMIT * 2):
            assert await log_in(attacker, admin.username) == 429
    async with client_for(app, "198.51.100.2") as user:
        assert await log_in(user, admin.username) == 200


async def test_failures_from_many_addresses_block_the_username_at_its_higher_limit(
    app: FastAPI, admin: Account
) -> None:
    for index in range(USERNAME_LIMIT):
        async with client_for(app, f"198.51.100.{index}") as client:
            await fail_logins(client, admin.username, 1)
    async with client_for(app, "198.51.100.99") as client:
        assert await log_in(client, admin.username) == 429


async def test_spraying_usernames_from_one_address_blocks_the_address(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for index in range(ADDRESS_LIMIT):
        await fail_logins(client, f"someone-{index}", 1)
    response = await client.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0


async def test_another_address_is_not_blocked_by_an_address_limit(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    for index in range(ADDRESS_LIMIT):
        await fail_logins(client, f"someone-{index}", 1)
    async with client_for(app, "192.0.2.200") as other:
        assert await log_in(other, admin.username) == 200


async def test_failures_below_the_limit_do_not_block(
    client: httpx.AsyncClient, admin: Account
) -> None:
    await fail_logins(client, admin.username, PAIR_LIMIT - 1)
    assert await log_in(client, admin.username) == 200


async def test_successful_logins_are_not_counted_as_failures(
    app: FastAPI, accounts: Accounts
) -> None:
    user = await accounts.create()
    async with client_for(app, "192.0.2.10") as client:
        await fail_logins(client, user.username, PAIR_LIMIT - 1)
        for _ in range(SUCCESS_PER_USERNAME):
            assert await log_in(client, user.username) == 200


async def test_successful_logins_are_limited_per_username(app: FastAPI, accounts: Accounts) -> None:
    user = await accounts.create()
    for index in range(SUCCESS_PER_USERNAME):
        async with client_for(app, f"192.0.2.{index}") as client:
            assert await log_in(client, user.username) == 200
    async with client_for(app, "192.0.2.99") as client:
        response = await client.get("/auth/token", auth=(user.username, PASSWORD))
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0


async def test_successful_logins_are_limited_per_address(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    for _ in range(SUCCESS_PER_ADDRESS):
        user = await accounts.create()
        assert await log_in(client, user.username) == 200
    other = await accounts.create()
    assert await log_in(client, other.username) == 429


async def test_a_control_character_in_a_username_is_422_and_counted(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for _ in range(PAIR_LIMIT):
        response = await client.post(
            "/auth/token", data={"username": f"{admin.username}\x00", "password": "x" * 10}
        )
        assert response.status_code == 422
        assert "control characters" in response.json()["detail"]
    assert await log_in(client, f"{admin.username}\x00") == 429


# -- The counter stores themselves ---------------------------------------------------

WINDOW = Counter("pair:alice|192.0.2.1", limit=2, window_seconds=1)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounterStore()
        return
    redis = Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisCounterStore(redis, request.getfixturevalue("redis_prefix"))
    await redis.aclose()


async def test_the_block_ends_when_the_window_passes(store: CounterStore) -> None:
    for _ in range(2):
        assert await store.take([WINDOW], []) is None
    wait = await store.take([WINDOW], [])
    assert wait is not None
    assert 0 < wait <= 1
    await asyncio.sleep(1.1)
    assert await store.take([WINDOW], []) is None


async def test_concurrent_takes_never_pass_the_limit(store: CounterStore) -> None:
    counter = Counter("pair:bob|192.0.2.1", limit=5, window_seconds=60)
    results = await asyncio.gather(*(store.take([counter], []) for _ in range(60)))
    assert sum(result is None for result in results) == 5


async def test_a_checked_counter_blocks_without_being_counted(store: CounterStore) -> None:
    counted = Counter("fail:carol", limit=100, window_seconds=60)
    checked = Counter("ok:carol", limit=1, window_seconds=60)
    await store.settle([], [checked])
    assert await store.take([counted], [checked]) is not None
    await store.settle([], [])
    assert await store.take([counted], []) is None


async def test_redis_counters_expire(redis_url: str, redis_prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        store = RedisCounterStore(redis, redis_prefix)
        await store.take([Counter("fail:username:bob", 5, 60)], [])
        ttl = await redis.ttl(store.key("fail:username:bob"))
        assert 0 < ttl <= 60
    finally:
        await redis.aclose()
