"""Relay processes and clients for the relay's tests.

`relays` is parametrized over the two brokers: the in-process one (one process serving as
both replica A and B) and Redis (two processes sharing one real Redis). Both pass the same
behavioural tests; delivery tests send on A and expect on B. The pair lives for the whole
run; tests that need other settings start their own process with `start_relay`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, private_redis_server
from tests.relay.harness import (
    ALLOWED_ORIGIN,
    JWT_SECRET,
    Connector,
    RelayProcess,
    Relays,
    Tokens,
)

SHARED_SETTINGS = {
    "CORS_ORIGINS": f"{ALLOWED_ORIGIN},http://localhost:3000",
    # Generous: the shared pair must never rate-limit a behavioural test.
    "RATE_LIMIT_PER_SECOND": "100000",
    "RATE_LIMIT_BURST": "100000",
}

StartRelay = Callable[..., RelayProcess]


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    return Tokens()


def _start_all(processes: list[RelayProcess]) -> None:
    for process in processes:
        process.start(wait=False)
    for process in processes:
        process.wait_ready()


@pytest.fixture(scope="session")
def memory_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relays]:
    """One process on the in-process broker, serving as both replica A and B."""
    only = RelayProcess(
        jwt_secret=JWT_SECRET,
        workdir=tmp_path_factory.mktemp("memory"),
        name="memory",
        settings=SHARED_SETTINGS,
    )
    try:
        _start_all([only])
        yield Relays("memory", only, only, None, "factory-relay")
    finally:
        only.kill()


@pytest.fixture(scope="session")
def redis_pair(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relays]:
    """Two processes sharing one real Redis, under a prefix of this run's own."""
    workdir = tmp_path_factory.mktemp("redis-pair")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    a, b = (
        RelayProcess(
            jwt_secret=JWT_SECRET,
            workdir=workdir,
            name=f"redis-{name}",
            redis_url=redis_url,
            redis_prefix=prefix,
            settings=SHARED_SETTINGS,
        )
        for name in "ab"
    )
    try:
        _start_all([a, b])
        yield Relays("redis", a, b, redis_url, prefix)
    finally:
        a.kill()
        b.kill()


@pytest.fixture(params=["memory_relay", "redis_pair"], ids=["memory", "redis"])
def relays(request: pytest.FixtureRequest) -> Relays:
    """The same behavioural tests against both brokers."""
    pair: Relays = request.getfixturevalue(request.param)
    return pair


@pytest.fixture
def start_relay(tmp_path: Path) -> Iterator[StartRelay]:
    """Start a dedicated relay with extra settings; killed at the end of the test."""
    started: list[RelayProcess] = []

    def start(
        settings: dict[str, str] | None = None,
        *,
        redis_url: str | None = None,
        redis_prefix: str | None = None,
        name: str = "relay",
        wait: bool = True,
    ) -> RelayProcess:
        process = RelayProcess(
            jwt_secret=JWT_SECRET,
            workdir=tmp_path,
            name=f"{name}{len(started)}",
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            settings=settings,
        )
        started.append(process)
        return process.start(wait=wait)

    yield start
    for process in started:
        process.kill()


@pytest.fixture
async def connect(tokens: Tokens) -> AsyncIterator[Connector]:
    connector = Connector(tokens)
    yield connector
    await connector.close_all()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A `redis-server` of this test's own, to kill, restart or hang (SIGSTOP) at will."""
    yield from private_redis_server(tmp_path / "redis")
