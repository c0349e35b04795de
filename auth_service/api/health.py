"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import text

from auth_service.api.deps import ServicesDep
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
    responses={503: {"description": "the database or (with REDIS_URL) Redis is unreachable"}},
)
async def readyz(services: ServicesDep) -> Status:
    """Ready while the database and, when `REDIS_URL` is set, Redis answer a ping."""
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
    return Status()
