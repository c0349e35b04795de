"""The relay client: one long-lived session that survives restarts of the relay.

It identifies, heartbeats on the server's interval (the first beat at a random point of
the first interval, so clients connected together don't beat together), treats a missing
ACK between two beats as a dead connection, and reconnects as the close-code table says
(`relay_client.policy`): with backoff and jitter, at once on 1012, with a new token on
4004, never on the codes that mean the client is wrong. A few minutes before its token
expires it gets a fresh one (from its credentials or token provider) and sends it on the
live session (op 7), so the session never ends with its token.

A factory's client keeps its place in the relay's command streams (`relay_client.resume`):
it resumes from the last cursor received on every reconnect, drops a dispatch it already
has and one past its `expires_at`, and with a `state_file` keeps, across its own
restarts, the cursor of the last message the application finished with
(`relay_client.state`). An observer's client keeps the factories' presence
(`relay_client.presence`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from relay_client.auth import LoginRefusedError, LoginUnavailableError, login
from relay_client.backoff import Backoff
from relay_client.cursors import Cursor, parse_cursors
from relay_client.messages import Message, Sender
from relay_client.policy import Reconnect, reconnect_policy
from relay_client.presence import FactoryPresence, PresenceBook
from relay_client.resume import StreamKeeper
from relay_client.state import DEFAULT_REMEMBERED_IDS, ClientState
from shared.logging import get_logger
from shared.protocol import DISPATCH_OPS, RESERVED_EVENT_NAMES, Op

log = get_logger(__name__)

TokenProvider = Callable[[], Awaitable[str]]
PresenceListener = Callable[[FactoryPresence], None]
CLOSE_TIMEOUT_SECONDS = 2.0
REFRESH_MARGIN_SECONDS = 300.0
"""Refresh this long before the token expires, or a quarter of its life if that is shorter."""
REFRESH_RETRY_SECONDS = 10.0
SERVER_EVENTS = RESERVED_EVENT_NAMES
"""Events of the server's own (READY, REFRESHED, DELIVERY_FAILED, …): handled here, never
yielded as a message from another user."""
DEFAULT_CLOCK_SKEW_MS = 2_000
"""How far past its `expires_at` a dispatch is still taken: clocks are only nearly in step."""
FACTORY = "factory"
QUEUE_POLL_SECONDS = 0.1


def refresh_delay(token: str, now: float) -> float:
    """Seconds until the session should send a fresh token (0: at once).

    The client reads its own token's `iat` and `exp` without verifying it: only the
    servers decide what a token is worth; this is when to ask for the next one.
    """
    claims = jwt.decode(token, options={"verify_signature": False})
    issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
    margin = min(REFRESH_MARGIN_SECONDS, (expires_at - issued_at) / 4)
    return max(0.0, expires_at - margin - now)


class ClientStoppedError(Exception):
    """The client stopped for good: the server said the client is wrong, or no token."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class _ZombieConnectionError(Exception):
    """No Heartbeat ACK arrived between two beats."""


class _QueueFullError(Exception):
    """The application left `queue_size` messages unread: this session ends before taking
    another, and the reconnect resumes from the last message taken (nothing is lost)."""


class RelayClient:
    """Connect with a `token`, a `token_provider`, or `username`/`password` and `auth_url`.

    Factories: `state_file` keeps the cursors (and `remembered_ids` executed command ids)
    across restarts; a dispatch more than `clock_skew_ms` past its `expires_at` is
    dropped, unless `deliver_expired` (then the application answers it, see `expired`).
    Observers: `factories` is the presence of every factory; `on_presence` is called
    with each entry that changed.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        auth_url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        backoff: Backoff | None = None,
        queue_size: int = 10_000,
        state_file: str | Path | None = None,
        remembered_ids: int = DEFAULT_REMEMBERED_IDS,
        clock_skew_ms: int = DEFAULT_CLOCK_SKEW_MS,
        deliver_expired: bool = False,
        on_presence: PresenceListener | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._token_provider = token_provider or _credentials_provider(auth_url, username, password)
        self._backoff = backoff or Backoff()
        self._messages: asyncio.Queue[Message | ClientStoppedError] = asyncio.Queue(queue_size)
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()
        self._stopped: ClientStoppedError | None = None
        self._runner: asyncio.Task[None] | None = None
        self._last_sequence: int | None = None
        self._acked = True
        self._refreshed = asyncio.Event()
        self._retry_after: float | None = None
        self.user: Sender | None = None
        self.session_id: str | None = None
        self.sessions_opened = 0
        self._streams = StreamKeeper(
            None if state_file is None else Path(state_file),
            remembered_ids,
            clock_skew_ms,
            deliver_expired,
        )
        self._presence = PresenceBook()
        self._on_presence = on_presence

    async def __aenter__(self) -> RelayClient:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, and return once the first session is READY (wrap in asyncio.timeout)."""
        self._runner = asyncio.create_task(self._run_forever(), name="relay-client")
        await self.wait_ready()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._ready.clear()

    async def wait_ready(self) -> None:
        """Wait for a READY session; raises ClientStoppedError if the client gave up."""
        while not self._ready.is_set():
            if self._stopped is not None:
                raise self._stopped
            waiter = asyncio.create_task(self._ready.wait())
            runner = self._runner
            pending = {waiter} if runner is None else {waiter, runner}
            try:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        if self._stopped is not None:
            raise self._stopped

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def cursors(self) -> dict[str, Cursor]:
        """Per stream, the last cursor received: what the next reconnect resumes from."""
        return self._streams.received.snapshot()

    @property
    def state(self) -> ClientState:
        """Per stream, the cursor of the last message the application finished with, and
        the ids of the commands it executed: what `state_file` keeps."""
        return self._streams.state

    @property
    def factories(self) -> dict[str, FactoryPresence]:
        """Observers: every factory the relay reported, by username (a copy)."""
        return dict(self._presence.factories)

    def expired(self, message: Message, now_ms: int | None = None) -> bool:
        """Whether `message` is past its `expires_at` (plus the allowed clock skew).

        Check it again right before acting: a message can expire while it waits.
        """
        return self._streams.expired(message, now_ms)

    async def commit(self, message: Message) -> None:
        """The application is done with `message` (acted on it, or refused it).

        A restart resumes after the last message committed. With a `state_file`, the
        file is written before this returns: commit after acting, before acknowledging.
        Iterating the client commits each message when the next one is asked for.
        """
        await self._streams.commit(message)

    async def remember_executed(self, message_id: str) -> None:
        """Remember a command's id as executed (`state.executed`; saved before this returns),
        so that the command is not executed again when it comes twice, even after a restart.
        """
        await self._streams.remember_executed(message_id)

    # -- sending ------------------------------------------------------------------

    async def send_command(
        self,
        payload: Any,
        *,
        target: str | None = None,
        id: str | None = None,
        ttl_ms: int | None = None,
    ) -> None:
        """Op 4 (operators, admins): to every factory, or only to `target`; it expires
        `ttl_ms` after the relay stamps it (the relay's default if not given)."""
        await self._send(Op.COMMAND, _data(payload, target=target, id=id, ttl_ms=ttl_ms))

    async def send_status(self, payload: Any, *, id: str | None = None) -> None:
        """Op 5 (factories): to every admin, operator and viewer."""
        await self._send(Op.STATUS, _data(payload, id=id))

    async def send_event(
        self,
        name: str,
        payload: Any,
        *,
        target: str | None = None,
        id: str | None = None,
        ttl_ms: int | None = None,
    ) -> None:
        """Op 6: a factory's goes to every observer; an operator's to factories (then
        `ttl_ms` as for a command)."""
        data = _data(payload, target=target, id=id, ttl_ms=ttl_ms)
        await self._send(Op.EVENT, data, name=name)

    async def _send(self, op: Op, data: dict[str, Any], name: str | None = None) -> None:
        """Send on the current session, waiting for one if the client is reconnecting."""
        await self.wait_ready()
        frame: dict[str, Any] = {"op": op, "d": data}
        if name is not None:
            frame["t"] = name
        assert self._ws is not None
        await self._ws.send(orjson.dumps(frame), text=True)

    # -- receiving ----------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            item = await self._messages.get()
            if isinstance(item, ClientStoppedError):
                raise item
            yield item
            await self.commit(item)  # the application asked for the next: done with this one

    # -- the connection loop --------------------------------------------------------

    async def _run_forever(self) -> None:
        while True:
            try:
                code = await self._one_session()
            except LoginRefusedError as refused:  # retrying would keep the account throttled
                self._stop(ClientStoppedError(str(refused)), cause=refused)
                return
            policy = reconnect_policy(code)
            if policy is Reconnect.NEVER:
                self._stop(ClientStoppedError(f"closed with {code}: fix the client", code))
                return
            if policy is Reconnect.WITH_NEW_TOKEN:
                if self._token_provider is None:
                    self._stop(ClientStoppedError("token refused and no way to get another", code))
                    return
                self._token = None
            delay = self._backoff.next_delay(at_once=policy is Reconnect.AT_ONCE)
            delay, self._retry_after = max(delay, self._retry_after or 0.0), None
            log.info("relay_reconnecting", close_code=code, delay=round(delay, 2))
            await asyncio.sleep(delay)
            while self._messages.full():  # noqa: ASYNC110 — a Queue has no "not full" event
                await asyncio.sleep(QUEUE_POLL_SECONDS)  # the application reads first

    async def _one_session(self) -> int | None:
        """Run one connection to its end; returns the server's close code, if any."""
        try:
            token = await self._current_token()
            async with connect(
                self._url, compression=None, ping_interval=None, close_timeout=CLOSE_TIMEOUT_SECONDS
            ) as ws:
                await self._serve(ws, token)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
        except (
            OSError,
            InvalidHandshake,
            TimeoutError,
            _ZombieConnectionError,
            _QueueFullError,
        ) as error:
            log.warning("relay_connection_failed", error=repr(error))
        except LoginUnavailableError as error:
            log.warning("relay_login_failed", error=str(error), retry_after=error.retry_after)
            self._retry_after = error.retry_after
        except LoginRefusedError:
            raise
        except Exception as error:  # from a caller's token provider, say: retry with backoff
            log.warning("relay_session_failed", error=repr(error))
        finally:
            self._ready.clear()
            self._ws = None
        return None

    async def _serve(self, ws: ClientConnection, token: str) -> None:
        hello = orjson.loads(await ws.recv())
        interval = hello["d"]["heartbeat_interval"] / 1000
        await self._streams.load(_username(token))
        await ws.send(orjson.dumps({"op": Op.IDENTIFY, "d": self._identify(token)}), text=True)
        ready = orjson.loads(await ws.recv())
        self._on_ready(ws, ready)
        await self._streams.save()  # where a restart resumes, before anything is handed over
        self._ready.set()
        heart = asyncio.create_task(self._beat(ws, interval))
        refresher = asyncio.create_task(self._refresh_before_expiry(ws))
        try:
            async for raw in ws:
                self._on_frame(orjson.loads(raw))
                if heart.done():
                    heart.result()
        finally:
            for task in (heart, refresher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, _ZombieConnectionError):
                    await task
        if heart.done() and not heart.cancelled() and heart.exception():
            raise _ZombieConnectionError

    def _identify(self, token: str) -> dict[str, Any]:
        """Identify's `d`: a factory adds the cursors it resumes from (if it has any)."""
        identify: dict[str, Any] = {"token": token}
        resume = self._streams.received.resume()
        if resume and _unverified_claims(token).get("type") == FACTORY:
            identify["resume"] = resume
        return identify

    def _on_ready(self, ws: ClientConnection, ready: dict[str, Any]) -> None:
        self.user = Sender(**ready["d"]["user"])
        self.session_id = ready["d"]["session_id"]
        cursors = parse_cursors(ready["d"].get("cursors"))
        if cursors:
            self._streams.start(cursors, ready["d"].get("resumed"))
        if "factories" in ready["d"]:
            self._notify(self._presence.snapshot(ready["d"]["factories"]))
        self._last_sequence = ready.get("s")
        self._ws = ws
        self._acked = True
        self.sessions_opened += 1
        self._backoff.reset()

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame["op"] == Op.HEARTBEAT_ACK:
            self._acked = True
            self._streams.replay_done()
            return
        self._last_sequence = frame.get("s", self._last_sequence)
        if frame.get("t") in SERVER_EVENTS:
            self._on_server_event(frame["t"], frame["d"])
        elif frame["op"] in DISPATCH_OPS:
            if self._messages.full():
                raise _QueueFullError(f"{self._messages.maxsize} messages unread")
            message = Message.from_frame(frame)
            if message.op == Op.STATUS:
                self._notify([self._presence.status(message.sender.username, frame["d"])])
            if self._streams.admit(message):
                self._messages.put_nowait(message)

    def _notify(self, changed: list[FactoryPresence]) -> None:
        if self._on_presence is None:
            return
        for entry in changed:
            try:
                self._on_presence(entry)
            except Exception as error:  # the application's listener: never the connection's end
                log.warning("relay_presence_listener_failed", error=repr(error))

    def _on_server_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "PRESENCE_UPDATE":
            changed = self._presence.update(data)
            self._notify([] if changed is None else [changed])
        elif name == "REFRESHED":
            self._refreshed.set()
            log.info("relay_session_refreshed", expires_at=data.get("exp"))
        elif name == "DELIVERY_FAILED":
            log.warning("relay_delivery_failed", id=data.get("id"), reason=data.get("reason"))

    async def _refresh_before_expiry(self, ws: ClientConnection) -> None:
        """Send a fresh token on this session a few minutes before the current one expires.

        If no fresh token can be had in time, the server closes the session with 4004 at
        `exp` and the reconnect asks for a new token as usual.
        """
        session_token = self._token
        while session_token is not None and self._token_provider is not None:
            try:
                delay = refresh_delay(session_token, time.time())
            except (jwt.PyJWTError, KeyError, TypeError, ValueError) as error:
                log.warning("relay_refresh_impossible", error=repr(error))
                return
            await asyncio.sleep(delay)
            try:
                token = await self._token_provider()
            except LoginRefusedError as error:  # no retry: the reconnect at exp will stop
                log.warning("relay_refresh_refused", error=str(error))
                return
            except Exception as error:  # the auth service is down, say: try again soon
                log.warning("relay_refresh_failed", error=repr(error))
                retry_after = 0.0
                if isinstance(error, LoginUnavailableError) and error.retry_after is not None:
                    retry_after = error.retry_after
                await asyncio.sleep(max(REFRESH_RETRY_SECONDS, retry_after))
                continue
            self._token = token
            self._refreshed.clear()
            await ws.send(orjson.dumps({"op": Op.REFRESH, "d": {"token": token}}), text=True)
            try:
                async with asyncio.timeout(REFRESH_RETRY_SECONDS):
                    await self._refreshed.wait()
            except TimeoutError:  # not taken (the server could not check it): try again
                log.warning("relay_refresh_unanswered")
            else:
                session_token = token

    async def _beat(self, ws: ClientConnection, interval: float) -> None:
        await asyncio.sleep(interval * random.random())  # noqa: S311 — first-beat jitter
        while True:
            if not self._acked:
                log.warning("relay_zombie_connection")
                await ws.close()
                raise _ZombieConnectionError
            self._acked = False
            await ws.send(orjson.dumps({"op": Op.HEARTBEAT, "d": self._last_sequence}), text=True)
            await asyncio.sleep(interval)

    async def _current_token(self) -> str:
        if self._token is None:
            if self._token_provider is None:
                raise ClientStoppedError("no token")
            self._token = await self._token_provider()
        return self._token

    def _stop(self, error: ClientStoppedError, cause: BaseException | None = None) -> None:
        error.__cause__ = cause
        log.error("relay_client_stopped", reason=str(error), close_code=error.code)
        self._stopped = error
        with contextlib.suppress(asyncio.QueueFull):
            self._messages.put_nowait(error)


def _unverified_claims(token: str) -> dict[str, Any]:
    """The token's claims, unchecked: only to know whose it is (the relay checks it)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _username(token: str) -> str | None:
    username = _unverified_claims(token).get("name")
    return username if isinstance(username, str) else None


def _data(payload: Any, **optional: str | int | None) -> dict[str, Any]:
    return {
        "payload": payload,
        **{key: value for key, value in optional.items() if value is not None and value != ""},
    }


def _credentials_provider(
    auth_url: str | None, username: str | None, password: str | None
) -> TokenProvider | None:
    if auth_url is None or username is None or password is None:
        return None

    async def provide() -> str:
        return await login(auth_url, username, password)

    return provide
