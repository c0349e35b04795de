"""The async engine, the session factory, and running the alembic migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PACKAGED_MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
"""Where a wheel carries the repository's `migrations/` (pyproject's force-include)."""


DEFAULT_TIMEOUT_SECONDS = 5.0


def create_engine(
    database_url: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> AsyncEngine:
    """An engine whose every wait is bounded by `timeout_seconds`: connecting (a server
    that accepts TCP and never answers), each statement, and waiting for a pooled
    connection."""
    connect_args: dict[str, Any] = {"timeout": timeout_seconds}
    if not database_url.startswith("sqlite"):
        connect_args["command_timeout"] = timeout_seconds
    engine = create_async_engine(
        database_url,
        pool_pre_ping=True,
        pool_timeout=timeout_seconds,
        connect_args=connect_args,
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    """SQLite ignores foreign keys unless asked, per connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def migrations_folder() -> Path:
    """The alembic scripts: the wheel's copy when installed, else the repository's."""
    return PACKAGED_MIGRATIONS if PACKAGED_MIGRATIONS.is_dir() else REPOSITORY_ROOT / "migrations"


def alembic_config(database_url: str) -> Config:
    """An alembic configuration aimed at `database_url`; needs no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    config.attributes["database_url"] = database_url
    return config


def run_migrations(database_url: str, revision: str = "head") -> None:
    """Upgrade the schema; synchronous, so call it outside a running event loop."""
    command.upgrade(alembic_config(database_url), revision)
