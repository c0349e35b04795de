"""One WebSocket connection: the protocol's state machine (SPEC section 1).

A session has one receiver (the connection's handler task, reading and validating
frames) and at most one sender (a task writing the session's bounded outbox to the
socket, started when a frame is queued and ended when the outbox is empty, so an idle
session holds no task); when the receiver ends, the sender is cancelled, and a sender
that fails closes the session. Everything a session sends goes through the
outbox, so the hub's fan-out never waits on this socket: past `SEND_QUEUE_LIMIT`
queued frames the session is closed with 4013.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import structlog
from websockets.exceptions import ConnectionClosed

from relay_service import metrics
from relay_service.channels import pack
from relay_service.connection import RelayConnection
from relay_service.rate_limit import TokenBucket
from shared.identity import UserType
from shared.logging import get_logger
from shared.protocol import (
    ClientFrame,
    CloseCode,
    IdentifyData,
    Op,
    ProtocolError,
    StatusData,
    TargetedData,
    decode_frame,
    dumps,
    event_name,
    heartbeat_sequence,
    parse_data,
)
from shared.tokens import InvalidTokenError, TokenClaims

if TYPE_CHECKING:
    from relay_service.main import Relay

log = get_logger(__name__)

SEND_BATCH = 64
"""Frames written to a socket in one system call, at most."""
HEARTBEAT_ACK = dumps({"op": Op.HEARTBEAT_ACK, "d": None})


class Session:
    def __init__(self, ws: RelayConnection, relay: Relay) -> None:
        self.session_id = uuid.uuid4().hex
        self._claims: TokenClaims | None = None
        self._ws = ws
        self._relay = relay
        self._settings = relay.settings
        self._bucket = TokenBucket(
            self._settings.rate_limit_per_second, self._settings.rate_limit_burst
        )
        self._outbox: deque[bytes] = deque()
        self._sequence = 0
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._sender_stamp: dict[str, str] = {}
        self._held: list[bytes] | None = None

    @property
    def claims(self) -> TokenClaims | None:
        return self._claims

    def _logger(self) -> structlog.stdlib.BoundLogger:
        """Bound to this session explicitly: the hub may close it from another's task.

        Built when needed (logging is rare) rather than kept: idle sessions are many.
        """
        if self._claims is None:
            return log.bind(session=self.session_id)
        return log.bind(
            session=self.session_id,
            user=self._claims.username,
            user_type=self._claims.user_type.value,
        )

    async def run(self) -> None:
        """Serve the connection until it closes, whoever closes it."""
        structlog.contextvars.bind_contextvars(session=self.session_id)
        metrics.SOCKETS.inc()
        try:
            await self._ws.send_texts([self._hello()])
            metrics.FRAMES_OUT[Op.HELLO].inc()
            await self._receive_forever()
        except ProtocolError as error:
            self.close_soon(error.code, error.reason)
        except ConnectionClosed:
            pass
        except Exception:
            self._logger().exception("session_failed")
            self.close_soon(CloseCode.UNKNOWN_ERROR, "internal error, reconnect")
        finally:
            await self._finish()

    def dispatch(self, prefix: bytes, body: bytes) -> None:
        """Queue a dispatch (ops 4-6), numbering it with this session's next `s`."""
        self._sequence += 1
        frame = b"%b%d,%b" % (prefix, self._sequence, body)
        if self._held is not None:
            self._held.append(frame)
        else:
            self._enqueue(frame)

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Close with `code` without waiting: callable from the hub's synchronous fan-out."""
        if self._closer is not None:
            return
        self._outbox.clear()
        if self._sender is not None:
            self._sender.cancel()
        self._logger().info("session_closing", code=int(code), reason=reason)
        self._closer = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: CloseCode, reason: str) -> None:
        """The closing handshake, bounded: a peer that stopped reading is dropped."""
        try:
            async with asyncio.timeout(self._ws.close_timeout):
                await self._ws.close(code, reason)
        except TimeoutError:
            self._ws.transport.abort()

    # -- receiving ----------------------------------------------------------------

    async def _receive_forever(self) -> None:
        loop = asyncio.get_running_loop()
        identify_deadline = loop.time() + self._settings.identify_timeout_ms / 1000
        liveness = self._settings.liveness_timeout_seconds
        while self._closer is None:
            deadline = loop.time() + liveness
            if self._claims is None:
                deadline = min(deadline, identify_deadline)
            try:
                async with asyncio.timeout_at(deadline):
                    raw = await self._ws.recv()
            except TimeoutError:
                reason = "no heartbeat in time" if self._claims else "no identify in time"
                raise ProtocolError(CloseCode.SESSION_TIMED_OUT, reason) from None
            if self._closer is not None:
                return
            await self._handle(raw)

    async def _handle(self, raw: str | bytes) -> None:
        if not isinstance(raw, str):
            raise ProtocolError(CloseCode.DECODE_ERROR, "binary frames are not accepted")
        if not self._bucket.take():
            raise ProtocolError(CloseCode.RATE_LIMITED, "too many frames")
        frame = decode_frame(raw)
        metrics.FRAMES_IN[frame.op].inc()
        if frame.op == Op.HEARTBEAT:
            heartbeat_sequence(frame.d)
            self._enqueue(HEARTBEAT_ACK)
            metrics.FRAMES_OUT[Op.HEARTBEAT_ACK].inc()
        elif frame.op == Op.IDENTIFY:
            await self._identify(frame)
        elif frame.op != Op.HEARTBEAT_ACK:
            self._relay_message(frame)

    async def _identify(self, frame: ClientFrame) -> None:
        if self._claims is not None:
            raise ProtocolError(CloseCode.ALREADY_AUTHENTICATED, "already identified")
        token = parse_data(IdentifyData, frame.d).token
        try:
            claims = await self._relay.verifier.verify(token)
        except InvalidTokenError:
            raise ProtocolError(CloseCode.AUTHENTICATION_FAILED, "invalid token") from None
        if await self._relay.is_revoked(claims):
            raise ProtocolError(CloseCode.AUTHENTICATION_FAILED, "token revoked")
        self._claims = claims
        self._sender_stamp = {
            "id": claims.user_id,
            "username": claims.username,
            "type": claims.user_type.value,
        }
        structlog.contextvars.bind_contextvars(
            user=claims.username, user_type=claims.user_type.value
        )
        self._sequence = 1
        self._held = []
        await self._relay.join(self, claims)
        self._release_ready()
        self._logger().info("session_identified")

    def _release_ready(self) -> None:
        """READY (s 1) once the audiences are subscribed, then what arrived meanwhile."""
        held, self._held = self._held or [], None
        self._enqueue(self._ready())
        metrics.FRAMES_OUT[Op.EVENT].inc()
        for frame in held:
            self._enqueue(frame)

    def _relay_message(self, frame: ClientFrame) -> None:
        claims = self._claims
        if claims is None:
            raise ProtocolError(CloseCode.NOT_AUTHENTICATED, "identify first")
        op = Op(frame.op)
        channel, data = self._route(op, claims.user_type, frame)
        ts_ms = int(time.time() * 1000)
        stamped = {
            "id": data.id or uuid.uuid4().hex,
            "from": self._sender_stamp,
            "target": getattr(data, "target", None),
            "payload": data.payload,
            "ts": ts_ms,
        }
        message: dict[str, Any] = {"t": frame.t, "d": stamped} if op == Op.EVENT else {"d": stamped}
        try:
            body = dumps(message)[1:]
        except TypeError as error:  # orjson: an integer beyond 64 bits, say
            raise ProtocolError(
                CloseCode.DECODE_ERROR, f"payload cannot be relayed: {error}"
            ) from None
        self._relay.publish(channel, pack(op, ts_ms, body))

    def _route(
        self, op: Op, user_type: UserType, frame: ClientFrame
    ) -> tuple[str, StatusData | TargetedData]:
        """Who may send what (SPEC's delivery table), and to which channel it goes."""
        channels = self._relay.channels
        if op == Op.STATUS:
            if user_type is not UserType.FACTORY:
                raise ProtocolError(CloseCode.NOT_AUTHORIZED, "only factories send statuses")
            return channels.observers, parse_data(StatusData, frame.d)
        if op == Op.COMMAND and not user_type.is_controller:
            raise ProtocolError(CloseCode.NOT_AUTHORIZED, "only operators and admins send commands")
        if op == Op.EVENT:
            if user_type is UserType.VIEWER:
                raise ProtocolError(CloseCode.NOT_AUTHORIZED, "viewers do not send events")
            event_name(frame)
        data = parse_data(TargetedData, frame.d)
        if user_type is UserType.FACTORY:
            if data.target is not None:
                raise ProtocolError(
                    CloseCode.DECODE_ERROR, "a factory's events go to every observer"
                )
            return channels.observers, data
        if data.target is None:
            return channels.factories, data
        return channels.factory(data.target), data

    # -- sending ------------------------------------------------------------------

    def _enqueue(self, frame: bytes) -> None:
        if self._closer is not None:
            return
        if len(self._outbox) >= self._settings.send_queue_limit:
            self.close_soon(CloseCode.TOO_SLOW, "outbound queue full")
            return
        self._outbox.append(frame)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_queued())
            self._sender.add_done_callback(self._on_sender_done)

    async def _send_queued(self) -> None:
        """Write the outbox in batches until it is empty, then end: idle sessions hold no task.

        `_sender` is cleared here, with no await between the empty check and the clearing,
        so a frame queued at any moment either is sent by this task or starts the next one.
        """
        outbox = self._outbox
        while outbox:
            batch = [outbox.popleft() for _ in range(min(len(outbox), SEND_BATCH))]
            await self._ws.send_texts(batch)
        self._sender = None

    def _on_sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        if isinstance(task.exception(), ConnectionClosed):
            return
        self._logger().error("sender_failed", exc_info=task.exception())
        self.close_soon(CloseCode.UNKNOWN_ERROR, "internal error")

    async def _finish(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        if self._closer is not None:
            await self._discard_until_closed()
            with suppress(ConnectionClosed, asyncio.CancelledError):
                await self._closer
        if self._claims is not None:
            await self._relay.leave(self, self._claims)
        metrics.SOCKETS.dec()
        self._count_close()

    async def _discard_until_closed(self) -> None:
        """Read past what the client still sends, so its close reply is heard promptly."""
        with suppress(ConnectionClosed):
            async for _ in self._ws:
                pass

    def _count_close(self) -> None:
        """Count the closes the server started, its own codes and websockets' (1009) alike."""
        protocol = self._ws.protocol
        if protocol.close_sent is not None and not protocol.close_rcvd_then_sent:
            metrics.CLOSES.labels(code=str(protocol.close_sent.code)).inc()

    # -- the server's own frames --------------------------------------------------

    def _hello(self) -> bytes:
        return dumps(
            {
                "op": Op.HELLO,
                "d": {
                    "heartbeat_interval": self._settings.heartbeat_interval_ms,
                    "session_id": self.session_id,
                },
            }
        )

    def _ready(self) -> bytes:
        return dumps(
            {
                "op": Op.EVENT,
                "t": "READY",
                "s": 1,
                "d": {"session_id": self.session_id, "user": self._sender_stamp},
            }
        )
