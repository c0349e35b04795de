"""The relay: one WebSocket endpoint (`/ws`) and its operational HTTP endpoints.

Built directly on the `websockets` server rather than an ASGI stack: the fan-out hot path
is a bytes concatenation and a socket write per delivery, and every layer between the two
would cost more than the work itself.
"""

from __future__ import annotations

import asyncio
import http
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Origin

from relay_service import metrics
from relay_service.broker import broker_for
from relay_service.channels import Channels
from relay_service.config import RelaySettings
from relay_service.connection import RelayConnection
from relay_service.hub import Hub
from relay_service.session import Session
from shared.logging import get_logger
from shared.protocol import CloseCode
from shared.revocation import RedisRevocations
from shared.tokens import TokenClaims, TokenVerifier

log = get_logger(__name__)

WEBSOCKET_PATH = "/ws"
REDIS_POOL_SIZE = 32
"""Connections for Identify's revocation checks and publishing; callers wait for a free one."""
REDIS_POOL_WAIT_SECONDS = 5


class Relay:
    """Owns the broker, the hub and the token checks; serves connections."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.channels = Channels(settings.redis_prefix)
        self.hub = Hub(self.channels)
        self.verifier = TokenVerifier.from_settings(settings)
        self._redis = _redis_client(settings)
        self._revocations = (
            None
            if self._redis is None
            else RedisRevocations(
                self._redis,
                prefix=settings.redis_prefix,
                token_ttl_seconds=settings.access_token_ttl_seconds,
            )
        )
        self.broker = broker_for(settings, self._redis, self.hub.deliver)
        self.draining = False

    # -- what sessions use --------------------------------------------------------

    def publish(self, channel: str, message: bytes) -> None:
        self.broker.publish(channel, message)

    async def is_revoked(self, claims: TokenClaims) -> bool:
        """Revoked in Redis, or by an event heard while asking (checked after the await)."""
        revoked = self._revocations is not None and await self._revocations.is_revoked(claims)
        return revoked or self.hub.was_revoked_recently(claims)

    async def join(self, session: Session, claims: TokenClaims) -> None:
        for channel in self.hub.add(session, claims):
            await self.broker.subscribe(channel)
        metrics.CONNECTIONS.labels(type=claims.user_type.value).inc()

    async def leave(self, session: Session, claims: TokenClaims) -> None:
        metrics.CONNECTIONS.labels(type=claims.user_type.value).dec()
        for channel in self.hub.remove(session, claims):
            await self.broker.unsubscribe(channel)

    # -- serving ------------------------------------------------------------------

    async def handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, RelayConnection)
        await Session(connection, self).run()

    def route_http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer the HTTP endpoints; let only `/ws` go on to the WebSocket handshake."""
        path = request.path.partition("?")[0]
        if path == WEBSOCKET_PATH:
            return None
        if path == "/healthz":
            return _json(connection, http.HTTPStatus.OK, {"status": "ok"})
        if path == "/readyz":
            return self._readiness(connection)
        if path == "/metrics":
            response = connection.respond(http.HTTPStatus.OK, "")
            response.body = generate_latest()
            _set_content_type(response.headers, CONTENT_TYPE_LATEST)
            return response
        return _json(connection, http.HTTPStatus.NOT_FOUND, {"detail": "not found"})

    def _readiness(self, connection: ServerConnection) -> Response:
        if self.draining:
            return _json(
                connection, http.HTTPStatus.SERVICE_UNAVAILABLE, {"detail": "shutting down"}
            )
        if not self.broker.ready:
            return _json(
                connection, http.HTTPStatus.SERVICE_UNAVAILABLE, {"detail": "broker unreachable"}
            )
        return _json(connection, http.HTTPStatus.OK, {"status": "ready"})

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Server]:
        """Connect the broker, listen, and on exit drain: every session gets 1012."""
        await self.verifier.start()  # with JWKS_URL: the first fetch (retried in the background)
        await self.broker.connect()
        if self._revocations is not None:
            await self.broker.subscribe(self.channels.revocations)
        server = await serve(
            self.handle,
            self.settings.host,
            self.settings.port,
            process_request=self.route_http,
            origins=[*map(Origin, self.settings.cors_origins), None],
            max_size=self.settings.max_message_bytes,
            compression=None,
            ping_interval=None,
            close_timeout=2,
            server_header=None,
            create_connection=RelayConnection,
        )
        log.info("relay_listening", host=self.settings.host, port=self.settings.port)
        try:
            yield server
        finally:
            await self._drain(server)

    async def _drain(self, server: Server) -> None:
        self.draining = True
        sessions = len(self.hub)
        log.info("relay_draining", sessions=sessions)
        server.close(
            close_connections=True, code=CloseCode.SERVICE_RESTART, reason="replica shutting down"
        )
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout_seconds):
                await server.wait_closed()
        except TimeoutError:
            log.warning("drain_timed_out", remaining=len(self.hub))
        await self.broker.disconnect()
        await self.verifier.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        log.info("relay_stopped", closed_sessions=sessions)


async def serve_until_stopped(settings: RelaySettings) -> None:
    """Run the relay until SIGTERM or SIGINT, then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    relay = Relay(settings)
    async with relay.running():
        await stop.wait()


def _redis_client(settings: RelaySettings) -> Redis | None:
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


def _json(connection: ServerConnection, status: http.HTTPStatus, body: object) -> Response:
    response = connection.respond(status, "")
    response.body = orjson.dumps(body)
    _set_content_type(response.headers, "application/json")
    return response


def _set_content_type(headers: Headers, value: str) -> None:
    with suppress(KeyError):
        del headers["Content-Type"]
    headers["Content-Type"] = value
    with suppress(KeyError):
        del headers["Content-Length"]
