"""Migrations: upgrade, downgrade and upgrade again on SQLite and PostgreSQL; the schema
matches the models; `alembic upgrade head` works from the repository root."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from auth_service.core.config import normalize_database_url
from auth_service.core.db import REPOSITORY_ROOT, alembic_config
from auth_service.models import Base
from tests.services import _admin_execute, _with_database


@pytest.fixture
def sqlite_fresh(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"


@pytest.fixture
def postgresql_fresh(postgres_url: str, postgres_server_url: str) -> Iterator[str]:
    name = f"relay_migrations_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(postgres_server_url, f'CREATE DATABASE "{name}"'))
    yield normalize_database_url(_with_database(postgres_url, name))
    asyncio.run(
        _admin_execute(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_fresh")
    return url


def inspect_database(url: str) -> tuple[set[str], list[object]]:
    def look(connection: Connection) -> tuple[set[str], list[object]]:
        context = MigrationContext.configure(connection)
        return set(inspect(connection).get_table_names()), compare_metadata(context, Base.metadata)

    async def run() -> tuple[set[str], list[object]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(look)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    config = alembic_config(fresh_url)
    command.upgrade(config, "head")
    assert {"users", "revoked_tokens"} <= inspect_database(fresh_url)[0]
    command.downgrade(config, "base")
    assert inspect_database(fresh_url)[0] <= {"alembic_version"}
    command.upgrade(config, "head")
    assert {"users", "revoked_tokens"} <= inspect_database(fresh_url)[0]


def test_the_migrated_schema_matches_the_models(fresh_url: str) -> None:
    command.upgrade(alembic_config(fresh_url), "head")
    assert inspect_database(fresh_url)[1] == []


def test_alembic_upgrade_head_works_from_the_repository_root(fresh_url: str) -> None:
    plain = fresh_url.replace("+aiosqlite", "").replace("+asyncpg", "")
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "alembic"), "upgrade", "head"],
        cwd=REPOSITORY_ROOT,
        env={**env, "DATABASE_URL": plain},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert {"users", "revoked_tokens"} <= inspect_database(fresh_url)[0]
