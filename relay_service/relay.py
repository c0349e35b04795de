"""The relay: what every session on this replica shares, and what sessions ask of it.

`Relay` owns the broker, the hub, token verification and revocation. It is the
`SessionHost` of every session: it authenticates Identify, joins and leaves the hub,
welcomes a session (READY's fields, a factory's resume from the command streams) and
publishes: to observers on the sending factory's observer shard, to factories through
their command stream. It subscribes every channel once, at start; the broker's single
handler dispatches by channel: control channels (revocation events) to their owner,
audience channels to the hub's fan-out. After a broker reconnect it fills its factory
sessions' gap from the streams.
"""

from __future__ import annotations

import os
import socket
from contextlib import AbstractAsyncContextManager
from functools import partial

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from relay_service import frames, metrics
from relay_service.admission import Admission, connection_cap
from relay_service.broker import DropCallback, MessageHandler, broker_for
from relay_service.channels import Channels, Stream
from relay_service.commands import CommandStreams
from relay_service.config import RelaySettings
from relay_service.frames import Dispatch, StreamMessage
from relay_service.host import Welcome
from relay_service.hub import Hub
from relay_service.identifies import IdentifySlots
from relay_service.presence import glue, presence_for
from relay_service.revocations import RevocationCheckUnavailableError, Revocations
from relay_service.session import Session
from shared.identity import UserType
from shared.logging import get_logger
from shared.protocol import CloseCode, ProtocolError, ResumeData
from shared.redis_connect import ClientOptions, RedisClient
from shared.redis_connect import redis_client as connect_redis
from shared.revocation import RedisRevocations
from shared.tokens import InvalidTokenError, TokenClaims, TokenVerifier

log = get_logger(__name__)

REDIS_POOL_SIZE = 32
"""Connections for Identify's revocation checks and publishing; callers wait for a free one."""
REDIS_POOL_WAIT_SECONDS = 5
REDIS_RETRIES = 3
"""Retries of a command whose connection failed (each on a new connection), within the
caller's timeout: a Redis restart leaves every pooled connection stale."""


class Relay:
    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.channels = Channels(settings.redis_prefix)
        self.hub = Hub(
            self.channels,
            late_after_seconds=settings.broker_publish_max_age_ms / 1000
            + settings.redis_timeout_seconds,
        )
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
            # Identify must fail within its own timeout, never after it.
            timeout_seconds=min(
                settings.redis_timeout_seconds, settings.identify_timeout_ms / 1000
            ),
        )
        self._control: dict[str, MessageHandler] = {}
        if self.revocations.enabled:
            self._control[self.channels.revocations] = self.revocations.on_event
        self.broker = broker_for(settings, self._redis, self._on_broker_message)
        self._commands = CommandStreams(self.broker, self.channels)
        self.presence = presence_for(
            settings,
            self._redis,
            self.channels,
            publish=self.broker.publish,
            deliver_locally=self.hub.deliver,
        )
        self.hub.on_observer_message = partial(glue.heard, self.presence)
        self.admission = Admission(
            per_address=settings.max_connections_per_address,
            total=connection_cap(settings.max_connections),
            trusted_proxies=settings.trusted_proxies,
        )
        self.draining = False
        self._identify_slots = IdentifySlots(settings.max_concurrent_identifies)

    async def start(self) -> None:
        """Fetch the verification keys (with `JWKS_URL`), connect the broker, hear every
        channel."""
        await self.verifier.start()
        self.broker.on_resubscribed = self._fill_gaps
        for channel in self._control:
            await self.broker.subscribe(channel, control=True)
        for channel in self.channels.audiences:
            await self.broker.subscribe(channel)
        await self.broker.connect()
        await self.presence.start()

    async def stop(self) -> None:
        await self.presence.stop()  # writes the drain's closes while Redis is still there
        await self.broker.disconnect()
        await self.verifier.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    def _on_broker_message(self, channel: str, message: bytes) -> None:
        self._control.get(channel, self.hub.deliver)(channel, message)

    # -- what sessions use (SessionHost) ------------------------------------------

    def identify_slot(self, deadline: float) -> AbstractAsyncContextManager[None]:
        return self._identify_slots.slot(deadline)

    async def authenticate(self, token: str) -> TokenClaims:
        try:
            claims = await self.verifier.verify(token)
        except InvalidTokenError:
            raise ProtocolError(CloseCode.AUTHENTICATION_FAILED, "invalid token") from None
        if self.revocations.enabled and not self.broker.ready:
            raise _revocation_check_unavailable("broker unreachable")
        try:
            revoked = await self.revocations.is_revoked(claims)
        except RevocationCheckUnavailableError as error:
            raise _revocation_check_unavailable(str(error)) from None
        if revoked:
            raise ProtocolError(CloseCode.AUTHENTICATION_FAILED, "token revoked")
        return claims

    async def join(self, session: Session, claims: TokenClaims) -> None:
        if self.hub.sessions_of(claims.user_id) >= self.settings.max_sessions_per_user:
            raise ProtocolError(CloseCode.TOO_MANY_SESSIONS, "too many sessions for this user")
        self.hub.add(session, claims)
        metrics.SESSION_COUNTS.identified[claims.user_type] += 1
        if claims.user_type is UserType.FACTORY:
            await self.presence.factory_joined(claims.username)

    async def welcome(self, claims: TokenClaims, resume: ResumeData | None) -> Welcome:
        if claims.user_type is UserType.FACTORY:
            return await self._commands.welcome(claims.username, resume)
        # Taken once the session listens: what changes from now on follows READY.
        return Welcome(fields={"factories": self.presence.snapshot()})

    async def leave(self, session: Session, claims: TokenClaims) -> None:
        if self.hub.remove(session, claims):
            metrics.SESSION_COUNTS.identified[claims.user_type] -= 1
            if claims.user_type is UserType.FACTORY:
                self.presence.factory_left(claims.username)

    def publish_to_observers(self, dispatch: Dispatch, on_dropped: DropCallback) -> None:
        """A status is also kept as its factory's latest: by the script that publishes it
        (Redis) when presence says so, else by presence's next save."""
        channel = self.channels.observer_shard(dispatch.name)
        message = frames.pack(dispatch)
        status = glue.status_data(dispatch)
        if status is None:
            self.broker.publish(channel, message, on_dropped)
        elif self.broker.keeps_statuses and self.presence.keeps_with_publish(dispatch.name):
            self.broker.publish_status(channel, message, dispatch.name, on_dropped)
        else:
            self.broker.publish(channel, message, on_dropped)
            self.presence.status_sent(dispatch.name, status, dispatch.ts_ms)

    def publish_to_factories(
        self, stream: Stream, target: str | None, message: StreamMessage, on_dropped: DropCallback
    ) -> None:
        self.broker.append(self.channels.stream(stream, target), message, on_dropped)

    async def _fill_gaps(self) -> None:
        """After every (re)connect: what this replica missed while deaf."""
        self.presence.reseed()
        await self._commands.fill_gaps(self.hub)


def _revocation_check_unavailable(cause: str) -> ProtocolError:
    """Fail closed: without the revocation check no token is accepted (4000, retry)."""
    log.warning("revocation_check_unavailable", error=cause)
    return ProtocolError(CloseCode.UNKNOWN_ERROR, "revocation check unavailable, retry")


def replica_name() -> str:
    """How this replica names its Redis connections (`CLIENT LIST` shows which is whose)."""
    return f"relay:{socket.gethostname()}:{os.getpid()}"


def redis_client(settings: RelaySettings) -> RedisClient | None:
    """The replica's Redis connections (None without `REDIS_URL`: the in-process broker),
    to one server, to Sentinel's current master, or to a cluster (`shared.redis_connect`).

    No `socket_timeout`: redis-py bounds each write with `asyncio.wait_for` (a task per
    command on Python 3.11). Every caller bounds its whole call, retries included, with
    `asyncio.timeout` instead (`REDIS_TIMEOUT_SECONDS`); a cancelled command closes its
    connection, so nothing half-read is reused.
    """
    if settings.redis_url is None:
        return None
    return connect_redis(
        settings.redis_url,
        ClientOptions(
            connect_timeout_seconds=settings.redis_timeout_seconds,
            max_connections=REDIS_POOL_SIZE,
            pool_wait_seconds=REDIS_POOL_WAIT_SECONDS,
            keepalive=True,
            health_check_interval=10,
            client_name=replica_name(),
            # A pool built directly gets no retry; without one, the first command on each
            # connection left stale by a Redis restart (or a failover) fails.
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries=REDIS_RETRIES),
        ),
    )
