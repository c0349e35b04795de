"""The FastAPI application: `create_app(settings)` and the lifespan owning its resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from auth_service import metrics
from auth_service.api import auth, health, livekit, users
from auth_service.api.console import mount_console
from auth_service.core.config import AuthSettings
from auth_service.services import open_services
from shared.logging import get_logger

log = get_logger(__name__)


class JSONCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, with its refused preflight as `{"detail": …}` too."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_credentials=False,  # tokens travel in the Authorization header, not cookies
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {
            key: value
            for key, value in response.headers.items()
            if key not in ("content-length", "content-type")
        }
        return JSONResponse(
            {"detail": bytes(response.body).decode()},
            status_code=response.status_code,
            headers=headers,
        )


UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)
"""What a request meets when PostgreSQL or Redis is down: the client should retry later."""
RETRY_AFTER_SECONDS = 5


async def dependency_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("backing service unavailable", path=request.url.path, error=repr(error))
    return JSONResponse(
        {"detail": "service temporarily unavailable, try again later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def internal_error(request: Request, error: Exception) -> JSONResponse:
    """Log the failure server-side; the client only learns that it happened."""
    log.error("unhandled error", path=request.url.path, exc_info=error)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def create_app(settings: AuthSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            yield

    app = FastAPI(
        title="Factory relay: auth service",
        version="0.1.0",
        summary="Users, JWT login, LiveKit tokens and user administration.",
        lifespan=lifespan,
    )
    app.add_middleware(JSONCORSMiddleware, origins=list(settings.cors_origins))
    app.add_middleware(metrics.MetricsMiddleware)
    for unavailable in UNAVAILABLE_ERRORS:
        app.add_exception_handler(unavailable, dependency_unavailable)
    app.add_exception_handler(Exception, internal_error)
    for module in (auth, users, livekit, health, metrics):
        app.include_router(module.router)
    mount_console(app, settings)
    return app
