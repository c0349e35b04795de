"""The login throttle in a real auth process on the real Redis, under real concurrency,
with client addresses forwarded by a trusted proxy (`X-Forwarded-For`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth.stack import ADMIN, HTTP_TIMEOUT, JWT_SECRET
from tests.processes import AuthProcess

PAIR_LIMIT = 5
PARALLEL_GUESSES = 60


@pytest.fixture
def auth(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[AuthProcess]:
    process = AuthProcess(
        tmp_path,
        jwt_secret=JWT_SECRET,
        admin=ADMIN,
        settings={
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": redis_prefix,
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            "LOGIN_MAX_FAILURES_PER_USERNAME_AND_ADDRESS": str(PAIR_LIMIT),
        },
    ).start()
    yield process
    process.kill()


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def test_parallel_wrong_guesses_get_at_most_the_limits_evaluations(
    auth: AuthProcess,
) -> None:
    async with httpx.AsyncClient(
        base_url=auth.http_url,
        timeout=HTTP_TIMEOUT * 4,
        limits=httpx.Limits(max_connections=PARALLEL_GUESSES),
    ) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    "/auth/token",
                    data={"username": ADMIN[0], "password": f"guess {index}"},
                    headers=from_address("198.51.100.1"),
                )
                for index in range(PARALLEL_GUESSES)
            )
        )
    statuses = Counter(response.status_code for response in responses)
    assert statuses[401] <= PAIR_LIMIT  # each 401 is one password evaluated
    assert statuses[401] + statuses[429] == PARALLEL_GUESSES


async def test_failures_from_one_address_do_not_refuse_the_user_at_another(
    auth: AuthProcess,
) -> None:
    async with httpx.AsyncClient(base_url=auth.http_url, timeout=HTTP_TIMEOUT) as http:
        for _ in range(PAIR_LIMIT + 2):
            await http.post(
                "/auth/token",
                data={"username": ADMIN[0], "password": "wrong password"},
                headers=from_address("198.51.100.1"),
            )
        attacker = await http.post(
            "/auth/token",
            data={"username": ADMIN[0], "password": ADMIN[1]},
            headers=from_address("198.51.100.1"),
        )
        user = await http.post(
            "/auth/token",
            data={"username": ADMIN[0], "password": ADMIN[1]},
            headers=from_address("203.0.113.9"),
        )
    assert attacker.status_code == 429
    assert user.status_code == 200
