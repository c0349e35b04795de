"""Key ids and the JWK set: every token names its key; the public keys are published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI

from auth_service.core.config import AuthSettings
from auth_service.main import create_app
from shared.identity import UserType
from shared.keys import (
    b64url_decode,
    ed25519_thumbprint,
    hs256_kid,
    load_public_key,
    write_key_pair,
)
from shared.tokens import TokenIssuer
from tests.auth.conftest import JWT_SECRET, Accounts, client_for, make_settings
from tests.processes import console_script, free_port, run_to_exit

OTHER_SECRET = "previous-secret-" + "p" * 32

# RFC 8037, appendix A.2 and A.3: an Ed25519 public key and its RFC 7638 thumbprint.
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def header(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


def test_the_ed25519_kid_is_the_rfc_7638_thumbprint() -> None:
    key = Ed25519PublicKey.from_public_bytes(b64url_decode(RFC8037_X))
    assert ed25519_thumbprint(key) == RFC8037_THUMBPRINT


def test_the_hs256_kid_is_stable_distinct_and_does_not_contain_the_secret() -> None:
    kid = hs256_kid(JWT_SECRET)
    assert kid == hs256_kid(JWT_SECRET)
    assert kid != hs256_kid(OTHER_SECRET)
    assert JWT_SECRET not in kid
    assert JWT_SECRET.encode() not in b64url_decode(kid.removeprefix("hs256-"))


# -- HS256 ----------------------------------------------------------------------------


async def test_a_minted_token_names_its_key_and_has_whole_second_times(
    accounts: Accounts,
) -> None:
    token = (await accounts.create()).token
    assert header(token)["kid"] == hs256_kid(JWT_SECRET)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert type(claims["iat"]) is int
    assert type(claims["exp"]) is int


async def test_the_jwk_set_is_empty_under_hs256(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == {"keys": []}


def _hs256_token(secret: str, *, kid: str | None = None, account_id: str = "") -> str:
    issuer = TokenIssuer(
        algorithm="HS256",
        key=secret,
        issuer="factory-relay-auth",
        audience="factory-relay",
        ttl_seconds=60,
    )
    token, _ = issuer.issue(user_id=account_id, username="someone", user_type=UserType.ADMIN)
    if kid is None:
        return token
    payload = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid})


async def test_a_token_signed_with_a_previous_secret_is_accepted(
    database_url: str, accounts: Accounts
) -> None:
    account = await accounts.create(UserType.ADMIN)
    settings = make_settings(database_url, jwt_previous_secrets=OTHER_SECRET)
    token = _hs256_token(OTHER_SECRET, account_id=str(account.id))
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "kid",
    [pytest.param("no-such-key", id="unknown-kid"), pytest.param("", id="empty-kid")],
)
async def test_a_token_naming_no_accepted_key_is_401(
    client: httpx.AsyncClient, accounts: Accounts, kid: str
) -> None:
    account = await accounts.create(UserType.ADMIN)
    token = _hs256_token(JWT_SECRET, kid=kid, account_id=str(account.id))
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid or expired token"}


async def test_a_token_without_a_kid_is_401(client: httpx.AsyncClient, accounts: Accounts) -> None:
    account = await accounts.create(UserType.ADMIN)
    payload = jwt.decode(account.token, options={"verify_signature": False})
    token = jwt.encode(payload, JWT_SECRET, algorithm="HS256")
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


# -- EdDSA ----------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name in ("current", "previous", "older"):
        files[name] = tmp_path / f"{name}.key"
        files[f"{name}.pub"] = tmp_path / f"{name}.pub"
        write_key_pair(files[name], files[f"{name}.pub"])
    return files


@pytest.fixture
def eddsa_settings(sqlite_database: str, keys: dict[str, Path]) -> AuthSettings:
    return make_settings(
        sqlite_database,
        jwt_algorithm="EdDSA",
        jwt_secret=None,
        jwt_private_key_file=keys["current"],
        jwt_previous_public_key_files=f"{keys['previous.pub']}, {keys['older.pub']}",
    )


@pytest.fixture
async def eddsa_app(eddsa_settings: AuthSettings) -> AsyncIterator[FastAPI]:
    application = create_app(eddsa_settings)
    async with application.router.lifespan_context(application):
        yield application


def kid_of(public: Path) -> str:
    return ed25519_thumbprint(load_public_key(public))


async def test_the_jwk_set_holds_the_current_key_then_the_previous_ones(
    eddsa_app: FastAPI, keys: dict[str, Path]
) -> None:
    async with client_for(eddsa_app) as client:
        response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    published = response.json()["keys"]
    assert [jwk["kid"] for jwk in published] == [
        kid_of(keys[f"{name}.pub"]) for name in ("current", "previous", "older")
    ]
    for jwk in published:
        assert set(jwk) == {"kty", "crv", "x", "use", "alg", "kid"}
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )


async def test_a_login_token_names_the_published_current_key(
    eddsa_app: FastAPI, keys: dict[str, Path]
) -> None:
    accounts = Accounts(eddsa_app.state.services, "")
    token = (await accounts.create()).token
    async with client_for(eddsa_app) as client:
        published = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert header(token)["kid"] == published[0]["kid"] == kid_of(keys["current.pub"])
    assert header(token)["alg"] == "EdDSA"


# -- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param(
            {"JWT_SECRET": JWT_SECRET, "JWT_PREVIOUS_SECRETS": f"{OTHER_SECRET},short"},
            "JWT_PREVIOUS_SECRETS",
            id="short-previous-secret",
        ),
        pytest.param(
            {"JWT_ALGORITHM": "EdDSA", "JWT_PREVIOUS_PUBLIC_KEY_FILES": "/nonexistent.pub"},
            "JWT_PREVIOUS_PUBLIC_KEY_FILES",
            id="missing-previous-key",
        ),
        pytest.param(
            {"JWT_ALGORITHM": "EdDSA", "JWT_PREVIOUS_PUBLIC_KEY_FILES": "{garbage}"},
            "JWT_PREVIOUS_PUBLIC_KEY_FILES",
            id="bad-pem",
        ),
    ],
)
def test_a_bad_key_setting_stops_the_auth_service_with_one_line(
    tmp_path: Path, keys: dict[str, Path], env: dict[str, str], named: str
) -> None:
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    settings = {name: value.replace("{garbage}", str(garbage)) for name, value in env.items()}
    if settings.get("JWT_ALGORITHM") == "EdDSA":
        settings["JWT_PRIVATE_KEY_FILE"] = str(keys["current"])
    settings["PORT"] = str(free_port())
    result = run_to_exit([console_script("auth-service"), "serve"], tmp_path, settings)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert OTHER_SECRET not in result.stderr
