"""The real PostgreSQL and Redis the tests use, and how they are reached.

`TEST_DATABASE_URL` and `TEST_REDIS_URL` name them. A test whose service is unreachable
is skipped with the reason, except under `CI`, where it fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import redis

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def unavailable(service: str, reason: object) -> None:
    message = f"{service} is unreachable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, database: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{database}"


async def _admin_execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_plain_dsn(url), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL)


@pytest.fixture(scope="session")
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test run, dropped at its end."""
    database = f"relay_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin_execute(postgres_server_url, f'CREATE DATABASE "{database}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        unavailable("PostgreSQL", error)
    yield _with_database(postgres_server_url, database)
    asyncio.run(
        _admin_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        unavailable("Redis", error)
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix() -> str:
    """A key and channel namespace of this test's own, so runs never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}"
