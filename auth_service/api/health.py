"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import text

from auth_service.api.deps import ServicesDep
from auth_service.schemas import Status
from shared.logging import get_logger

router = APIRouter(tags=["health"])
log = get_logger(__name__)
READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> Status:
    return Status()


@router.get("/readyz", responses={503: {"description": "database unreachable"}})
async def readyz(services: ServicesDep) -> Status:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:  # any failure means not ready
        log.warning("database not ready", error=type(error).__name__)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="database unreachable"
        ) from None
    return Status()
