"""The load balancer's configuration, run for real in front of real services.

nginx runs `deploy/nginx/nginx.conf.template` rendered as the compose file's nginx
image does and balances two `relay-service` replicas and one `auth-service serve`, all
sharing a real Redis. What a client sees through it: the REST API, WebSocket sessions
spread over both replicas, commands crossing replicas, and a rolling restart of one
replica (SIGTERM → 1012 → reconnect to the survivor) that loses nothing sent afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from shared.protocol import CloseCode, Op
from tests.deploy.stack import ADMIN_PASSWORD, ADMIN_USERNAME, Stack, require_nginx

pytestmark = pytest.mark.redis

RECV_TIMEOUT = 5.0
RECONNECT_BUDGET_SECONDS = 1.0
MAX_OPEN_ATTEMPTS = 40
PASSWORD = "correct-horse-battery"

Frame = dict[str, Any]


@pytest.fixture
def stack(redis_url: str, redis_prefix: str) -> Iterator[Stack]:
    with Stack(require_nginx(), redis_url, redis_prefix) as running:
        yield running


@pytest.fixture
async def lb(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.lb_url, timeout=10) as client:
        yield client


async def login(lb: httpx.AsyncClient, username: str, password: str) -> str:
    response = await lb.post("/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    token: str = body["access_token"]
    return token


async def create_user(lb: httpx.AsyncClient, admin_token: str, username: str, kind: str) -> str:
    """Create a user through the balancer (POST /users) and log it in; its token."""
    response = await lb.post(
        "/users",
        json={"username": username, "password": PASSWORD, "type": kind},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert response.status_code == 201, response.text
    return await login(lb, username, PASSWORD)


async def recv_frame(ws: ClientConnection) -> Frame:
    raw = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
    frame: Frame = json.loads(raw)
    return frame


async def identified(url: str, token: str) -> ClientConnection:
    """A session past Hello and READY."""
    ws = await connect(url, open_timeout=5, ping_interval=None, compression=None)
    hello = await recv_frame(ws)
    assert hello["op"] == Op.HELLO
    await ws.send(json.dumps({"op": Op.IDENTIFY, "d": {"token": token}}))
    ready = await recv_frame(ws)
    assert (ready["op"], ready.get("t")) == (Op.EVENT, "READY"), ready
    return ws


@dataclass
class Session:
    ws: ClientConnection
    username: str
    token: str
    replica: int


class Sessions:
    """Opens sessions through the balancer and finds out which replica took each one."""

    def __init__(self, stack: Stack, exits: AsyncExitStack) -> None:
        self.stack = stack
        self.exits = exits
        self.all: list[Session] = []

    async def counts(self) -> list[int]:
        return [await asyncio.to_thread(relay.connections) for relay in self.stack.relays]

    async def open(self, username: str, token: str) -> Session:
        before = await self.counts()
        ws = await identified(self.stack.ws_url, token)
        self.exits.push_async_callback(ws.close)
        deadline = time.monotonic() + 3
        while True:
            after = await self.counts()
            grown = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if a == b + 1]
            if len(grown) == 1 and sum(after) == sum(before) + 1:
                break
            assert time.monotonic() < deadline, f"no replica counted the session: {after}"
            await asyncio.sleep(0.02)
        session = Session(ws, username, token, grown[0])
        self.all.append(session)
        return session

    async def spread(self, username: str, token: str, per_replica: int) -> list[Session]:
        """Open sessions until every replica holds `per_replica` of them (bounded)."""
        opened: list[Session] = []
        for _ in range(MAX_OPEN_ATTEMPTS):
            placed = [sum(1 for s in opened if s.replica == i) for i in (0, 1)]
            if min(placed) >= per_replica:
                return opened
            opened.append(await self.open(username, token))
        pytest.fail(f"the balancer sent {MAX_OPEN_ATTEMPTS} sessions to one replica only")


async def send(ws: ClientConnection, op: Op, data: object) -> None:
    await ws.send(json.dumps({"op": op, "d": data}))


async def expect_ids(session: Session, ids: list[str], op: Op = Op.COMMAND) -> list[Frame]:
    """The next dispatches on `session` are exactly messages `ids`, in that order."""
    frames = [await recv_frame(session.ws) for _ in ids]
    assert [(f["op"], f["d"]["id"]) for f in frames] == [(op, i) for i in ids], frames
    return frames


# -- REST through the balancer ----------------------------------------------------------


async def test_rest_and_health_paths_reach_their_service(lb: httpx.AsyncClient) -> None:
    assert (await lb.get("/lb/healthz")).json() == {"status": "ok"}
    for path in ("/healthz", "/readyz", "/relay/healthz", "/relay/readyz"):
        response = await lb.get(path)
        assert response.status_code == 200, (path, response.text)
    assert (await lb.get("/relay/readyz")).json() == {"status": "ready"}  # the relay's answer
    assert (await lb.get("/openapi.json")).json()["info"]["title"].startswith("Factory relay")
    assert (await lb.get("/docs")).status_code == 200
    # Metrics are scraped from each replica directly, never through the public balancer.
    assert (await lb.get("/relay/metrics")).status_code == 404

    admin = await login(lb, ADMIN_USERNAME, ADMIN_PASSWORD)
    me = await lb.get("/auth/me", headers={"Authorization": f"Bearer {admin}"})
    assert me.json()["username"] == ADMIN_USERNAME
    await create_user(lb, admin, "operator-1", "operator")
    wrong = await lb.post("/auth/token", data={"username": "operator-1", "password": "nope-nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


def test_login_throttle_sees_each_client_behind_the_balancer(
    redis_url: str, redis_prefix: str
) -> None:
    """X-Forwarded-For is overwritten by the balancer and trusted from it only.

    Clients come from 127.0.0.3 and 127.0.0.4 (nginx reaches the auth service from
    127.0.0.1): the per-address throttle must count them apart, and a forged header
    must not move a client into a fresh bucket.
    """
    settings = {"LOGIN_MAX_FAILURES_PER_ADDRESS": "3", "LOGIN_MAX_FAILURES_PER_USERNAME": "100"}
    with Stack(require_nginx(), redis_url, redis_prefix, auth_settings=settings) as stack:

        def client(address: str) -> httpx.Client:
            transport = httpx.HTTPTransport(local_address=address)
            return httpx.Client(base_url=stack.lb_url, transport=transport, timeout=10)

        with client("127.0.0.3") as attacker, client("127.0.0.4") as bystander:
            for attempt in range(3):
                response = attacker.post(
                    "/auth/token",
                    data={"username": f"guess-{attempt}", "password": "wrong-password"},
                    headers={"X-Forwarded-For": f"198.51.100.{attempt}"},
                )
                assert response.status_code == 401, response.text
            throttled = attacker.post(
                "/auth/token",
                data={"username": "guess-last", "password": "wrong-password"},
                headers={"X-Forwarded-For": "198.51.100.99"},
            )
            assert throttled.status_code == 429, throttled.text
            assert int(throttled.headers["Retry-After"]) > 0
            allowed = bystander.post(
                "/auth/token", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
            )
            assert allowed.status_code == 200, allowed.text


async def test_logins_beyond_the_balancers_rate_get_429_in_json(lb: httpx.AsyncClient) -> None:
    """nginx's limit_req on /auth/token: 5/s per address, bursts of 10, then 429."""
    attempts = 25
    responses = await asyncio.gather(
        *(
            lb.post("/auth/token", data={"username": f"guess-{n}", "password": "wrong-password"})
            for n in range(attempts)
        )
    )
    refused = [r for r in responses if r.status_code == 429]
    assert refused, [r.status_code for r in responses]
    assert len(refused) < attempts, "the burst passes"
    assert refused[0].json() == {"detail": "too many requests, slow down"}
    assert refused[0].headers["Retry-After"] == "1"
    # Only logins are limited: the rest of the API answers as usual meanwhile.
    assert (await lb.get("/healthz")).status_code == 200


# -- WebSocket sessions through the balancer --------------------------------------------


async def test_sessions_spread_and_commands_cross_replicas(
    stack: Stack, lb: httpx.AsyncClient
) -> None:
    admin = await login(lb, ADMIN_USERNAME, ADMIN_PASSWORD)
    operator_token = await create_user(lb, admin, "operator-1", "operator")
    factory_token = await create_user(lb, admin, "factory-1", "factory")
    async with AsyncExitStack() as exits:
        sessions = Sessions(stack, exits)
        factories = await sessions.spread("factory-1", factory_token, per_replica=2)
        operators = await sessions.spread("operator-1", operator_token, per_replica=1)
        counts = await sessions.counts()
        assert counts == [sum(1 for s in sessions.all if s.replica == i) for i in (0, 1)], (
            "each replica's relay_connections counts the sessions it holds"
        )

        for replica in (0, 1):
            sender = next(s for s in operators if s.replica == replica)
            command = f"from-replica-{replica}"
            await send(sender.ws, Op.COMMAND, {"payload": {"start": True}, "id": command})
            for factory in factories:
                (frame,) = await expect_ids(factory, [command])
                assert frame["d"]["from"]["username"] == "operator-1"
                assert frame["d"]["payload"] == {"start": True}

        reporter = next(f for f in factories if f.replica == 0)
        await send(reporter.ws, Op.STATUS, {"payload": {"temp": 71}, "id": "status-1"})
        for operator in operators:
            (frame,) = await expect_ids(operator, ["status-1"], op=Op.STATUS)
            assert frame["d"]["from"]["type"] == "factory"


async def test_sigterm_moves_sessions_to_the_survivor_without_loss(
    stack: Stack, lb: httpx.AsyncClient
) -> None:
    admin = await login(lb, ADMIN_USERNAME, ADMIN_PASSWORD)
    operator_token = await create_user(lb, admin, "operator-1", "operator")
    factory_token = await create_user(lb, admin, "factory-1", "factory")
    survivor, leaving = stack.relays
    async with AsyncExitStack() as exits:
        sessions = Sessions(stack, exits)
        factories = await sessions.spread("factory-1", factory_token, per_replica=2)
        operators = await sessions.spread("operator-1", operator_token, per_replica=1)
        moving = [s for s in sessions.all if s.replica == 1]

        async def reconnect(session: Session) -> float:
            """Wait for 1012, reconnect through the balancer; seconds from close to READY."""
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(session.ws.recv(), 15)
            closed_at = time.monotonic()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CloseCode.SERVICE_RESTART
            session.ws = await identified(stack.ws_url, session.token)
            exits.push_async_callback(session.ws.close)
            session.replica = 0
            return time.monotonic() - closed_at

        waiting = [asyncio.create_task(reconnect(s)) for s in moving]
        await asyncio.sleep(0.05)
        leaving.terminate()
        elapsed = await asyncio.gather(*waiting)
        assert max(elapsed) < RECONNECT_BUDGET_SECONDS, elapsed
        assert await asyncio.to_thread(leaving.wait) == 0, leaving.logs()

        assert await asyncio.to_thread(survivor.connections) == len(sessions.all)

        # Everything published after the reconnects reaches every session, in order.
        steady = next(s for s in operators if s not in moving)
        moved = next(s for s in operators if s in moving)
        from_steady = [f"steady-{n}" for n in range(20)]
        from_moved = [f"moved-{n}" for n in range(5)]
        for command in from_steady:
            await send(steady.ws, Op.COMMAND, {"payload": command, "id": command})
        for factory in factories:
            await expect_ids(factory, from_steady)
        for command in from_moved:
            await send(moved.ws, Op.COMMAND, {"payload": command, "id": command})
        for factory in factories:
            await expect_ids(factory, from_moved)
        reporter = next(f for f in factories if f in moving)
        await send(reporter.ws, Op.STATUS, {"payload": "back", "id": "status-after"})
        for operator in operators:
            await expect_ids(operator, ["status-after"], op=Op.STATUS)


async def test_new_sessions_go_to_the_replica_holding_the_fewest(
    stack: Stack, lb: httpx.AsyncClient
) -> None:
    """least_conn: after one replica lost its sessions, it takes every new one."""
    admin = await login(lb, ADMIN_USERNAME, ADMIN_PASSWORD)
    token = await create_user(lb, admin, "factory-1", "factory")
    async with AsyncExitStack() as exits:
        sessions = Sessions(stack, exits)
        first = [await sessions.open("factory-1", token) for _ in range(8)]
        assert await sessions.counts() == [4, 4]
        for session in [s for s in first if s.replica == 0]:
            await session.ws.close()
        deadline = time.monotonic() + 5
        while await sessions.counts() != [0, 4]:
            assert time.monotonic() < deadline, await sessions.counts()
            await asyncio.sleep(0.05)
        later = [await sessions.open("factory-1", token) for _ in range(4)]
        assert [s.replica for s in later] == [0, 0, 0, 0]
        assert await sessions.counts() == [4, 4]
