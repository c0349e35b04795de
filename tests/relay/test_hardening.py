"""One connection cannot exhaust a replica: control frames, bytes, work before Identify,
connection caps, strict JSON, and a drain that no silent client can hold up."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from shared.identity import UserType
from shared.protocol import CloseCode, Op
from tests.relay.conftest import StartRelay
from tests.relay.harness import (
    Client,
    Connector,
    RelayProcess,
    Tokens,
    http_get,
    wait_for_metric,
)
from tests.relay.stalled import StalledClient

UNLIMITED_RATE = {"RATE_LIMIT_PER_SECOND": "100000", "RATE_LIMIT_BURST": "100000"}
PRE_IDENTIFY_MAX_BYTES = 16 * 1024


async def _stalled(relay: RelayProcess, tokens: Tokens, user_type: UserType) -> StalledClient:
    token = tokens.user(user_type).token
    client = await StalledClient.identified(relay.ws_url, relay.port, token)
    _STALLED.append(client)
    return client


async def _handshake_status(relay: RelayProcess, headers: dict[str, str] | None = None) -> int:
    """101 when the WebSocket opens (it is kept open), else the HTTP status refusing it."""
    try:
        ws = await ws_connect(relay.ws_url, additional_headers=headers, open_timeout=5)
    except InvalidStatus as refused:
        return refused.response.status_code
    _OPEN.append(ws)
    return 101


_OPEN: list[object] = []
_STALLED: list[StalledClient] = []


@pytest.fixture(autouse=True)
async def _close_opened() -> AsyncIterator[None]:
    yield
    for client in _STALLED:
        client.close()
    _STALLED.clear()
    opened, _OPEN[:] = list(_OPEN), []
    for ws in opened:
        await ws.close()  # type: ignore[attr-defined]


# -- control frames -------------------------------------------------------------------


async def test_pings_count_against_the_rate_limit(start_relay: StartRelay, tokens: Tokens) -> None:
    relay = start_relay({"RATE_LIMIT_PER_SECOND": "5", "RATE_LIMIT_BURST": "10"})
    client = await _stalled(relay, tokens, UserType.VIEWER)

    await client.ping_flood(50)

    async with asyncio.timeout(5):
        assert await client.read_until_closed() == CloseCode.RATE_LIMITED


async def test_pongs_piling_up_unread_close_the_connection_with_4013(
    start_relay: StartRelay, tokens: Tokens
) -> None:
    relay = start_relay({**UNLIMITED_RATE, "SEND_QUEUE_LIMIT_BYTES": "65536"})
    client = await _stalled(relay, tokens, UserType.VIEWER)

    for _ in range(400):  # 160,000 pings: 20 MB of pongs, past any socket buffer
        await client.ping_flood(400, b"p" * 125)

    # The client reads nothing, so the close frame cannot reach it: the relay closes
    # with 4013 and drops the socket after its close timeout.
    await wait_for_metric(relay, 'relay_closes_total{code="4013"}', 1, within=20)
    await wait_for_metric(relay, "relay_sockets", 0, within=5)


# -- bytes, not only frames -----------------------------------------------------------


async def test_queued_output_past_send_queue_limit_bytes_closes_with_4013(
    start_relay: StartRelay, tokens: Tokens, connect: Connector
) -> None:
    relay = start_relay({**UNLIMITED_RATE, "SEND_QUEUE_LIMIT_BYTES": "262144"})
    stalled = await _stalled(relay, tokens, UserType.OPERATOR)
    factory = await connect(relay, UserType.FACTORY)

    for number in range(200):  # 200 x 30 KB, of which the socket buffers hold a fraction
        await factory.status({"n": number, "pad": "x" * 30_000})

    async with asyncio.timeout(10):
        assert await stalled.read_until_closed() == CloseCode.TOO_SLOW


# -- before Identify ------------------------------------------------------------------


async def test_a_frame_over_16_kib_before_ready_closes_with_1009(
    start_relay: StartRelay, connect: Connector
) -> None:
    client = await connect.raw(start_relay())

    await client.send_raw(json.dumps({"op": 1, "d": None, "pad": "x" * PRE_IDENTIFY_MAX_BYTES}))

    await client.expect_close(CloseCode.MESSAGE_TOO_BIG)


async def test_a_frame_over_16_kib_after_ready_is_relayed(
    start_relay: StartRelay, connect: Connector
) -> None:
    relay = start_relay()
    operator = await connect(relay, UserType.OPERATOR)
    factory = await connect(relay, UserType.FACTORY)

    await factory.status("x" * (PRE_IDENTIFY_MAX_BYTES * 2))

    assert len((await operator.recv_dispatch())["d"]["payload"]) == PRE_IDENTIFY_MAX_BYTES * 2


@pytest.mark.parametrize("d", ["text", 1.5, {"s": 1}, -1])
async def test_a_heartbeat_ack_whose_d_is_not_null_or_a_sequence_closes_with_4002(
    start_relay: StartRelay, connect: Connector, d: object
) -> None:
    client = await connect.raw(start_relay())

    await client.send({"op": Op.HEARTBEAT_ACK, "d": d})

    await client.expect_close(CloseCode.DECODE_ERROR)


# -- connection caps ------------------------------------------------------------------


async def test_connections_past_the_per_address_cap_are_refused_with_429(
    start_relay: StartRelay,
) -> None:
    relay = start_relay({"MAX_CONNECTIONS_PER_ADDRESS": "3"})

    statuses = [await _handshake_status(relay) for _ in range(4)]

    assert statuses == [101, 101, 101, 429]


async def test_a_closed_connection_gives_its_address_slot_back(
    start_relay: StartRelay,
) -> None:
    relay = start_relay({"MAX_CONNECTIONS_PER_ADDRESS": "1"})
    assert await _handshake_status(relay) == 101

    await _OPEN.pop().close()  # type: ignore[attr-defined]

    for _ in range(50):
        if await _handshake_status(relay) == 101:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the slot was not given back")


async def test_forwarded_addresses_are_counted_apart_behind_a_trusted_proxy(
    start_relay: StartRelay,
) -> None:
    relay = start_relay({"MAX_CONNECTIONS_PER_ADDRESS": "2", "FORWARDED_ALLOW_IPS": "127.0.0.1"})
    first = {"X-Forwarded-For": "198.51.100.1"}
    second = {"X-Forwarded-For": "198.51.100.2"}

    statuses = [await _handshake_status(relay, first) for _ in range(3)]
    statuses += [await _handshake_status(relay, second) for _ in range(2)]

    assert statuses == [101, 101, 429, 101, 101]


async def test_forwarded_addresses_from_an_untrusted_peer_are_ignored(
    start_relay: StartRelay,
) -> None:
    relay = start_relay({"MAX_CONNECTIONS_PER_ADDRESS": "2"})

    statuses = [
        await _handshake_status(relay, {"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(3)
    ]

    assert statuses == [101, 101, 429]


async def test_connections_past_the_replica_cap_are_refused_with_503_and_probes_answer(
    start_relay: StartRelay,
) -> None:
    relay = start_relay({"MAX_CONNECTIONS": "3"})

    statuses = [await _handshake_status(relay) for _ in range(4)]

    assert statuses == [101, 101, 101, 503]
    for path in ("/healthz", "/metrics"):
        assert (await http_get(relay, path)).status_code == 200
    assert (await http_get(relay, "/readyz")).status_code == 503  # full: send sessions elsewhere


async def test_sessions_past_the_per_user_cap_are_refused_with_4011(
    start_relay: StartRelay, tokens: Tokens
) -> None:
    relay = start_relay({"MAX_SESSIONS_PER_USER": "2"})
    viewer = tokens.user(UserType.VIEWER)
    first, second, third = [await Client.open(relay.ws_url) for _ in range(3)]

    await first.identify(viewer)
    await second.identify(viewer)
    await third.send({"op": Op.IDENTIFY, "d": {"token": viewer.token}})

    await third.expect_close(CloseCode.TOO_MANY_SESSIONS)
    for client in (first, second, third):
        await client.close()


async def test_a_user_at_the_session_cap_may_identify_again_after_one_closes(
    start_relay: StartRelay, tokens: Tokens
) -> None:
    relay = start_relay({"MAX_SESSIONS_PER_USER": "1"})
    viewer = tokens.user(UserType.VIEWER)
    first = await Client.open(relay.ws_url)
    await first.identify(viewer)

    await first.close()

    for _ in range(50):
        again = await Client.open(relay.ws_url)
        await again.send({"op": Op.IDENTIFY, "d": {"token": viewer.token}})
        frame = await again.ws.recv()
        await again.close()
        if json.loads(frame).get("t") == "READY":
            return
        await asyncio.sleep(0.05)
    pytest.fail("the user could not identify again")


def test_the_listen_backlog_is_the_configured_one(start_relay: StartRelay) -> None:
    relay = start_relay({"LISTEN_BACKLOG": "1000"})

    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{relay.port}"], capture_output=True, text=True, check=True
    ).stdout

    assert listing.split()[2] == "1000", listing


# -- strict JSON ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"op":5,"d":{"payload":NaN}}',
        '{"op":5,"d":{"payload":Infinity}}',
        '{"op":5,"d":{"payload":1e400}}',
        '{"op":5,"d":{"payload":{"a":1,"a":2}}}',
        '{"op":5,"op":5,"d":{"payload":1}}',
    ],
    ids=["nan", "infinity", "overflow", "duplicate-in-payload", "duplicate-op"],
)
async def test_a_frame_that_is_not_strict_json_closes_with_4002_and_is_not_relayed(
    start_relay: StartRelay, connect: Connector, raw: str
) -> None:
    relay = start_relay()
    operator = await connect(relay, UserType.OPERATOR)
    factory = await connect(relay, UserType.FACTORY)

    await factory.send_raw(raw)

    await factory.expect_close(CloseCode.DECODE_ERROR)
    await connect.assert_nothing_relayed(relay, operator)


# -- the drain ------------------------------------------------------------------------


async def test_a_client_that_never_reads_does_not_hold_the_drain(
    start_relay: StartRelay, tokens: Tokens, connect: Connector
) -> None:
    relay = start_relay(
        {
            **UNLIMITED_RATE,
            "SEND_QUEUE_LIMIT": "100000",
            "SEND_QUEUE_LIMIT_BYTES": "100000000",
            "SHUTDOWN_TIMEOUT_SECONDS": "60",
        }
    )
    await _stalled(relay, tokens, UserType.OPERATOR)
    factory = await connect(relay, UserType.FACTORY)
    for number in range(100):  # 3 MB the stalled operator never reads
        await factory.status({"n": number, "pad": "x" * 30_000})
    async with httpx.AsyncClient() as http:
        await http.get(f"{relay.http_url}/healthz")  # the statuses were handled

    relay.process.send_signal(signal.SIGTERM)

    # Its close handshake cannot complete; the drain drops it after the 2 s close timeout
    # instead of waiting for the 60 s shutdown timeout.
    assert relay.wait(timeout=10) == 0


async def test_a_drain_closes_its_sessions_paced_rather_than_all_at_once(
    start_relay: StartRelay, connect: Connector
) -> None:
    relay = start_relay({"DRAIN_RATE_PER_SECOND": "20", "SHUTDOWN_TIMEOUT_SECONDS": "30"})
    clients = [await connect(relay, UserType.VIEWER) for _ in range(30)]
    loop = asyncio.get_running_loop()

    async def closed_at(client: Client) -> float:
        await client.expect_close(CloseCode.SERVICE_RESTART, within=10)
        return loop.time()

    relay.process.send_signal(signal.SIGTERM)
    times = await asyncio.gather(*(closed_at(client) for client in clients))

    # 30 sessions at 20 a second: the last 1012 comes about 1.5 s after the first.
    assert max(times) - min(times) >= 1.0
    assert relay.wait(timeout=10) == 0


async def test_a_replica_near_its_connection_cap_is_not_ready(start_relay: StartRelay) -> None:
    relay = start_relay({"MAX_CONNECTIONS": "4"})

    statuses = [await _handshake_status(relay) for _ in range(4)]

    assert statuses == [101, 101, 101, 101]
    response = await http_get(relay, "/readyz")
    assert (response.status_code, response.json()) == (503, {"detail": "near its connection cap"})
