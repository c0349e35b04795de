"""`/readyz` says 503 until the database schema is at the release's migration head.

A release rolled out before its migration ran must not take traffic: the auth service
is started on an empty PostgreSQL database (as a new image would meet an old schema),
stays unready, and becomes ready once `auth-service migrate` has run, without a restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from auth_service.api.health import Migrations, migrations_head, schema_is_current
from tests.processes import AuthProcess, console_script, run_to_exit
from tests.services import _admin_execute, _plain_dsn, _with_database

pytestmark = pytest.mark.postgres

JWT_SECRET = "schema-readiness-secret-0123456789abcdefgh"
READY_WAIT_SECONDS = 20


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    """A database of its own with no tables: this test migrates it."""
    name = f"relay_schema_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(postgres_url, f'CREATE DATABASE "{name}"'))
    yield _with_database(postgres_url, name)
    asyncio.run(_admin_execute(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def readiness(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=5)


def test_readyz_waits_for_the_schema_to_reach_head(tmp_path: Path, empty_database: str) -> None:
    auth = AuthProcess(
        tmp_path / "auth",
        jwt_secret=JWT_SECRET,
        admin=("admin", "admin-password-1"),
        settings={
            "DATABASE_URL": empty_database,
            "FIRST_ADMIN_USERNAME": "",
            "FIRST_ADMIN_PASSWORD": "",
        },
    )
    try:
        auth.start(wait=False)
        deadline = time.monotonic() + READY_WAIT_SECONDS
        while True:
            try:
                response = readiness(auth.http_url)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, auth.logs()
                time.sleep(0.1)
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": "database schema not at this release's head"}
        assert httpx.get(f"{auth.http_url}/healthz", timeout=5).status_code == 200

        migrated = run_to_exit(
            [console_script("auth-service"), "migrate"], tmp_path, {"DATABASE_URL": empty_database}
        )
        assert migrated.returncode == 0, migrated.stderr
        assert readiness(auth.http_url).status_code == 200
    finally:
        auth.kill()


def test_the_head_is_the_newest_migration(tmp_path: Path, empty_database: str) -> None:
    result = run_to_exit(
        [console_script("auth-service"), "migrate"], tmp_path, {"DATABASE_URL": empty_database}
    )
    assert result.returncode == 0, result.stderr

    async def version() -> str:
        connection = await asyncpg.connect(_plain_dsn(empty_database), timeout=5)
        try:
            value: str = await connection.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await connection.close()
        return value

    assert asyncio.run(version()) == migrations_head()


def test_a_rolled_back_release_is_ready_on_a_newer_schema(
    tmp_path: Path, empty_database: str
) -> None:
    """A revision this release does not know was written by a newer release's migration."""
    migrated = run_to_exit(
        [console_script("auth-service"), "migrate"], tmp_path, {"DATABASE_URL": empty_database}
    )
    assert migrated.returncode == 0, migrated.stderr
    asyncio.run(_execute(empty_database, "UPDATE alembic_version SET version_num = 'ffff_newer'"))
    auth = AuthProcess(
        tmp_path / "auth",
        jwt_secret=JWT_SECRET,
        admin=("admin", "admin-password-1"),
        settings={
            "DATABASE_URL": empty_database,
            "FIRST_ADMIN_USERNAME": "",
            "FIRST_ADMIN_PASSWORD": "",
        },
    )
    try:
        auth.start()  # waits for /readyz 200
    finally:
        auth.kill()


def test_a_known_revision_below_head_is_not_ready() -> None:
    shipped = Migrations(head="0002_next", known=frozenset({"0001_first", "0002_next"}))
    assert schema_is_current("0002_next", shipped)
    assert not schema_is_current("0001_first", shipped)
    assert not schema_is_current(None, shipped)
    assert schema_is_current("0003_from_a_newer_release", shipped)


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_plain_dsn(url), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
