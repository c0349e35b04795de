"""Health, readiness, CORS, and errors as `{"detail": …}` without tracebacks, in one style."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from auth_service.main import create_app
from shared.identity import UserType
from tests.auth.conftest import ORIGIN, Account, Accounts, make_settings


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
    assert (response.status_code, response.json()) == (404, {"detail": "not found"})


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
    assert response.json() == {"detail": "disallowed CORS origin"}
    assert "access-control-allow-origin" not in response.headers


async def test_cors_gives_an_unlisted_origin_no_allow_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_openapi_offers_the_password_flow(client: httpx.AsyncClient) -> None:
    schemes = (await client.get("/openapi.json")).json()["components"]["securitySchemes"]
    password_flows = [s["flows"]["password"] for s in schemes.values() if s["type"] == "oauth2"]
    assert password_flows == [{"scopes": {}, "tokenUrl": "/auth/token"}]


def is_fragment(text: str) -> bool:
    """The house style of a `detail`: a lower-case sentence fragment, no closing period.

    A name or an acronym may lead with its capitals ("JSON decode error").
    """
    first_word = text.split(" ", 1)[0]
    leads_with_a_name = first_word[1:] != first_word[1:].lower()
    lower_case = text[:1].islower() or leads_with_a_name
    return lower_case and text == text.strip() and not text.endswith(".")


async def test_every_error_detail_is_a_lower_case_fragment(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    operator = await accounts.create(UserType.OPERATOR)
    bad_bearer = {"Authorization": "Bearer not.a.token"}
    evil_preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    as_json = {**admin.headers, "Content-Type": "application/json"}
    requests: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/nowhere", {}, 404),
        ("GET", "/console/nowhere.js", {}, 404),
        ("DELETE", "/healthz", {}, 405),
        ("GET", "/auth/me", {}, 401),
        ("GET", "/auth/me", {"headers": bad_bearer}, 401),
        ("GET", "/auth/token", {}, 401),
        ("GET", "/auth/token", {"auth": (admin.username, "wrong password")}, 401),
        ("POST", "/auth/token", {"data": {"username": "only"}}, 422),
        ("GET", "/users", {"headers": operator.headers}, 403),
        ("GET", f"/users/{uuid.uuid4()}", {"headers": admin.headers}, 404),
        ("GET", "/users/not-a-uuid", {"headers": admin.headers}, 422),
        ("POST", "/users", {"headers": admin.headers, "json": {}}, 422),
        ("POST", "/users", {"headers": as_json, "content": b"{not json"}, 422),
        (
            "POST",
            "/users",
            {
                "headers": admin.headers,
                "json": {"username": admin.username, "password": "long enough", "type": "admin"},
            },
            409,
        ),
        ("OPTIONS", "/auth/me", {"headers": evil_preflight}, 400),
    ]
    for method, path, options, expected in requests:
        response = await client.request(method, path, **options)
        assert (method, path, response.status_code) == (method, path, expected)
        detail = response.json()["detail"]
        texts = [problem["msg"] for problem in detail] if expected == 422 else [detail]
        assert all(is_fragment(text) for text in texts), (method, path, detail)


async def test_a_validation_error_names_each_field_and_what_is_wrong(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.post("/users", json={"username": "ok-name"}, headers=admin.headers)
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert {tuple(problem["loc"]) for problem in problems} == {
        ("body", "password"),
        ("body", "type"),
    }
    assert all(set(problem) == {"loc", "msg", "type"} for problem in problems)


async def test_a_validation_error_does_not_echo_the_refused_value(
    client: httpx.AsyncClient, admin: Account
) -> None:
    refused = "s3cret!"  # too short for a password, and never to be sent back
    body = {"username": "echo-check", "password": refused, "type": "viewer"}
    response = await client.post("/users", json=body, headers=admin.headers)
    assert response.status_code == 422
    assert refused not in response.text


async def test_a_refused_method_keeps_its_allow_header(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
