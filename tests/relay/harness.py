"""Drive real `relay-service` processes the way clients do: over TCP, with real tokens.

- `RelayProcess` (from `tests.processes`) runs the console script with a given
  environment, waits for `/readyz`, stops it with SIGTERM and always kills it on teardown.
- `Tokens` mints JWTs as the auth service would (HS256, the test secret, default claims),
  and spoils them in each way the relay must refuse.
- `Client` speaks the protocol over `websockets` and asserts what arrives: frames, close
  codes, and silence.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from shared.identity import UserType
from shared.keys import hs256_kid
from shared.protocol import DISPATCH_OPS, CloseCode, Op
from shared.tokens import TokenClaims, TokenIssuer
from tests.processes import RelayProcess, free_port

JWT_SECRET = "relay-test-secret-0123456789abcdefghijkl"
JWT_ISSUER = "factory-relay-auth"
JWT_AUDIENCE = "factory-relay"
ALLOWED_ORIGIN = "https://console.example.com"

RECV_TIMEOUT = 3.0
CLOSE_TIMEOUT = 3.0
QUIET_SECONDS = 0.3

Frame = dict[str, Any]


@dataclass(frozen=True)
class Relays:
    """Replicas A and B: one process for the in-process broker, two sharing Redis."""

    broker: str
    a: RelayProcess
    b: RelayProcess
    redis_url: str | None
    prefix: str

    @property
    def both(self) -> tuple[RelayProcess, RelayProcess]:
        return (self.a, self.b)


# -- tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    user_type: UserType
    token: str
    claims: TokenClaims

    @property
    def stamp(self) -> dict[str, str]:
        """The `from` the relay must put on this user's messages."""
        return {"id": self.user_id, "username": self.username, "type": self.user_type.value}


class Tokens:
    """Mints tokens as the auth service does, and spoilt ones."""

    def __init__(self, secret: str = JWT_SECRET, *, issuer: TokenIssuer | None = None) -> None:
        self._issuer = issuer or TokenIssuer(
            algorithm="HS256",
            key=secret,
            issuer=JWT_ISSUER,
            audience=JWT_AUDIENCE,
            ttl_seconds=3600,
        )

    def user(
        self,
        user_type: UserType,
        *,
        username: str | None = None,
        user_id: str | None = None,
        now: float | None = None,
    ) -> User:
        user_id = user_id or str(uuid.uuid4())
        username = username or f"{user_type.value}-{uuid.uuid4().hex[:10]}"
        token, claims = self._issuer.issue(
            user_id=user_id, username=username, user_type=user_type, now=now
        )
        return User(user_id, username, user_type, token, claims)

    @staticmethod
    def claims(**overrides: object) -> dict[str, object]:
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": str(uuid.uuid4()),
            "name": f"operator-{uuid.uuid4().hex[:10]}",
            "type": "operator",
            "iat": now,
            "exp": now + 3600,
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return claims

    @staticmethod
    def encode(
        claims: Mapping[str, object], *, secret: str = JWT_SECRET, kid: str | None = None
    ) -> str:
        """HS256 with `secret`, naming `kid` (by default the secret's own key id)."""
        headers = {"kid": hs256_kid(secret) if kid is None else kid}
        return jwt.encode(dict(claims), secret, algorithm="HS256", headers=headers)

    @staticmethod
    def without_kid(claims: Mapping[str, object], *, secret: str = JWT_SECRET) -> str:
        """Well signed, but naming no key: refused like a bad signature."""
        return jwt.encode(dict(claims), secret, algorithm="HS256")

    @staticmethod
    def none_algorithm(claims: Mapping[str, object]) -> str:
        """An unsigned token (`alg: none`), which a pinned verifier must refuse."""
        header = {"alg": "none", "typ": "JWT", "kid": hs256_kid(JWT_SECRET)}
        return f"{_segment(header)}.{_segment(dict(claims))}."

    @staticmethod
    def hmac_signed(claims: Mapping[str, object], key: bytes, *, kid: str) -> str:
        """HS256 over any key, even a public key (PyJWT itself refuses to make these)."""
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        signing_input = f"{_segment(header)}.{_segment(dict(claims))}"
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _segment(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# -- clients --------------------------------------------------------------------------


@dataclass
class Client:
    """One WebSocket session seen from the client side."""

    ws: ClientConnection
    hello: Frame
    user: User | None = None
    ready: Frame | None = None
    skipped: list[Frame] = field(default_factory=list)
    presence: list[Frame] = field(default_factory=list)

    @classmethod
    async def open(cls, url: str, *, origin: str | None = None) -> Client:
        ws = await connect(
            url,
            origin=None if origin is None else Origin(origin),
            compression=None,
            ping_interval=None,
            close_timeout=1,
            max_size=None,
            open_timeout=5,
        )
        client = cls(ws=ws, hello={})
        client.hello = await client.recv()
        return client

    async def send(self, frame: object) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, within: float = RECV_TIMEOUT) -> Frame:
        """The next frame, passing over PRESENCE_UPDATE events (kept in `presence`): any
        factory of any test coming and going sends them to every observer. Read them with
        `recv_presence`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            frame = await self.recv_any(max(0.0, deadline - loop.time()))
            if frame.get("t") != "PRESENCE_UPDATE":
                return frame
            self.presence.append(frame)

    async def recv_any(self, within: float = RECV_TIMEOUT) -> Frame:
        """The next frame, whatever it is."""
        try:
            async with asyncio.timeout(within):
                raw = await self.ws.recv()
        except TimeoutError:
            pytest.fail(f"no frame within {within:.2f} s")
        except ConnectionClosed as closed:
            pytest.fail(f"closed while a frame was expected: {closed.rcvd}")
        assert isinstance(raw, str), f"the relay sent a binary frame: {raw!r}"
        frame = json.loads(raw)
        assert isinstance(frame, dict), f"the relay sent a non-object: {raw}"
        return frame

    async def recv_presence(self, within: float = RECV_TIMEOUT) -> Frame:
        """The next PRESENCE_UPDATE (first those `recv` passed over); other frames read
        meanwhile go to `skipped`."""
        if self.presence:
            return self.presence.pop(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            frame = await self.recv_any(max(0.0, deadline - loop.time()))
            if frame.get("t") == "PRESENCE_UPDATE":
                return frame
            self.skipped.append(frame)

    async def recv_dispatch(self, within: float = RECV_TIMEOUT) -> Frame:
        """The next op 4, 5 or 6 frame (heartbeat ACKs are not dispatches; nor are
        PRESENCE_UPDATE events, see `recv`)."""
        while True:
            frame = await self.recv(within)
            if frame["op"] in DISPATCH_OPS:
                return frame
            self.skipped.append(frame)

    async def identify(self, user: User, *, resume: object = None) -> Frame:
        identify: dict[str, object] = {"token": user.token}
        if resume is not None:
            identify["resume"] = resume
        await self.send({"op": Op.IDENTIFY, "d": identify})
        ready = await self.recv()
        assert ready.get("t") == "READY", f"expected READY, got {ready}"
        self.user = user
        self.ready = ready
        return ready

    async def command(self, payload: object, **data: object) -> None:
        await self.send({"op": Op.COMMAND, "d": {"payload": payload, **data}})

    async def status(self, payload: object, **data: object) -> None:
        await self.send({"op": Op.STATUS, "d": {"payload": payload, **data}})

    async def event(self, name: str, payload: object, **data: object) -> None:
        await self.send({"op": Op.EVENT, "t": name, "d": {"payload": payload, **data}})

    async def expect_close(self, code: int, within: float = CLOSE_TIMEOUT) -> str:
        """Read until the server closes; assert the close code and a reason; return it."""
        closed: ConnectionClosed | None = None
        try:
            async with asyncio.timeout(within):
                while True:
                    raw = await self.ws.recv()
                    self.skipped.append({"raw": raw})
        except TimeoutError:
            pytest.fail(f"not closed within {within} s (expected {code})")
        except ConnectionClosed as error:
            closed = error
        assert closed is not None
        received = closed.rcvd
        assert received is not None, f"dropped without a close frame: {closed!r}"
        assert received.code == code, (
            f"closed with {received.code} {received.reason!r}, expected {code}"
        )
        assert received.reason, f"close {code} carries no reason"
        return received.reason

    async def expect_nothing(self, seconds: float = QUIET_SECONDS) -> None:
        """Nothing but PRESENCE_UPDATE events (see `recv`) for `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    raw = await self.ws.recv()
                    frame = json.loads(raw)
                    if frame.get("t") != "PRESENCE_UPDATE":
                        break
                    self.presence.append(frame)
        except TimeoutError:
            return
        except ConnectionClosed as closed:
            pytest.fail(f"closed ({closed.rcvd}) where silence was expected")
        pytest.fail(f"expected nothing, received {raw!r}")

    async def close(self) -> None:
        await self.ws.close()


class Connector:
    """Opens clients for one test and closes every one of them at its end."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self._clients: list[Client] = []

    async def raw(self, relay: RelayProcess, *, origin: str | None = None) -> Client:
        """Connected, Hello received, not identified."""
        client = await Client.open(relay.ws_url, origin=origin)
        self._clients.append(client)
        return client

    async def __call__(
        self,
        relay: RelayProcess,
        user: User | UserType,
        *,
        username: str | None = None,
    ) -> Client:
        """Connected and identified (READY received)."""
        if isinstance(user, UserType):
            user = self.tokens.user(user, username=username)
        client = await self.raw(relay)
        await client.identify(user)
        return client

    async def assert_nothing_relayed(self, relay: RelayProcess, *receivers: Client) -> None:
        """Send a marker through `relay` to every receiver: it must be their next dispatch.

        Whatever a refused frame would have produced was published before the marker
        (same replica, one ordered publish queue), so this proves nothing came without
        waiting out a silence.
        """
        marker = uuid.uuid4().hex
        operator = await self(relay, UserType.OPERATOR)
        factory = await self(relay, UserType.FACTORY)
        await operator.command({"marker": marker})
        await factory.status({"marker": marker})
        for receiver in receivers:
            assert receiver.user is not None
            frame = await receiver.recv_dispatch()
            assert frame["d"]["payload"] == {"marker": marker}, f"relayed: {frame}"
        await operator.close()
        await factory.close()

    async def assert_nothing_relayed_after(
        self, relay: RelayProcess, receiver: Client, *, count_at_most: int
    ) -> None:
        """Like `assert_nothing_relayed`, allowing up to `count_at_most` earlier dispatches."""
        marker = uuid.uuid4().hex
        operator = await self(relay, UserType.OPERATOR)
        await operator.command({"marker": marker})
        before = 0
        while (await receiver.recv_dispatch())["d"]["payload"] != {"marker": marker}:
            before += 1
        assert before <= count_at_most, f"{before} relayed, at most {count_at_most} allowed"
        await operator.close()

    async def close_all(self) -> None:
        clients, self._clients = self._clients, []
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


# -- HTTP -----------------------------------------------------------------------------


async def http_get(relay: RelayProcess, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=relay.http_url, timeout=5) as http:
        return await http.get(path)


async def metric_value(relay: RelayProcess, sample: str) -> float:
    """The value of one exposition line, e.g. `relay_closes_total{code="4013"}`; 0 if absent."""
    text = (await http_get(relay, "/metrics")).text
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


async def wait_for_metric(
    relay: RelayProcess, sample: str, value: float, within: float = 5.0
) -> None:
    """Poll `/metrics` until `sample` equals `value`."""
    deadline = asyncio.get_running_loop().time() + within
    last = await metric_value(relay, sample)
    while last != value and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        last = await metric_value(relay, sample)
    assert last == value, f"{sample} is {last} after {within} s, expected {value}"


async def wait_for_status(
    relay: RelayProcess, path: str, status: int, within: float = 10.0
) -> None:
    """Poll until `path` answers `status` (a bounded wait for an event, not a sleep)."""
    deadline = asyncio.get_running_loop().time() + within
    last: object = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            last = (await http_get(relay, path)).status_code
        except httpx.TransportError as error:
            last = error
        if last == status:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{path} on {relay.name} did not answer {status} within {within} s: {last}")


__all__ = [
    "ALLOWED_ORIGIN",
    "Client",
    "CloseCode",
    "Connector",
    "Frame",
    "Op",
    "RelayProcess",
    "Relays",
    "Tokens",
    "User",
    "free_port",
    "http_get",
    "metric_value",
    "wait_for_metric",
    "wait_for_status",
]
