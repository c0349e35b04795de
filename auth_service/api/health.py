"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache

from alembic.script import ScriptDirectory
from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.api.deps import ServicesDep
from auth_service.core.db import alembic_config
from auth_service.schemas import Status
from auth_service.services import Services
from shared.logging import get_logger

router = APIRouter(tags=["health"])
log = get_logger(__name__)
READY_TIMEOUT_SECONDS = 2.0
"""Each dependency's ping gets this long; both are pinged at once."""


@router.get("/healthz")
async def healthz() -> Status:
    return Status()


async def _ping_database(services: Services) -> None:
    async with services.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _ping_redis(services: Services) -> None:
    assert services.redis is not None
    await services.redis.ping()


async def _reachable(name: str, ping: Callable[[], Awaitable[None]]) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await ping()
    except Exception as error:  # any failure means not ready
        log.warning("dependency_not_ready", dependency=name, error=type(error).__name__)
        return False
    return True


@router.get(
    "/readyz",
    responses={
        503: {
            "description": "the database or (with REDIS_URL) Redis is unreachable, or the "
            "database's schema is not at this release's head"
        }
    },
)
async def readyz(services: ServicesDep, request: Request) -> Status:
    """Ready while the database and, when `REDIS_URL` is set, Redis answer a ping, and the
    schema is at this release's head."""
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": lambda: _ping_database(services)
    }
    if services.redis is not None:
        checks["redis"] = lambda: _ping_redis(services)
    results = await asyncio.gather(*(_reachable(name, ping) for name, ping in checks.items()))
    down = [name for name, ok in zip(checks, results, strict=True) if not ok]
    if down:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"{' and '.join(down)} unreachable"
        )
    await require_schema_at_head(request, services.engine)
    return Status()


@dataclass(frozen=True, slots=True)
class Migrations:
    """The migrations this release ships: its head, and every revision it knows."""

    head: str | None
    known: frozenset[str]


@cache
def shipped_migrations() -> Migrations:
    """Read from the release's migration files, once."""
    script = ScriptDirectory.from_config(alembic_config(""))
    known = frozenset(revision.revision for revision in script.walk_revisions())
    return Migrations(head=script.get_current_head(), known=known)


def migrations_head() -> str | None:
    return shipped_migrations().head


def schema_is_current(version: str | None, migrations: Migrations) -> bool:
    """At this release's head, or past it: a revision this release does not know was
    written by a newer release's migration (a rollback runs on the newer schema, which
    keeps the previous release working: docs/operations.md, "Running a release")."""
    if version is None:
        return False
    return version == migrations.head or version not in migrations.known


async def require_schema_at_head(request: Request, engine: AsyncEngine) -> None:
    """503 until the database's `alembic_version` is this release's head (or newer).

    So a release rolled out before its migration ran never takes traffic: its pods stay
    unready and the old ones keep serving. Once current, the answer is remembered for the
    process's life (a schema does not go back), so readiness costs no query after that.
    """
    if getattr(request.app.state, "schema_at_head", False):
        return
    migrations = shipped_migrations()
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), engine.connect() as conn:
            current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as error:  # no table yet, or the query failed: not migrated
        log.warning("database_schema_unknown", error=type(error).__name__, head=migrations.head)
        current = None
    if not schema_is_current(current, migrations):
        log.warning("database_schema_not_at_head", current=current, head=migrations.head)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="database schema not at this release's head"
        )
    if current != migrations.head:
        log.info("database_schema_newer_than_release", current=current)
    request.app.state.schema_at_head = True
