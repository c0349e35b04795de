"""The auth service under test: one app per test over SQLite and PostgreSQL, and accounts.

Accounts are inserted with a password hash computed once per run, and their tokens
minted directly, so only the tests about logging in pay for argon2.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from auth_service.core.config import AuthSettings, normalize_database_url
from auth_service.core.db import run_migrations
from auth_service.core.security import hash_password
from auth_service.main import create_app
from auth_service.models import User
from auth_service.services import Services
from shared.identity import UserType, username_key

PASSWORD = "correct horse battery"
JWT_SECRET = "test-secret-" + "x" * 32
ORIGIN = "https://console.example.com"
LIVEKIT = {
    "livekit_url": "wss://livekit.example.com",
    "livekit_api_key": "test-key",
    "livekit_api_secret": "test-livekit-secret-" + "y" * 20,
}


def make_settings(database_url: str, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_algorithm": "HS256",
        "jwt_secret": JWT_SECRET,
        "redis_url": None,
        "cors_origins": [ORIGIN],
        **LIVEKIT,
    }
    values.update(overrides)
    return AuthSettings(_env_file=None, **values)


@pytest.fixture(scope="session")
def password_hash() -> str:
    return asyncio.run(hash_password(PASSWORD))


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('auth') / 'auth.db'}"
    run_migrations(url)
    return url


@pytest.fixture(scope="session")
def postgresql_database(postgres_url: str) -> str:
    url = normalize_database_url(postgres_url)
    run_migrations(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_database")
    return url


@pytest.fixture
def redis_settings() -> dict[str, Any]:
    """No Redis by default; modules that test with it override this fixture."""
    return {}


@pytest.fixture
def settings(database_url: str, redis_settings: dict[str, Any]) -> AuthSettings:
    return make_settings(database_url, **redis_settings)


@pytest.fixture
async def app(settings: AuthSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def client_for(app: FastAPI, address: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@dataclass
class Account:
    id: uuid.UUID
    username: str
    type: UserType
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Accounts:
    """Creates users straight in the database, with a token each."""

    def __init__(self, services: Services, password_hash: str) -> None:
        self.services = services
        self._hash = password_hash

    async def create(
        self, user_type: UserType = UserType.OPERATOR, *, username: str | None = None
    ) -> Account:
        name = username or f"{user_type.value}-{uuid.uuid4().hex[:10]}"
        user = User(
            username=name, username_key=username_key(name), password_hash=self._hash, type=user_type
        )
        async with self.services.sessions() as session:
            session.add(user)
            await session.commit()
        return Account(user.id, name, user_type, PASSWORD, self.token_for(user))

    def token_for(self, user: User | Account) -> str:
        token, _claims = self.services.issuer.issue(
            user_id=str(user.id), username=user.username, user_type=user.type
        )
        return token

    async def get(self, user_id: uuid.UUID) -> User | None:
        async with self.services.sessions() as session:
            return await session.get(User, user_id)


@pytest.fixture
def accounts(app: FastAPI, password_hash: str) -> Accounts:
    return Accounts(app.state.services, password_hash)


@pytest.fixture
async def admin(accounts: Accounts) -> Account:
    return await accounts.create(UserType.ADMIN)


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def tmp_sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'fresh.db'}"
