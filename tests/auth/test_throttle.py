"""Failed-login throttling per username and per client address, in-process and in Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from auth_service.throttle import LoginThrottle, MemoryFailureCounter, RedisFailureCounter
from tests.auth.conftest import PASSWORD, Account, client_for

LIMITS = {
    "login_max_failures_per_username": 3,
    "login_max_failures_per_address": 5,
    "login_failure_window_seconds": 60,
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


async def test_too_many_failures_for_a_username_is_429_even_with_the_right_password(
    client: httpx.AsyncClient, admin: Account
) -> None:
    await fail_logins(client, admin.username, 3)
    response = await client.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 429
    assert "detail" in response.json()
    assert 0 < int(response.headers["retry-after"]) <= 60


async def test_the_username_limit_ignores_case(client: httpx.AsyncClient, admin: Account) -> None:
    await fail_logins(client, admin.username.upper(), 3)
    response = await client.post(
        "/auth/token", data={"username": admin.username, "password": PASSWORD}
    )
    assert response.status_code == 429


async def test_the_username_limit_applies_from_every_address(app: FastAPI, admin: Account) -> None:
    for index in range(3):
        async with client_for(app, f"198.51.100.{index}") as client:
            await fail_logins(client, admin.username, 1)
    async with client_for(app, "198.51.100.99") as client:
        response = await client.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 429


async def test_too_many_failures_from_an_address_is_429(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for index in range(5):
        await fail_logins(client, f"someone-{index}", 1)
    response = await client.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0


async def test_another_address_is_not_blocked_by_an_address_limit(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    for index in range(5):
        await fail_logins(client, f"someone-{index}", 1)
    async with client_for(app, "192.0.2.200") as other:
        response = await other.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 200


async def test_failures_below_the_limit_do_not_block(
    client: httpx.AsyncClient, admin: Account
) -> None:
    await fail_logins(client, admin.username, 2)
    response = await client.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 200


@pytest.fixture(params=["memory", "redis"])
async def throttle(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        yield LoginThrottle(MemoryFailureCounter(), 2, 10, window_seconds=1)
        return
    redis = Redis.from_url(request.getfixturevalue("redis_url"))
    counter = RedisFailureCounter(redis, request.getfixturevalue("redis_prefix"))
    yield LoginThrottle(counter, 2, 10, window_seconds=1)
    await redis.aclose()


async def test_the_block_ends_when_the_window_passes(throttle: LoginThrottle) -> None:
    for _ in range(2):
        await throttle.record_failure("alice", "192.0.2.1")
    assert await throttle.retry_after("alice", "192.0.2.1") == 1
    await asyncio.sleep(1.1)
    assert await throttle.retry_after("alice", "192.0.2.1") is None


async def test_redis_counters_expire(redis_url: str, redis_prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await RedisFailureCounter(redis, redis_prefix).increment("username:bob", 60)
        ttl = await redis.ttl(f"{redis_prefix}:login-failures:username:bob")
        assert 0 < ttl <= 60
    finally:
        await redis.aclose()
