"""The relay: what every session on this replica shares, and what sessions ask of it.

`Relay` owns the broker, the hub, token verification and revocation. It is the
`SessionHost` of every session: it authenticates Identify, joins and leaves audiences
(subscribing the broker for the first listener of a channel, unsubscribing after the
last), and publishes. The broker's single handler dispatches by channel: control
channels (revocation events) to their owner, audience channels to the hub's fan-out.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from relay_service import metrics
from relay_service.admission import Admission, connection_cap
from relay_service.broker import MessageHandler, broker_for
from relay_service.channels import Channels
from relay_service.config import RelaySettings
from relay_service.hub import Hub
from relay_service.revocations import Revocations
from relay_service.session import Session
from shared.protocol import CloseCode, ProtocolError
from shared.revocation import RedisRevocations
from shared.tokens import InvalidTokenError, TokenClaims, TokenVerifier

REDIS_POOL_SIZE = 32
"""Connections for Identify's revocation checks and publishing; callers wait for a free one."""
REDIS_POOL_WAIT_SECONDS = 5


class Relay:
    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.channels = Channels(settings.redis_prefix)
        self.hub = Hub(self.channels)
        self.verifier = TokenVerifier.from_settings(settings)
        self._redis = redis_client(settings)
        self.revocations = Revocations(
            None
            if self._redis is None
            else RedisRevocations(
                self._redis,
                prefix=settings.redis_prefix,
                token_ttl_seconds=settings.access_token_ttl_seconds,
            ),
            self.hub.sessions,
        )
        self._control: dict[str, MessageHandler] = {}
        if self.revocations.enabled:
            self._control[self.channels.revocations] = self.revocations.on_event
        self.broker = broker_for(settings, self._redis, self._on_broker_message)
        self.admission = Admission(
            per_address=settings.max_connections_per_address,
            total=connection_cap(settings.max_connections),
            trusted_proxies=settings.trusted_proxies,
        )
        self.draining = False

    async def start(self) -> None:
        """Connect the broker and hear the control channels."""
        await self.broker.connect()
        for channel in self._control:
            await self.broker.subscribe(channel)

    async def stop(self) -> None:
        await self.broker.disconnect()
        if self._redis is not None:
            await self._redis.aclose()

    def _on_broker_message(self, channel: str, message: bytes) -> None:
        self._control.get(channel, self.hub.deliver)(channel, message)

    # -- what sessions use (SessionHost) ------------------------------------------

    async def authenticate(self, token: str) -> TokenClaims:
        try:
            claims = self.verifier.verify(token)
        except InvalidTokenError:
            raise ProtocolError(CloseCode.AUTHENTICATION_FAILED, "invalid token") from None
        if await self.revocations.is_revoked(claims):
            raise ProtocolError(CloseCode.AUTHENTICATION_FAILED, "token revoked")
        return claims

    async def join(self, session: Session, claims: TokenClaims) -> None:
        if self.hub.sessions_of(claims.user_id) >= self.settings.max_sessions_per_user:
            raise ProtocolError(CloseCode.TOO_MANY_SESSIONS, "too many sessions for this user")
        needed = self.hub.add(session, claims)
        metrics.CONNECTIONS.labels(type=claims.user_type.value).inc()
        for channel in needed:
            await self.broker.subscribe(channel)

    async def leave(self, session: Session, claims: TokenClaims) -> None:
        unneeded = self.hub.remove(session, claims)
        if unneeded is None:
            return
        metrics.CONNECTIONS.labels(type=claims.user_type.value).dec()
        for channel in unneeded:
            await self.broker.unsubscribe(channel)

    def publish(self, channel: str, message: bytes) -> None:
        self.broker.publish(channel, message)


def redis_client(settings: RelaySettings) -> Redis | None:
    """The replica's Redis connections (None without `REDIS_URL`: the in-process broker)."""
    if settings.redis_url is None:
        return None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_POOL_SIZE,
        timeout=REDIS_POOL_WAIT_SECONDS,
        socket_keepalive=True,
        socket_connect_timeout=2,
        health_check_interval=10,
        # A pool built directly gets no retry; without one, the first command on each
        # connection left stale by a Redis restart fails (a published message is lost).
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries=3),
    )
    return Redis.from_pool(pool)
