"""The long-lived resources of a running auth service, opened and closed together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from auth_service import users
from auth_service.core import security
from auth_service.core.config import AuthSettings
from auth_service.core.db import create_engine, session_factory
from auth_service.core.signing import token_issuer, token_verifier
from auth_service.livekit import LiveKitTokens
from auth_service.revocation import Revocations, RevocationSync
from auth_service.schemas import UserCreate
from auth_service.throttle import (
    CounterStore,
    LoginThrottle,
    MemoryCounterStore,
    RedisCounterStore,
    ThrottleLimits,
)
from shared.identity import UserType
from shared.logging import get_logger
from shared.redis_connect import ClientOptions, RedisClient
from shared.redis_connect import redis_client as connect_redis
from shared.revocation import RedisRevocations, RevocationCopy
from shared.tokens import TokenIssuer, TokenVerifier

log = get_logger(__name__)

REDIS_RETRIES = 2
"""Retries of a Redis command that met a dropped connection (a Redis restart leaves every
pooled connection stale): on a fresh connection, with a short backoff. A timeout is not
retried, so a hung Redis costs one `REDIS_TIMEOUT_SECONDS`, not several."""
REDIS_RETRY_BACKOFF_SECONDS = (0.05, 0.5)
"""The retry backoff's base and cap."""


@dataclass(frozen=True, slots=True)
class Services:
    settings: AuthSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: RedisClient | None
    issuer: TokenIssuer
    verifier: TokenVerifier
    throttle: LoginThrottle
    revocations: Revocations
    livekit: LiveKitTokens | None


def _livekit(settings: AuthSettings) -> LiveKitTokens | None:
    if not settings.livekit_configured:
        return None
    assert settings.livekit_url is not None
    assert settings.livekit_api_key is not None
    assert settings.livekit_api_secret is not None
    return LiveKitTokens(
        url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        ttl_seconds=settings.livekit_token_ttl_seconds,
    )


def _throttle(settings: AuthSettings, store: CounterStore) -> LoginThrottle:
    return LoginThrottle(
        store=store,
        limits=ThrottleLimits(
            failures_per_username_and_address=settings.login_max_failures_per_username_and_address,
            failures_per_address=settings.login_max_failures_per_address,
            failures_per_username=settings.login_max_failures_per_username,
            failure_window_seconds=settings.login_failure_window_seconds,
            successes_per_username=settings.login_max_successes_per_username,
            successes_per_address=settings.login_max_successes_per_address,
            success_window_seconds=settings.login_success_window_seconds,
        ),
    )


def redis_client(settings: AuthSettings) -> RedisClient | None:
    """Every call bounded by `REDIS_TIMEOUT_SECONDS`; a dropped connection retried (on
    Sentinel, on the master the sentinels name then: a failover is followed)."""
    if not settings.redis_url:
        return None
    base, cap = REDIS_RETRY_BACKOFF_SECONDS
    return connect_redis(
        settings.redis_url,
        ClientOptions(
            connect_timeout_seconds=settings.redis_timeout_seconds,
            socket_timeout_seconds=settings.redis_timeout_seconds,
            retry=Retry(ExponentialBackoff(cap=cap, base=base), REDIS_RETRIES),
            retry_on_error=(RedisConnectionError,),
        ),
    )


def revocation_sync(
    settings: AuthSettings, redis: RedisClient | None, sessions: async_sessionmaker[AsyncSession]
) -> RevocationSync | None:
    if redis is None:
        return None
    return RevocationSync(
        redis=RedisRevocations(
            redis, prefix=settings.redis_prefix, token_ttl_seconds=settings.access_token_ttl_seconds
        ),
        copy=RevocationCopy(
            redis,
            prefix=settings.redis_prefix,
            marker_ttl_seconds=settings.access_token_ttl_seconds,
        ),
        sessions=sessions,
        token_ttl_seconds=settings.access_token_ttl_seconds,
        interval_seconds=settings.revocation_sync_interval_seconds,
    )


async def ensure_first_admin(
    settings: AuthSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Create FIRST_ADMIN_USERNAME when it is set and there are no users yet."""
    if settings.first_admin_username is None or settings.first_admin_password is None:
        return
    async with sessions() as session:
        if await users.count_users(session) > 0:
            return
        data = UserCreate(
            username=settings.first_admin_username,
            password=settings.first_admin_password.get_secret_value(),
            type=UserType.ADMIN,
        )
        try:
            user = await users.create_user(session, data)
        except users.UsernameTakenError:  # another replica was quicker
            return
    log.info("first_admin_created", user=user.username)


@asynccontextmanager
async def open_services(settings: AuthSettings) -> AsyncIterator[Services]:
    engine = create_engine(settings.database_url, timeout_seconds=settings.database_timeout_seconds)
    redis = redis_client(settings)
    sync_task: asyncio.Task[None] | None = None
    try:
        sessions = session_factory(engine)
        store: CounterStore = (
            RedisCounterStore(redis, settings.redis_prefix) if redis else MemoryCounterStore()
        )
        sync = revocation_sync(settings, redis, sessions)
        await security.warm_up()
        await ensure_first_admin(settings, sessions)
        if sync is not None:
            sync_task = asyncio.create_task(sync.run(), name="revocation-sync")
        yield Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            redis=redis,
            issuer=token_issuer(settings),
            verifier=token_verifier(settings),
            throttle=_throttle(settings, store),
            revocations=Revocations(sync, settings.access_token_ttl_seconds),
            livekit=_livekit(settings),
        )
    finally:
        if sync_task is not None:
            sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync_task
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
