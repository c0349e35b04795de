"""PostgreSQL or Redis down: requests get 503 with Retry-After, never a 500 or a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from auth_service.core import security
from auth_service.main import create_app
from tests.auth.conftest import client_for, make_settings
from tests.processes import free_port

FORM = {"username": "someone", "password": "a-password-123"}


@pytest.fixture
async def unreachable_database() -> AsyncIterator[httpx.AsyncClient]:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield client


@pytest.fixture
async def unreachable_redis(sqlite_database: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(sqlite_database, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield client


async def test_login_with_the_database_down_is_503_with_retry_after(
    unreachable_database: httpx.AsyncClient,
) -> None:
    response = await unreachable_database.post("/auth/token", data=FORM)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "service temporarily unavailable, try again later"}


async def test_readiness_with_the_database_down_is_503(
    unreachable_database: httpx.AsyncClient,
) -> None:
    assert (await unreachable_database.get("/readyz")).status_code == 503


async def test_login_with_redis_down_is_503_with_retry_after(
    unreachable_redis: httpx.AsyncClient,
) -> None:
    response = await unreachable_redis.post("/auth/token", data=FORM)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


async def test_login_with_redis_down_checks_no_password(
    unreachable_redis: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No unthrottled password oracle: the throttle's failure stops the login first."""
    checked: list[str | None] = []

    def spy(password: str, password_hash: str | None) -> tuple[bool, str | None]:
        checked.append(password_hash)
        return False, None

    monkeypatch.setattr(security, "_verify", spy)
    response = await unreachable_redis.post("/auth/token", data=FORM)
    assert response.status_code == 503
    assert checked == []
