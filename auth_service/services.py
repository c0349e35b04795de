"""The long-lived resources of a running auth service, opened and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from auth_service import users
from auth_service.core import security
from auth_service.core.config import AuthSettings
from auth_service.core.db import create_engine, session_factory
from auth_service.livekit import LiveKitTokens
from auth_service.revocation import Revocations
from auth_service.schemas import UserCreate
from auth_service.throttle import (
    FailureCounter,
    LoginThrottle,
    MemoryFailureCounter,
    RedisFailureCounter,
)
from shared.identity import UserType
from shared.logging import get_logger
from shared.revocation import RedisRevocations
from shared.tokens import TokenIssuer, TokenVerifier

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: AuthSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    issuer: TokenIssuer
    verifier: TokenVerifier
    throttle: LoginThrottle
    revocations: Revocations
    livekit: LiveKitTokens | None


def _livekit(settings: AuthSettings) -> LiveKitTokens | None:
    if settings.livekit_api_key is None or settings.livekit_api_secret is None:
        return None
    if settings.livekit_url is None:
        return None
    return LiveKitTokens(
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        ttl_seconds=settings.livekit_token_ttl_seconds,
    )


def _throttle(settings: AuthSettings, counter: FailureCounter) -> LoginThrottle:
    return LoginThrottle(
        counter=counter,
        max_per_username=settings.login_max_failures_per_username,
        max_per_address=settings.login_max_failures_per_address,
        window_seconds=settings.login_failure_window_seconds,
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
    log.info("first admin created", user_id=str(user.id))


@asynccontextmanager
async def open_services(settings: AuthSettings) -> AsyncIterator[Services]:
    engine = create_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        sessions = session_factory(engine)
        counter: FailureCounter = (
            RedisFailureCounter(redis, settings.redis_prefix) if redis else MemoryFailureCounter()
        )
        redis_revocations = (
            RedisRevocations(
                redis,
                prefix=settings.redis_prefix,
                token_ttl_seconds=settings.access_token_ttl_seconds,
            )
            if redis
            else None
        )
        await security.warm_up()
        await ensure_first_admin(settings, sessions)
        yield Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            issuer=settings.token_issuer(),
            verifier=settings.token_verifier(),
            throttle=_throttle(settings, counter),
            revocations=Revocations(redis_revocations),
            livekit=_livekit(settings),
        )
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
