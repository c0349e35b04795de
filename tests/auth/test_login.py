"""Logging in (form and Basic), the current user, and what makes a bearer token fail."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from auth_service.core import security
from auth_service.core.config import AuthSettings
from shared.identity import UserType
from shared.tokens import TokenIssuer
from tests.auth.conftest import JWT_SECRET, PASSWORD, Account, Accounts


async def form_login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/token", data={"username": username, "password": password})


async def test_form_login_returns_a_bearer_token(client: httpx.AsyncClient, admin: Account) -> None:
    response = await form_login(client, admin.username, PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86400


async def test_basic_login_returns_a_bearer_token(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.get("/auth/token", auth=(admin.username, PASSWORD))
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


async def test_token_carries_every_claim(
    client: httpx.AsyncClient, admin: Account, settings: AuthSettings
) -> None:
    token = (await form_login(client, admin.username, PASSWORD)).json()["access_token"]
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience=settings.jwt_audience)
    assert set(claims) == {"sub", "name", "type", "iat", "exp", "iss", "aud", "jti"}
    assert (claims["sub"], claims["name"], claims["type"]) == (
        str(admin.id),
        admin.username,
        "admin",
    )
    assert claims["exp"] - int(claims["iat"]) == 86400


async def test_login_ignores_the_case_of_the_username(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await form_login(client, admin.username.upper(), PASSWORD)
    assert response.status_code == 200


async def test_unknown_user_and_wrong_password_get_the_same_401(
    client: httpx.AsyncClient, admin: Account
) -> None:
    wrong = await form_login(client, admin.username, "wrong password")
    unknown = await form_login(client, "nobody-here", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "incorrect username or password"}
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"


async def test_unknown_user_is_checked_against_a_dummy_hash(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str | None] = []
    original = security._verify

    def spy(password: str, password_hash: str | None) -> tuple[bool, str | None]:
        checked.append(password_hash)
        return original(password, password_hash)

    monkeypatch.setattr(security, "_verify", spy)
    response = await form_login(client, "nobody-here", PASSWORD)
    assert response.status_code == 401
    assert checked == [None]


def test_dummy_hash_is_argon2id_with_the_owasp_parameters() -> None:
    assert security._dummy_hash().startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_basic_login_failure_challenges_basic(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.get("/auth/token", auth=(admin.username, "wrong password"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.json() == {"detail": "incorrect username or password"}


async def test_basic_login_without_credentials_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/auth/token")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "detail" in response.json()


async def test_disabled_user_gets_the_wrong_password_401(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    viewer = await accounts.create(UserType.VIEWER)
    await client.patch(f"/users/{viewer.id}", json={"disabled": True}, headers=admin.headers)
    response = await form_login(client, viewer.username, PASSWORD)
    assert response.status_code == 401
    assert response.json() == {"detail": "incorrect username or password"}


async def test_me_describes_the_current_user(client: httpx.AsyncClient, accounts: Accounts) -> None:
    viewer = await accounts.create(UserType.VIEWER)
    response = await client.get("/auth/me", headers=viewer.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "username", "type", "disabled", "created_at"}
    assert body["id"] == str(viewer.id)
    assert (body["username"], body["type"], body["disabled"]) == (viewer.username, "viewer", False)
    assert body["created_at"].endswith(("Z", "+00:00"))


async def test_a_token_from_login_opens_me(client: httpx.AsyncClient, admin: Account) -> None:
    token = (await form_login(client, admin.username, PASSWORD)).json()["access_token"]
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["username"] == admin.username


async def test_me_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "not authenticated"}


def _forged(settings: AuthSettings, **changes: Any) -> TokenIssuer:
    values: dict[str, Any] = {
        "algorithm": "HS256",
        "key": JWT_SECRET,
        "issuer": settings.jwt_issuer,
        "audience": settings.jwt_audience,
        "ttl_seconds": 60,
    }
    values.update(changes)
    return TokenIssuer(**values)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"key": "another-secret-" + "z" * 32}, id="other-key"),
        pytest.param({"issuer": "someone-else"}, id="other-issuer"),
        pytest.param({"audience": "another-app"}, id="other-audience"),
    ],
)
async def test_a_token_not_ours_is_401(
    client: httpx.AsyncClient, admin: Account, settings: AuthSettings, changes: dict[str, Any]
) -> None:
    token, _ = _forged(settings, **changes).issue(
        user_id=str(admin.id), username=admin.username, user_type=UserType.ADMIN
    )
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_expired_token_is_401(
    client: httpx.AsyncClient, admin: Account, settings: AuthSettings
) -> None:
    token, _ = _forged(settings).issue(
        user_id=str(admin.id),
        username=admin.username,
        user_type=UserType.ADMIN,
        now=time.time() - 3600,
    )
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_a_garbage_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/auth/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid or expired token"}


async def test_a_token_of_an_unknown_user_is_401(
    client: httpx.AsyncClient, settings: AuthSettings
) -> None:
    token, _ = _forged(settings).issue(
        user_id="00000000-0000-4000-8000-000000000000", username="ghost", user_type=UserType.ADMIN
    )
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_a_longer_name_with_a_users_name_as_prefix_is_not_that_user(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    user = await accounts.create(username="p" * 54 + uuid.uuid4().hex[:10])
    response = await client.get("/auth/token", auth=(user.username + "x", PASSWORD))
    assert response.status_code == 401


async def test_a_longer_password_with_the_password_as_prefix_is_refused(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.get("/auth/token", auth=(admin.username, PASSWORD + "x" * 1024))
    assert response.status_code == 401
