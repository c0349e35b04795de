"""Revocation: logout and user changes end tokens, in the database and (with Redis) for relays."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from sqlalchemy import select

from auth_service.models import RevokedToken
from shared.identity import UserType
from shared.revocation import (
    issued_before,
    revocation_channel,
    revocation_cutoff,
    revoked_token_key,
    revoked_user_key,
)
from shared.tokens import TokenClaims
from tests.auth.conftest import PASSWORD, Account, Accounts


@pytest.fixture(params=["memory", "redis"])
def redis_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {}
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return {"redis_url": url, "redis_prefix": prefix}


@pytest.fixture
async def redis_events(redis_settings: dict[str, Any]) -> AsyncIterator[PubSub | None]:
    """A subscription to the revocation channel, when this run uses Redis."""
    if not redis_settings:
        yield None
        return
    redis = Redis.from_url(redis_settings["redis_url"])
    pubsub = redis.pubsub()
    await pubsub.subscribe(revocation_channel(redis_settings["redis_prefix"]))
    try:
        yield pubsub
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


async def next_event(pubsub: PubSub) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                event: dict[str, Any] = orjson.loads(message["data"])
                return event


async def redis_get(redis_settings: dict[str, Any], key: str) -> bytes | None:
    redis = Redis.from_url(redis_settings["redis_url"])
    try:
        value = await redis.get(key)
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        await redis.aclose()


async def status_of(client: httpx.AsyncClient, account: Account) -> int:
    return (await client.get("/auth/me", headers=account.headers)).status_code


async def test_logout_ends_the_token(client: httpx.AsyncClient, accounts: Accounts) -> None:
    user = await accounts.create()
    response = await client.post("/auth/logout", headers=user.headers)
    assert response.status_code == 204
    after = await client.get("/auth/me", headers=user.headers)
    assert after.status_code == 401
    assert after.json() == {"detail": "token revoked"}
    assert after.headers["www-authenticate"] == "Bearer"


async def test_logout_keeps_the_users_other_tokens(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    user = await accounts.create()
    other = accounts.token_for(user)
    await client.post("/auth/logout", headers=user.headers)
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 200


async def test_logout_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.post("/auth/logout")).status_code == 401


async def test_logout_deletes_expired_revocations(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    user = await accounts.create()
    async with accounts.services.sessions() as session:
        session.add(
            RevokedToken(
                jti="expired-" + uuid.uuid4().hex,
                user_id=user.id,
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        await session.commit()
    await client.post("/auth/logout", headers=user.headers)
    async with accounts.services.sessions() as session:
        rows = await session.scalars(
            select(RevokedToken.jti).where(RevokedToken.user_id == user.id)
        )
        assert list(rows) == [token_id(user)]


def token_id(account: Account) -> str:
    return str(jwt.decode(account.token, options={"verify_signature": False})["jti"])


@pytest.mark.parametrize("redis_settings", ["redis"], indirect=True)
async def test_logout_writes_the_redis_key_and_event(
    client: httpx.AsyncClient,
    accounts: Accounts,
    redis_settings: dict[str, Any],
    redis_events: PubSub | None,
) -> None:
    assert redis_events is not None
    user = await accounts.create()
    jti = token_id(user)
    await client.post("/auth/logout", headers=user.headers)
    assert await redis_get(redis_settings, revoked_token_key(redis_settings["redis_prefix"], jti))
    event = await next_event(redis_events)
    assert event == {"user_id": str(user.id), "token_id": jti, "revoked_before": None}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"password": "another password"}, id="password"),
        pytest.param({"type": "viewer"}, id="type"),
        pytest.param({"disabled": True}, id="disabled"),
    ],
)
async def test_a_change_revokes_earlier_tokens(
    client: httpx.AsyncClient,
    admin: Account,
    accounts: Accounts,
    redis_settings: dict[str, Any],
    redis_events: PubSub | None,
    change: dict[str, Any],
) -> None:
    user = await accounts.create(UserType.OPERATOR)
    response = await client.patch(f"/users/{user.id}", json=change, headers=admin.headers)
    assert response.status_code == 200
    assert await status_of(client, user) == 401
    stored = await accounts.get(user.id)
    assert stored is not None
    assert stored.tokens_revoked_before is not None
    if redis_events is not None:
        cutoff = stored.tokens_revoked_before.timestamp()
        key = revoked_user_key(redis_settings["redis_prefix"], str(user.id))
        assert float(await redis_get(redis_settings, key) or 0) == pytest.approx(cutoff)
        event = await next_event(redis_events)
        assert event["user_id"] == str(user.id)
        assert event["token_id"] is None
        assert event["revoked_before"] == pytest.approx(cutoff)


async def test_a_patch_that_changes_nothing_revokes_nothing(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    user = await accounts.create(UserType.OPERATOR)
    response = await client.patch(
        f"/users/{user.id}", json={"type": "operator", "disabled": False}, headers=admin.headers
    )
    assert response.status_code == 200
    assert await status_of(client, user) == 200


async def test_deleting_a_user_revokes_its_tokens(
    client: httpx.AsyncClient,
    admin: Account,
    accounts: Accounts,
    redis_settings: dict[str, Any],
    redis_events: PubSub | None,
) -> None:
    user = await accounts.create(UserType.FACTORY)
    assert (await client.delete(f"/users/{user.id}", headers=admin.headers)).status_code == 204
    assert await status_of(client, user) == 401
    if redis_events is not None:
        key = revoked_user_key(redis_settings["redis_prefix"], str(user.id))
        assert await redis_get(redis_settings, key) is not None
        assert (await next_event(redis_events))["user_id"] == str(user.id)


async def test_a_login_right_after_a_password_change_works(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    user = await accounts.create()
    old = await client.get("/auth/token", auth=(user.username, PASSWORD))
    await client.patch(
        f"/users/{user.id}", json={"password": "new password!"}, headers=admin.headers
    )
    new = await client.get("/auth/token", auth=(user.username, "new password!"))
    old_headers = {"Authorization": f"Bearer {old.json()['access_token']}"}
    new_headers = {"Authorization": f"Bearer {new.json()['access_token']}"}
    assert (await client.get("/auth/me", headers=old_headers)).status_code == 401
    assert (await client.get("/auth/me", headers=new_headers)).status_code == 200


async def test_a_token_minted_right_after_a_change_works(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    user = await accounts.create()
    await client.patch(f"/users/{user.id}", json={"type": "viewer"}, headers=admin.headers)
    stored = await accounts.get(user.id)
    assert stored is not None
    fresh = accounts.token_for(stored)
    assert (
        await client.get("/auth/me", headers={"Authorization": f"Bearer {fresh}"})
    ).status_code == 200


# -- whole-second iat: the same second on either side of a change ----------------------


async def start_of_a_second() -> None:
    """Sleep to just past a whole second, so that what follows happens within one second."""
    now = time.time()
    await asyncio.sleep(math.floor(now) + 1 - now + 0.01)


def issued_at(token: str) -> int:
    iat = jwt.decode(token, options={"verify_signature": False})["iat"]
    assert type(iat) is int
    return iat


async def test_a_token_minted_in_the_same_second_just_before_a_change_is_refused(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    user = await accounts.create()
    await start_of_a_second()
    before = accounts.token_for(user)
    await client.patch(f"/users/{user.id}", json={"type": "viewer"}, headers=admin.headers)
    stored = await accounts.get(user.id)
    assert stored is not None
    assert stored.tokens_revoked_before is not None
    assert issued_at(before) == stored.tokens_revoked_before.timestamp() - 1  # same second
    headers = {"Authorization": f"Bearer {before}"}
    assert (await client.get("/auth/me", headers=headers)).status_code == 401


async def test_a_token_minted_just_after_a_change_begun_in_the_same_second_works(
    client: httpx.AsyncClient, admin: Account, accounts: Accounts
) -> None:
    user = await accounts.create()
    await start_of_a_second()
    change_began = math.floor(time.time())
    await client.patch(f"/users/{user.id}", json={"type": "viewer"}, headers=admin.headers)
    stored = await accounts.get(user.id)
    assert stored is not None
    assert stored.tokens_revoked_before is not None
    after = accounts.token_for(stored)
    assert stored.tokens_revoked_before.timestamp() == change_began + 1 == issued_at(after)
    headers = {"Authorization": f"Bearer {after}"}
    assert (await client.get("/auth/me", headers=headers)).status_code == 200


def test_the_cutoff_is_the_next_whole_second_and_covers_only_earlier_iats() -> None:
    assert revocation_cutoff(1_700_000_000.0) == 1_700_000_001
    assert revocation_cutoff(1_700_000_000.999) == 1_700_000_001
    claims = TokenClaims("u", "name", UserType.VIEWER, 1_700_000_000, 1_700_003_600, "j")
    assert issued_before(claims, 1_700_000_001)
    assert not issued_before(claims, 1_700_000_000)
    assert not issued_before(claims, None)
