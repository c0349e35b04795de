"""One WebSocket connection: the protocol's state machine.

    CONNECTED ──Identify──▶ IDENTIFYING ──audiences joined──▶ IDENTIFIED ⟲ Refresh
        │                       │                                  │
        └───────────────────────┴──────── any close ──────────────┴──▶ CLOSING

A session lives until its token's `exp` (4004 "token expired") unless op 7 brought a
fresh token of the same user. One timer per session covers the heartbeat, the identify
timeout and the expiry while the session waits for a frame: a frame received only notes
the time, and the timer sets itself again when it fires early (at most once per liveness
timeout), so no timer per frame.

A session has one receiver (the connection's handler task, reading and validating
frames) and an `Outbox` for everything it sends, so the hub's fan-out never waits on this
socket. While IDENTIFYING, dispatches that arrive are held and queued after READY, which
is sent only once the broker confirmed the session's audiences. Once CLOSING, nothing
more is read, queued or relayed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import suppress
from enum import Enum
from functools import partial

import structlog
from websockets.exceptions import ConnectionClosed

from relay_service import frames, metrics
from relay_service.connection import RelayConnection
from relay_service.frames import NOT_KEPT, NUMBERED, PREFIXES, Dispatch
from relay_service.host import SessionHost, Welcome
from relay_service.outbox import Outbox
from relay_service.rate_limit import TokenBucket
from relay_service.routing import route
from relay_service.stamping import ToObservers, stamp
from shared.clock import now_ms
from shared.logging import enabled, get_logger
from shared.protocol import (
    ClientFrame,
    CloseCode,
    IdentifyData,
    Op,
    ProtocolError,
    RefreshData,
    decode_frame,
    heartbeat_sequence,
    is_plain_heartbeat,
    parse_data,
)
from shared.tokens import TokenClaims

log = get_logger(__name__)


class State(Enum):
    CONNECTED = "connected"
    IDENTIFYING = "identifying"
    IDENTIFIED = "identified"
    CLOSING = "closing"


class Session:
    __slots__ = (
        "_bucket",
        "_claims",
        "_close_code",
        "_closer",
        "_ends_at",
        "_floors",
        "_held",
        "_host",
        "_outbox",
        "_receiving",
        "_sender_stamp",
        "_sequence",
        "_settings",
        "_waiting_since",
        "_watchdog",
        "_ws",
        "output_limit_bytes",
        "session_id",
        "state",
    )

    def __init__(self, ws: RelayConnection, host: SessionHost) -> None:
        self.session_id = uuid.uuid4().hex
        self.state = State.CONNECTED
        self._claims: TokenClaims | None = None
        self._ws = ws
        self._host = host
        self._settings = host.settings
        self._bucket = TokenBucket(
            self._settings.rate_limit_per_second, self._settings.rate_limit_burst
        )
        self.output_limit_bytes = self._settings.send_queue_limit_bytes
        self._outbox = Outbox(
            ws,
            limit=self._settings.send_queue_limit,
            limit_bytes=self.output_limit_bytes,
            on_failure=self._on_send_failure,
        )
        self._sequence = 0
        self._closer: asyncio.Task[None] | None = None
        self._close_code: CloseCode | None = None
        self._sender_stamp: dict[str, str] = {}
        self._held: list[Dispatch] | None = None
        self._floors: dict[bytes, tuple[str, int]] | None = None
        """Per stream (factories only), until a live message passes it: the last message
        the session has (READY's cursor, or a replay's last), so a message that a resume
        or a gap's filling delivered already is not delivered again."""
        self._ends_at = 0.0
        self._waiting_since = 0.0
        """Loop time at which the receive loop last began to wait for a frame."""
        self._receiving = False
        self._watchdog: asyncio.TimerHandle | None = None
        """Loop time at which the session ends: the identify deadline, then token expiry."""

    @property
    def claims(self) -> TokenClaims | None:
        return self._claims

    @property
    def closing(self) -> bool:
        """Asked through a property: the state changes across awaits, which mypy cannot see."""
        return self.state is State.CLOSING

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
        metrics.SESSION_COUNTS.sockets += 1
        self._ws.guard = self
        try:
            self._send(frames.hello(self._settings.heartbeat_interval_ms, self.session_id))
            metrics.FRAMES_OUT[Op.HELLO] += 1
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

    def dispatch(self, dispatch: Dispatch) -> None:
        """Queue a dispatch (ops 4-6), numbering it with this session's next `s`; a stream's
        message the session already has (under its floor) is skipped.

        The fan-out's hot path: one call per delivery, so the state is compared here
        directly rather than through `closing` and `_send`."""
        if self.state is not State.IDENTIFIED:
            if self._held is not None:  # identifying: numbered and queued after READY
                self._held.append(dispatch)
            return
        floors = self._floors  # a factory's until live messages passed both streams' floors
        if floors is not None and dispatch.stream in floors and self._has(dispatch, floors):
            return
        self._sequence += 1
        frame = NUMBERED % (PREFIXES[dispatch.op], self._sequence, dispatch.body)
        if not self._outbox.put(frame):
            self.close_soon(CloseCode.TOO_SLOW, "outbound queue full")

    def _has(self, dispatch: Dispatch, floors: dict[bytes, tuple[str, int]]) -> bool:
        """Whether `dispatch` is at or under its stream's floor. Each stream's messages
        come in offset order: once one passes the floor, no later one can be under it."""
        floor = floors[dispatch.stream]
        if floor[0] == dispatch.epoch and dispatch.offset <= floor[1]:
            return True
        del floors[dispatch.stream]
        if not floors:
            self._floors = None
        return False

    def floor(self, stream: bytes) -> tuple[str, int] | None:
        """The last message of `stream` this session has, while no live one passed it."""
        return None if self._floors is None else self._floors.get(stream)

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Close with `code` without waiting: callable from the hub's synchronous fan-out."""
        if self.closing:
            return
        self.state = State.CLOSING
        self._close_code = code
        self._held = None
        self._outbox.discard()
        self._logger().info("session_closing", code=int(code), reason=reason)
        self._closer = asyncio.create_task(self._ws.close_bounded(code, reason))

    # -- receiving ----------------------------------------------------------------

    async def _receive_forever(self) -> None:
        loop = asyncio.get_running_loop()
        self._ends_at = loop.time() + self._settings.identify_timeout_ms / 1000
        try:
            while not self.closing:
                now = self._waiting_since = loop.time()
                if now >= self._ends_at:  # passed while the last frame was handled
                    raise self._timed_out(hard_deadline=True)
                if self._watchdog is None:
                    self._watch(loop)
                self._receiving = True
                try:
                    raw = await self._ws.recv()
                finally:
                    self._receiving = False
                if self.closing:
                    return
                if not self._answered_heartbeat(raw):
                    await self._handle(raw)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        alive_until = self._waiting_since + self._settings.liveness_timeout_seconds
        self._watchdog = loop.call_at(min(alive_until, self._ends_at), self._on_watchdog)

    def _on_watchdog(self) -> None:
        """The session's one timer, at the earlier of the liveness deadline (counted from
        when the receive loop last began to wait) and `_ends_at`. While a frame is being
        handled the deadlines wait (the loop checks them before it waits again); past one,
        the session closes; else the timer is set again."""
        self._watchdog = None
        if not self._receiving:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if (
            now >= self._ends_at
            or now >= self._waiting_since + self._settings.liveness_timeout_seconds
        ):
            error = self._timed_out(hard_deadline=now >= self._ends_at)
            self.close_soon(error.code, error.reason)
        else:
            self._watch(loop)

    def _timed_out(self, *, hard_deadline: bool) -> ProtocolError:
        """Heartbeats keep a session alive; neither they nor anything else extend the
        identify deadline or the token's expiry (only a refresh does)."""
        if not hard_deadline:
            return ProtocolError(CloseCode.SESSION_TIMED_OUT, "no heartbeat in time")
        if self._claims is None:
            return ProtocolError(CloseCode.SESSION_TIMED_OUT, "no identify in time")
        return ProtocolError(CloseCode.AUTHENTICATION_FAILED, "token expired")

    def _end_with(self, claims: TokenClaims) -> None:
        """From now on the session ends when this token expires."""
        loop_now, wall_now = asyncio.get_running_loop().time(), time.time()
        self._ends_at = loop_now + max(0.0, claims.expires_at - wall_now)
        if self._watchdog is not None:  # the expiry may come before the timer's time
            self._watchdog.cancel()
            self._watchdog = None  # set again when the receive loop next waits

    def _answered_heartbeat(self, raw: str | bytes) -> bool:
        """The most frequent frame, in its usual spelling, answered in the receive loop
        itself (no coroutine for `_handle`); False for any other frame, left to `_handle`."""
        if type(raw) is not str or not is_plain_heartbeat(raw):
            return False
        if not self._bucket.take():
            raise ProtocolError(CloseCode.RATE_LIMITED, "too many frames")
        metrics.FRAMES_IN[Op.HEARTBEAT] += 1
        self._acknowledge_heartbeat()
        return True

    async def _handle(self, raw: str | bytes) -> None:
        if not isinstance(raw, str):
            raise ProtocolError(CloseCode.DECODE_ERROR, "binary frames are not accepted")
        if not self._bucket.take():
            raise ProtocolError(CloseCode.RATE_LIMITED, "too many frames")
        frame = decode_frame(raw)
        metrics.FRAMES_IN[frame.op] += 1
        if frame.op == Op.HEARTBEAT:
            heartbeat_sequence(frame.d)
            self._acknowledge_heartbeat()
        elif frame.op == Op.HEARTBEAT_ACK:
            heartbeat_sequence(frame.d)
        elif frame.op == Op.IDENTIFY:
            await self._identify(frame)
        elif frame.op == Op.REFRESH:
            await self._refresh(frame)
        else:
            self._relay_message(frame)

    def _acknowledge_heartbeat(self) -> None:
        """Both callers run right after the receive loop checked `closing`: the ACK goes
        straight to the outbox (`_send` without its check)."""
        if not self._outbox.send_now(frames.HEARTBEAT_ACK):
            self.close_soon(CloseCode.TOO_SLOW, "outbound queue full")
        metrics.FRAMES_OUT[Op.HEARTBEAT_ACK] += 1

    async def _identify(self, frame: ClientFrame) -> None:
        if self.state is not State.CONNECTED:
            raise ProtocolError(CloseCode.ALREADY_AUTHENTICATED, "already identified")
        identify = parse_data(IdentifyData, frame.d)
        async with self._host.identify_slot(self._ends_at):
            await self._identify_in_slot(identify)

    async def _identify_in_slot(self, identify: IdentifyData) -> None:
        claims = await self._host.authenticate(identify.token)
        if self.closing:
            return
        self._claims = claims
        self._end_with(claims)
        self._sender_stamp = {
            "id": claims.user_id,
            "username": claims.username,
            "type": claims.user_type.value,
        }
        structlog.contextvars.bind_contextvars(
            user=claims.username, user_type=claims.user_type.value
        )
        self.state = State.IDENTIFYING
        self._held = []
        self._sequence = 1
        await self._host.join(self, claims)
        if self.state is not State.IDENTIFYING:
            return
        welcome = await self._host.welcome(claims, identify.resume)
        if self.state is State.IDENTIFYING:
            self._release_ready(welcome)
            if enabled(logging.INFO):
                self._logger().info("session_identified", **welcome.log)

    def _release_ready(self, welcome: Welcome) -> None:
        """READY (s 1) with what the relay adds for this user (cursors, presence), then a
        resume's replay, then what arrived meanwhile: each stream's messages in order, once."""
        held, self._held = self._held or [], None
        self.state = State.IDENTIFIED
        self._ws.allow_messages_up_to(self._settings.max_message_bytes)
        self._send(frames.ready(self.session_id, self._sender_stamp, welcome.fields))
        metrics.FRAMES_OUT[Op.EVENT] += 1
        now = now_ms()
        floors = dict(welcome.cursors)
        for dispatch in welcome.replay:
            if dispatch.expires_at > now:
                self.dispatch(dispatch)
            floors[dispatch.stream] = (dispatch.epoch, dispatch.offset)
        self._floors = floors or None
        for dispatch in held:
            if dispatch.stream == NOT_KEPT or dispatch.expires_at > now:
                self.dispatch(dispatch)

    async def _refresh(self, frame: ClientFrame) -> None:
        """Op 7: a fresh token of the same user extends the session; REFRESHED answers."""
        if self.state is not State.IDENTIFIED:
            raise ProtocolError(CloseCode.NOT_AUTHENTICATED, "identify first")
        token = parse_data(RefreshData, frame.d).token
        try:
            claims = await self._host.authenticate(token)
        except ProtocolError as error:
            if error.code != CloseCode.UNKNOWN_ERROR:
                raise
            # The revocation check cannot run (Redis is down): the session goes on with
            # its current token, and the client, hearing no REFRESHED, tries again.
            self._logger().warning("refresh_deferred", reason=error.reason)
            return
        current = self._claims
        assert current is not None
        if (claims.user_id, claims.user_type) != (current.user_id, current.user_type):
            raise ProtocolError(CloseCode.AUTHENTICATION_FAILED, "the token is another user's")
        if self.closing:
            return
        self._claims = claims
        self._end_with(claims)
        self._send_event("REFRESHED", {"exp": int(claims.expires_at)})

    def _relay_message(self, frame: ClientFrame) -> None:
        if self.state is not State.IDENTIFIED:
            raise ProtocolError(CloseCode.NOT_AUTHENTICATED, "identify first")
        assert self._claims is not None
        routed = route(frame, self._claims.user_type, ttl_max_ms=self._settings.command_ttl_max_ms)
        stamped = stamp(
            routed, frame.t, self._sender_stamp, default_ttl_ms=self._settings.command_ttl_ms
        )
        on_dropped = partial(self._delivery_failed, stamped.message_id)
        if isinstance(stamped, ToObservers):
            self._host.publish_to_observers(stamped.dispatch, on_dropped)
        else:
            _, stream, target, message = stamped
            self._host.publish_to_factories(stream, target, message, on_dropped)

    def _delivery_failed(self, message_id: str, reason: str) -> None:
        """The relay could not take this sender's message: say so, it is not delivered later."""
        if self.state is State.IDENTIFIED:
            self._send_event("DELIVERY_FAILED", {"id": message_id, "reason": reason})

    # -- sending ------------------------------------------------------------------

    def _send_event(self, name: str, data: dict[str, object]) -> None:
        self._sequence += 1
        self._send(frames.server_event(name, self._sequence, data))
        metrics.FRAMES_OUT[Op.EVENT] += 1

    def _send(self, frame: bytes) -> None:
        """Written on the spot when the socket takes it (a reply: nothing to batch with)."""
        if self.closing:
            return
        if not self._outbox.send_now(frame):
            self.close_soon(CloseCode.TOO_SLOW, "outbound queue full")

    # -- the connection's guard: control frames and unsent output -------------------

    def control_frame_received(self) -> None:
        """A ping (answered by websockets itself) costs a token like any frame."""
        if not self._bucket.take():
            self.close_soon(CloseCode.RATE_LIMITED, "too many frames")

    def output_overflowed(self, buffered_bytes: int) -> None:
        self.close_soon(CloseCode.TOO_SLOW, "unsent output over its limit")

    def _on_send_failure(self, error: BaseException) -> None:
        self._logger().error("sender_failed", exc_info=error)
        self.close_soon(CloseCode.UNKNOWN_ERROR, "internal error")

    async def _finish(self) -> None:
        self._ws.guard = None
        self._outbox.discard()
        if self._closer is not None:
            await self._ws.read_until_closed()
            with suppress(ConnectionClosed, asyncio.CancelledError):
                await self._closer
        if self._claims is not None:
            await self._host.leave(self, self._claims)
        metrics.SESSION_COUNTS.sockets -= 1
        # The closes the server started: the session's own (even when the close frame
        # could not reach a peer that stopped reading) and websockets' (1009).
        code = self._close_code or self._ws.close_started_by_websockets()
        if code is not None:
            metrics.CLOSES.labels(code=str(int(code))).inc()
