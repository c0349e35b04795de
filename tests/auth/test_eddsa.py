"""EdDSA: the auth service signs with the private key, a relay verifies with the public one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from auth_service.core.config import AuthSettings
from auth_service.core.signing import token_issuer
from auth_service.main import create_app
from shared.keys import write_key_pair
from shared.settings import CommonSettings
from shared.tokens import TokenVerifier
from tests.auth.conftest import PASSWORD, Accounts, client_for, make_settings


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    write_key_pair(private, public)
    return private, public


@pytest.fixture
def settings(sqlite_database: str, key_pair: tuple[Path, Path]) -> AuthSettings:
    return make_settings(
        sqlite_database, jwt_algorithm="EdDSA", jwt_secret=None, jwt_private_key_file=key_pair[0]
    )


@pytest.fixture
async def app(settings: AuthSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_eddsa_login_verifies_with_only_the_public_key(
    app: FastAPI, accounts: Accounts, key_pair: tuple[Path, Path]
) -> None:
    user = await accounts.create()
    async with client_for(app) as client:
        response = await client.get("/auth/token", auth=(user.username, PASSWORD))
        token = response.json()["access_token"]
        assert (
            await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        ).is_success
    relay = CommonSettings(
        _env_file=None, jwt_algorithm="EdDSA", jwt_secret=None, jwt_public_key_file=key_pair[1]
    )
    claims = await TokenVerifier.from_settings(relay).verify(token)
    assert (claims.user_id, claims.username) == (str(user.id), user.username)


def test_eddsa_needs_the_private_key(sqlite_database: str) -> None:
    with pytest.raises(ValidationError, match="JWT_PRIVATE_KEY_FILE"):
        make_settings(sqlite_database, jwt_algorithm="EdDSA", jwt_secret=None)


def test_a_public_key_is_no_private_key(sqlite_database: str, key_pair: tuple[Path, Path]) -> None:
    with pytest.raises(ValidationError, match="jwt_private_key_file"):
        make_settings(sqlite_database, jwt_algorithm="EdDSA", jwt_private_key_file=key_pair[1])


async def test_an_hs256_token_is_refused_under_eddsa(
    app: FastAPI, accounts: Accounts, sqlite_database: str
) -> None:
    user = await accounts.create()
    forged, _ = token_issuer(make_settings(sqlite_database)).issue(
        user_id=str(user.id), username=user.username, user_type=user.type
    )
    async with client_for(app) as client:
        response = await client.get("/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
