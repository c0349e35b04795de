"""More than 1,024 WebSockets through the shipped nginx.conf to one relay replica.

Container runtimes start processes with a soft open-file limit of 1024; the relay is
started here with exactly that, as such a container would start it. It must raise the
limit itself, and nginx's configuration must hold two connections per session (client
and relay side) in its workers: 1,100 sessions are 2,200 connections, more than an
nginx left at `worker_connections 1024` takes.
"""

from __future__ import annotations

import asyncio
import json
import resource
import uuid
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from shared.limits import raise_open_file_limit
from shared.protocol import Op
from tests.deploy.stack import ADMIN_PASSWORD, ADMIN_USERNAME, Stack, require_nginx

pytestmark = pytest.mark.redis

CONTAINER_SOFT_LIMIT = 1024
SESSIONS = 1_100
"""More sessions than a soft limit of 1024 allows descriptors."""
CONCURRENT_OPENS = 50
OPEN_BUDGET_SECONDS = 120
RECV_TIMEOUT = 10.0
DESCRIPTORS_NEEDED = SESSIONS + 200
"""The test process's own: one per client socket, plus its usual files."""


@pytest.fixture(scope="module")
def stack(redis_url: str, redis_prefix: str) -> Iterator[Stack]:
    limit = raise_open_file_limit()
    if limit.soft < DESCRIPTORS_NEEDED:
        pytest.skip(f"this process may open only {limit.soft} files (hard limit {limit.hard})")
    relay_settings = {
        "IDENTIFY_TIMEOUT_MS": "120000",
        # Caps other parts of the relay may apply per replica, address or user: well above
        # this test's load, which comes from one address (nginx) and one user.
        "MAX_CONNECTIONS": str(2 * SESSIONS),
        "MAX_CONNECTIONS_PER_ADDRESS": str(2 * SESSIONS),
        "MAX_SESSIONS_PER_USER": str(2 * SESSIONS),
    }
    with Stack(
        require_nginx(),
        redis_url,
        redis_prefix,
        relay_hosts=("127.0.0.1",),
        relay_settings=relay_settings,
        relay_open_files=CONTAINER_SOFT_LIMIT,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def redis_prefix() -> str:
    """The module's own namespace (the sessions are shared by its two tests)."""
    return f"deploy-open-files-{uuid.uuid4().hex[:10]}"


async def open_session(url: str, token: str) -> ClientConnection:
    ws = await connect(url, open_timeout=RECV_TIMEOUT, ping_interval=None, compression=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    assert hello["op"] == Op.HELLO
    await ws.send(json.dumps({"op": Op.IDENTIFY, "d": {"token": token}}))
    ready = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    assert (ready["op"], ready.get("t")) == (Op.EVENT, "READY"), ready
    return ws


async def heartbeat(ws: ClientConnection) -> int:
    await ws.send(json.dumps({"op": Op.HEARTBEAT, "d": None}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    op: int = ack["op"]
    return op


def relay_log_lines(stack: Stack) -> list[dict[str, object]]:
    (relay,) = stack.relays
    return [
        json.loads(line)
        for line in relay.stdout_path.read_text().splitlines()
        if line.startswith("{")
    ]


def test_relay_raises_its_soft_open_file_limit_and_logs_both(stack: Stack) -> None:
    (line,) = [entry for entry in relay_log_lines(stack) if entry["event"] == "open_file_limit"]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert line["previous_soft"] == CONTAINER_SOFT_LIMIT
    assert line["soft"] == line["hard"] == hard


async def test_more_than_1024_websockets_through_nginx_to_one_replica(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.lb_url, timeout=10) as lb:
        login = await lb.post(
            "/auth/token", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
    gate = asyncio.Semaphore(CONCURRENT_OPENS)
    sockets: list[ClientConnection] = []

    async def opened() -> None:
        async with gate:
            sockets.append(await open_session(stack.ws_url, token))

    try:
        async with asyncio.timeout(OPEN_BUDGET_SECONDS):
            await asyncio.gather(*(opened() for _ in range(SESSIONS)))
            (relay,) = stack.relays
            assert await asyncio.to_thread(relay.connections) == SESSIONS
            # Every one of them is still carried both ways through the balancer.
            acks = await asyncio.gather(*(heartbeat(ws) for ws in sockets))
            assert acks == [Op.HEARTBEAT_ACK] * SESSIONS
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
