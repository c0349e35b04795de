"""LiveKit tokens, checked with livekit-api's own verifier."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from livekit import api

from auth_service.core.config import AuthSettings
from shared.identity import UserType
from tests.auth.conftest import LIVEKIT, Account, Accounts, make_settings

VERIFIER = api.TokenVerifier(LIVEKIT["livekit_api_key"], LIVEKIT["livekit_api_secret"])


def video_grants(token: str) -> api.VideoGrants:
    """The grants, once livekit-api's own verifier accepts the signature."""
    video = VERIFIER.verify(token).video
    assert video is not None
    return video


async def livekit_token(
    client: httpx.AsyncClient, account: Account, room: str | None = None
) -> httpx.Response:
    params = {"room": room} if room is not None else {}
    return await client.get("/livekit/token", params=params, headers=account.headers)


async def test_a_factory_publishes_its_camera_in_its_own_room(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    factory = await accounts.create(UserType.FACTORY)
    response = await livekit_token(client, factory)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "url", "room", "identity", "can_publish"}
    assert (body["room"], body["identity"], body["can_publish"]) == (
        factory.username,
        factory.username,
        True,
    )
    assert body["url"] == LIVEKIT["livekit_url"]
    assert VERIFIER.verify(body["token"]).identity == factory.username
    video = video_grants(body["token"])
    assert video.room == factory.username
    assert video.room_join is True
    assert video.can_publish is True
    assert video.can_publish_sources == ["camera"]
    assert video.can_subscribe is False
    assert video.can_publish_data is False
    assert video.room_admin is False


async def test_a_factory_may_name_its_own_room(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    factory = await accounts.create(UserType.FACTORY)
    response = await livekit_token(client, factory, factory.username)
    assert response.json()["room"] == factory.username


async def test_a_factory_asking_for_another_room_is_403(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    factory = await accounts.create(UserType.FACTORY)
    other = await accounts.create(UserType.FACTORY)
    response = await livekit_token(client, factory, other.username)
    assert response.status_code == 403
    assert "detail" in response.json()


@pytest.mark.parametrize("user_type", [UserType.ADMIN, UserType.OPERATOR, UserType.VIEWER])
async def test_others_watch_a_factory_room_without_publishing(
    client: httpx.AsyncClient, accounts: Accounts, user_type: UserType
) -> None:
    factory = await accounts.create(UserType.FACTORY)
    watcher = await accounts.create(user_type)
    response = await livekit_token(client, watcher, factory.username.upper())
    assert response.status_code == 200
    body = response.json()
    assert (body["room"], body["identity"], body["can_publish"]) == (
        factory.username,
        watcher.username,
        False,
    )
    video = video_grants(body["token"])
    assert video.room == factory.username
    assert video.room_join is True
    assert video.can_subscribe is True
    assert video.can_publish is False
    assert video.can_publish_data is False


async def test_the_token_lives_for_the_configured_ttl(
    client: httpx.AsyncClient, accounts: Accounts, settings: AuthSettings
) -> None:
    factory = await accounts.create(UserType.FACTORY)
    token = (await livekit_token(client, factory)).json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - time.time() == pytest.approx(settings.livekit_token_ttl_seconds, abs=5)


async def test_a_room_that_is_no_factory_is_404(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    viewer = await accounts.create(UserType.VIEWER)
    operator = await accounts.create(UserType.OPERATOR)
    for room in ("no-such-factory", operator.username):
        response = await livekit_token(client, viewer, room)
        assert response.status_code == 404


async def test_a_missing_room_is_422_for_non_factories(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    viewer = await accounts.create(UserType.VIEWER)
    response = await livekit_token(client, viewer)
    assert response.status_code == 422
    assert "detail" in response.json()


async def test_livekit_tokens_need_a_bearer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livekit/token?room=factory-1")).status_code == 401


@pytest.fixture
def livekit_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    overrides: dict[str, Any] = getattr(request, "param", {"livekit_token_ttl_seconds": 600})
    return overrides


@pytest.fixture
def settings(database_url: str, livekit_overrides: dict[str, Any]) -> AuthSettings:
    return make_settings(database_url, **livekit_overrides)


@pytest.mark.parametrize(
    "livekit_overrides",
    [{"livekit_url": None}, {"livekit_api_key": None}, {"livekit_api_secret": None}],
    indirect=True,
)
async def test_livekit_unconfigured_is_503(client: httpx.AsyncClient, accounts: Accounts) -> None:
    factory = await accounts.create(UserType.FACTORY)
    response = await livekit_token(client, factory)
    assert response.status_code == 503
    assert response.json() == {"detail": "LiveKit not configured"}
