"""Health, readiness, CORS, and errors as `{"detail": …}` without tracebacks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from auth_service.main import create_app
from tests.auth.conftest import ORIGIN, make_settings


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_ok_with_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.fixture
async def unreachable_app() -> AsyncIterator[FastAPI]:
    app = create_app(make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"))
    async with app.router.lifespan_context(app):
        yield app


async def test_readyz_is_503_without_the_database(unreachable_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=unreachable_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"detail": "database unreachable"})


async def test_an_unexpected_error_is_a_bare_500(app: FastAPI) -> None:
    def broken() -> None:
        raise RuntimeError("a bug with a secret in its message")

    app.add_api_route("/broken", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/broken")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert "secret" not in response.text
    assert "Traceback" not in response.text


async def test_an_unknown_path_is_404_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


async def test_cors_allows_a_listed_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/auth/me",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_answers_a_simple_request_from_a_listed_origin(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/healthz", headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_cors_refuses_an_unlisted_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/auth/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Disallowed CORS origin"}
    assert "access-control-allow-origin" not in response.headers


async def test_cors_gives_an_unlisted_origin_no_allow_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_openapi_offers_the_password_flow(client: httpx.AsyncClient) -> None:
    schemes = (await client.get("/openapi.json")).json()["components"]["securitySchemes"]
    password_flows = [s["flows"]["password"] for s in schemes.values() if s["type"] == "oauth2"]
    assert password_flows == [{"scopes": {}, "tokenUrl": "/auth/token"}]
