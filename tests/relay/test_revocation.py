"""SPEC 1 and 3: revoked tokens are refused at Identify, and live sessions are closed (4004).

Revocation lives in Redis, so these run against the Redis pair only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.identity import UserType
from shared.protocol import CloseCode
from shared.revocation import RedisRevocations, revoked_token_key, revoked_user_key
from tests.relay.harness import Connector, Relays, Tokens

REVOCATION_DEADLINE = 1.0


@pytest.fixture
def redis_relays(redis_pair: Relays) -> Relays:
    return redis_pair


@pytest.fixture
async def redis_client(redis_relays: Relays) -> AsyncIterator[Redis]:
    assert redis_relays.redis_url is not None
    client = Redis.from_url(redis_relays.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def revocations(redis_client: Redis, redis_relays: Relays) -> RedisRevocations:
    return RedisRevocations(redis_client, prefix=redis_relays.prefix, token_ttl_seconds=3600)


async def test_identify_with_a_token_revoked_in_redis_closes_with_4004(
    redis_relays: Relays, redis_client: Redis, connect: Connector, tokens: Tokens
) -> None:
    user = tokens.user(UserType.OPERATOR)
    await redis_client.set(revoked_token_key(redis_relays.prefix, user.claims.token_id), 1, ex=60)
    client = await connect.raw(redis_relays.a)

    await client.send({"op": 3, "d": {"token": user.token}})

    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)


async def test_identify_with_a_token_issued_before_the_users_cutoff_closes_with_4004(
    redis_relays: Relays, redis_client: Redis, connect: Connector, tokens: Tokens
) -> None:
    user = tokens.user(UserType.FACTORY)
    cutoff = user.claims.issued_at + 1
    await redis_client.set(revoked_user_key(redis_relays.prefix, user.user_id), repr(cutoff), ex=60)
    client = await connect.raw(redis_relays.b)

    await client.send({"op": 3, "d": {"token": user.token}})

    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)


async def test_a_token_issued_after_the_users_cutoff_is_accepted(
    redis_relays: Relays, redis_client: Redis, connect: Connector, tokens: Tokens
) -> None:
    old = tokens.user(UserType.VIEWER, now=time.time() - 10)
    cutoff = old.claims.issued_at + 5
    await redis_client.set(revoked_user_key(redis_relays.prefix, old.user_id), repr(cutoff), ex=60)
    new = tokens.user(UserType.VIEWER, user_id=old.user_id, username=old.username)
    client = await connect.raw(redis_relays.a)

    ready = await client.identify(new)

    assert ready["d"]["user"] == new.stamp


async def test_revoking_a_token_closes_its_live_sessions_on_both_replicas_within_1s(
    redis_relays: Relays, revocations: RedisRevocations, connect: Connector, tokens: Tokens
) -> None:
    user = tokens.user(UserType.OPERATOR)
    sessions = [await connect(relay, user) for relay in redis_relays.both]

    await revocations.revoke_token(user.claims)

    await asyncio.gather(
        *(
            session.expect_close(CloseCode.AUTHENTICATION_FAILED, REVOCATION_DEADLINE)
            for session in sessions
        )
    )


async def test_revoking_a_token_leaves_the_users_other_tokens_open(
    redis_relays: Relays, revocations: RedisRevocations, connect: Connector, tokens: Tokens
) -> None:
    revoked = tokens.user(UserType.FACTORY)
    other = tokens.user(UserType.FACTORY, user_id=revoked.user_id, username=revoked.username)
    closing = await connect(redis_relays.a, revoked)
    staying = await connect(redis_relays.b, other)

    await revocations.revoke_token(revoked.claims)

    await closing.expect_close(CloseCode.AUTHENTICATION_FAILED, REVOCATION_DEADLINE)
    await staying.send({"op": 1, "d": None})
    assert await staying.recv() == {"op": 2, "d": None}


async def test_revoking_a_user_closes_all_their_sessions_on_both_replicas_within_1s(
    redis_relays: Relays, revocations: RedisRevocations, connect: Connector, tokens: Tokens
) -> None:
    first = tokens.user(UserType.ADMIN)
    second = tokens.user(UserType.ADMIN, user_id=first.user_id, username=first.username)
    bystander = await connect(redis_relays.b, UserType.ADMIN)
    sessions = [await connect(redis_relays.a, first), await connect(redis_relays.b, second)]

    await revocations.revoke_user(first.user_id, revoked_before=second.claims.issued_at + 1)

    await asyncio.gather(
        *(
            session.expect_close(CloseCode.AUTHENTICATION_FAILED, REVOCATION_DEADLINE)
            for session in sessions
        )
    )
    await bystander.send({"op": 1, "d": None})
    assert await bystander.recv() == {"op": 2, "d": None}


async def test_a_revoked_session_is_no_longer_delivered_to(
    redis_relays: Relays, revocations: RedisRevocations, connect: Connector, tokens: Tokens
) -> None:
    user = tokens.user(UserType.FACTORY)
    factory = await connect(redis_relays.b, user)
    await revocations.revoke_token(user.claims)
    await factory.expect_close(CloseCode.AUTHENTICATION_FAILED, REVOCATION_DEADLINE)
    operator = await connect(redis_relays.a, UserType.OPERATOR)

    await operator.command("stop", target=user.username)

    await operator.send({"op": 1, "d": None})
    assert await operator.recv() == {"op": 2, "d": None}


async def test_a_token_issued_in_the_cutoffs_own_second_is_accepted(
    redis_relays: Relays, redis_client: Redis, connect: Connector, tokens: Tokens
) -> None:
    """Whole-second `iat`: the cutoff is the first second whose tokens count as new."""
    user = tokens.user(UserType.VIEWER)
    cutoff = user.claims.issued_at
    await redis_client.set(revoked_user_key(redis_relays.prefix, user.user_id), repr(cutoff), ex=60)
    client = await connect.raw(redis_relays.a)

    ready = await client.identify(user)

    assert ready["d"]["user"] == user.stamp
