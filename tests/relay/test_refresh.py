"""Sessions end with their token: 4004 "token expired" at `exp`, unless op 7 (Refresh)
brought a fresh token of the same user first, answered by REFRESHED."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.identity import UserType
from shared.protocol import CloseCode, Op
from shared.revocation import RedisRevocations
from tests.relay.harness import Client, Connector, Relays, Tokens, User

TOKEN_TTL = 3600
"""The harness mints tokens for an hour; `now` moved back makes them expire soon."""
EXPIRES_IN = 2.5


def _expiring_soon(tokens: Tokens, user_type: UserType, **same: str) -> User:
    return tokens.user(user_type, now=time.time() - TOKEN_TTL + EXPIRES_IN, **same)


def _fresh_for(tokens: Tokens, user: User) -> User:
    return tokens.user(user.user_type, user_id=user.user_id, username=user.username)


async def _identified(relays: Relays, connect: Connector, user: User) -> Client:
    client = await connect.raw(relays.a)
    await client.identify(user)
    return client


async def test_a_session_is_closed_with_4004_when_its_token_expires(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    client = await _identified(relays, connect, _expiring_soon(tokens, UserType.OPERATOR))

    reason = await client.expect_close(CloseCode.AUTHENTICATION_FAILED, within=EXPIRES_IN + 2)

    assert reason == "token expired"


async def test_heartbeats_do_not_keep_a_session_past_its_tokens_expiry(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    client = await _identified(relays, connect, _expiring_soon(tokens, UserType.FACTORY))

    for _ in range(int(EXPIRES_IN / 0.5) + 4):
        await client.send({"op": Op.HEARTBEAT, "d": None})
        await asyncio.sleep(0.5)
        if client.ws.close_code is not None:
            break

    assert client.ws.close_code == CloseCode.AUTHENTICATION_FAILED


async def test_a_refresh_is_answered_with_refreshed_and_the_new_expiry(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    user = _expiring_soon(tokens, UserType.VIEWER)
    client = await _identified(relays, connect, user)
    fresh = _fresh_for(tokens, user)

    await client.send({"op": Op.REFRESH, "d": {"token": fresh.token}})

    frame = await client.recv_dispatch()
    assert frame == {
        "op": Op.EVENT,
        "t": "REFRESHED",
        "s": 2,
        "d": {"exp": int(fresh.claims.expires_at)},
    }


async def test_a_refreshed_session_lives_past_the_old_tokens_expiry(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    user = _expiring_soon(tokens, UserType.OPERATOR)
    client = await _identified(relays, connect, user)
    await client.send({"op": Op.REFRESH, "d": {"token": _fresh_for(tokens, user).token}})
    await client.recv_dispatch()

    await asyncio.sleep(EXPIRES_IN + 0.5)

    await client.send({"op": Op.HEARTBEAT, "d": None})
    assert await client.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


async def test_a_refresh_with_another_users_token_closes_with_4004(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    client = await _identified(relays, connect, tokens.user(UserType.OPERATOR))

    await client.send({"op": Op.REFRESH, "d": {"token": tokens.user(UserType.OPERATOR).token}})

    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)


async def test_a_refresh_with_the_same_users_token_of_another_type_closes_with_4004(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    user = tokens.user(UserType.VIEWER)
    client = await _identified(relays, connect, user)
    promoted = tokens.user(UserType.ADMIN, user_id=user.user_id, username=user.username)

    await client.send({"op": Op.REFRESH, "d": {"token": promoted.token}})

    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)


async def test_a_refresh_with_a_bad_token_closes_with_4004(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    client = await _identified(relays, connect, tokens.user(UserType.FACTORY))

    await client.send({"op": Op.REFRESH, "d": {"token": "not-a-jwt"}})

    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)


@pytest.fixture
async def revocations(redis_pair: Relays) -> AsyncIterator[RedisRevocations]:
    assert redis_pair.redis_url is not None
    client = Redis.from_url(redis_pair.redis_url)
    yield RedisRevocations(client, prefix=redis_pair.prefix, token_ttl_seconds=TOKEN_TTL)
    await client.aclose()


async def test_revoking_the_new_token_closes_a_refreshed_session(
    redis_pair: Relays, connect: Connector, tokens: Tokens, revocations: RedisRevocations
) -> None:
    user = tokens.user(UserType.OPERATOR)
    client = await _identified(redis_pair, connect, user)
    fresh = _fresh_for(tokens, user)
    await client.send({"op": Op.REFRESH, "d": {"token": fresh.token}})
    await client.recv_dispatch()

    await revocations.revoke_token(fresh.claims)

    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)
