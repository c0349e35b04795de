"""The FastAPI application: `create_app(settings)` and the lifespan owning its resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from auth_service import metrics, pages
from auth_service.api import auth, factories, health, jwks, livekit, users
from auth_service.api.console import mount_console
from auth_service.core.config import AuthSettings
from auth_service.errors import add_error_handlers, error_detail
from auth_service.services import open_services


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
            {"detail": error_detail(bytes(response.body).decode())},
            status_code=response.status_code,
            headers=headers,
        )


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
        docs_url=None,  # `pages` serves them from the project's own assets, not a CDN
        redoc_url=None,
    )
    app.add_middleware(JSONCORSMiddleware, origins=list(settings.cors_origins))
    app.add_middleware(metrics.MetricsMiddleware)
    add_error_handlers(app)
    for module in (auth, users, factories, livekit, jwks, health, metrics):
        app.include_router(module.router)
    pages.add_pages(app)
    mount_console(app, settings)
    return app
