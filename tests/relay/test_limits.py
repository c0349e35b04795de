"""Closes that depend on settings: 4008 (rate), 4009 (timeouts), 4013 (slow reader)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from shared.identity import UserType
from shared.protocol import CloseCode, Op
from tests.relay.conftest import StartRelay
from tests.relay.harness import JWT_SECRET, Connector, RelayProcess, Tokens, wait_for_metric
from tests.relay.stalled import StalledClient

HEARTBEAT_INTERVAL_MS = 400
LIVENESS_SECONDS = 1.5 * HEARTBEAT_INTERVAL_MS / 1000
IDENTIFY_TIMEOUT_MS = 300
RATE_PER_SECOND = 5
BURST = 10


@pytest.fixture(scope="module")
def strict_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    relay = RelayProcess(
        jwt_secret=JWT_SECRET,
        workdir=tmp_path_factory.mktemp("strict"),
        name="strict",
        settings={
            "HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_INTERVAL_MS),
            "IDENTIFY_TIMEOUT_MS": str(IDENTIFY_TIMEOUT_MS),
            "RATE_LIMIT_PER_SECOND": str(RATE_PER_SECOND),
            "RATE_LIMIT_BURST": str(BURST),
        },
    )
    try:
        yield relay.start()
    finally:
        relay.kill()


def _elapsed_since(start: float) -> float:
    return asyncio.get_running_loop().time() - start


# -- 4009 session timed out -----------------------------------------------------------


async def test_hello_announces_the_configured_heartbeat_interval(
    strict_relay: RelayProcess, connect: Connector
) -> None:
    client = await connect.raw(strict_relay)

    assert client.hello["d"]["heartbeat_interval"] == HEARTBEAT_INTERVAL_MS


async def test_no_identify_within_identify_timeout_closes_with_4009(
    strict_relay: RelayProcess, connect: Connector
) -> None:
    client = await connect.raw(strict_relay)
    start = asyncio.get_running_loop().time()

    await client.expect_close(CloseCode.SESSION_TIMED_OUT, within=3)

    assert _elapsed_since(start) >= IDENTIFY_TIMEOUT_MS / 1000 - 0.05


async def test_heartbeats_before_identify_do_not_extend_the_identify_timeout(
    strict_relay: RelayProcess, connect: Connector
) -> None:
    client = await connect.raw(strict_relay)

    for _ in range(3):
        await client.send({"op": Op.HEARTBEAT, "d": None})
        await asyncio.sleep(0.1)

    await client.expect_close(CloseCode.SESSION_TIMED_OUT, within=3)


async def test_no_heartbeat_within_one_and_a_half_intervals_closes_with_4009(
    strict_relay: RelayProcess, connect: Connector
) -> None:
    client = await connect(strict_relay, UserType.FACTORY)
    start = asyncio.get_running_loop().time()

    await client.expect_close(CloseCode.SESSION_TIMED_OUT, within=3)

    assert _elapsed_since(start) >= LIVENESS_SECONDS - 0.1


@pytest.mark.parametrize("op", [Op.HEARTBEAT, Op.HEARTBEAT_ACK])
async def test_heartbeats_keep_a_session_alive_past_the_timeout(
    strict_relay: RelayProcess, connect: Connector, op: Op
) -> None:
    client = await connect(strict_relay, UserType.OPERATOR)
    loop = asyncio.get_running_loop()
    end = loop.time() + 3 * LIVENESS_SECONDS

    while loop.time() < end:
        await client.send({"op": op, "d": None})
        if op == Op.HEARTBEAT:
            assert await client.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}
        await asyncio.sleep(HEARTBEAT_INTERVAL_MS / 1000 / 2)

    await client.send({"op": Op.HEARTBEAT, "d": None})
    assert await client.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


# -- 4008 rate limited ----------------------------------------------------------------


async def test_frames_within_the_burst_are_served(
    strict_relay: RelayProcess, connect: Connector
) -> None:
    client = await connect(strict_relay, UserType.VIEWER)  # Identify spent one token

    for _ in range(BURST - 1):
        await client.send({"op": Op.HEARTBEAT, "d": None})

    for _ in range(BURST - 1):
        assert await client.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


async def test_flooding_past_the_burst_closes_with_4008(
    strict_relay: RelayProcess, connect: Connector
) -> None:
    client = await connect(strict_relay, UserType.VIEWER)

    for _ in range(BURST * 3):
        await client.send({"op": Op.HEARTBEAT, "d": None})

    await client.expect_close(CloseCode.RATE_LIMITED)
    assert len(client.skipped) <= BURST


async def test_frames_past_the_burst_are_not_relayed(
    strict_relay: RelayProcess, connect: Connector
) -> None:
    factory = await connect(strict_relay, UserType.FACTORY)
    operator = await connect(strict_relay, UserType.OPERATOR)

    for number in range(BURST * 2):
        await operator.command(number)

    await operator.expect_close(CloseCode.RATE_LIMITED)
    await connect.assert_nothing_relayed_after(strict_relay, factory, count_at_most=BURST)


# -- 4013 too slow --------------------------------------------------------------------

SEND_QUEUE_LIMIT = 8
BIG_PAYLOAD = "x" * 30_000
FLOOD = 300  # 9 MB: more than the kernel's socket buffers hold


@pytest.fixture
def short_queue_relay(start_relay: StartRelay) -> RelayProcess:
    """Sessions may queue only SEND_QUEUE_LIMIT frames; senders are never rate limited."""
    return start_relay(
        {
            "SEND_QUEUE_LIMIT": str(SEND_QUEUE_LIMIT),
            "RATE_LIMIT_PER_SECOND": "100000",
            "RATE_LIMIT_BURST": "100000",
        }
    )


@pytest.fixture
async def stalled(short_queue_relay: RelayProcess, tokens: Tokens) -> AsyncIterator[StalledClient]:
    """A factory that identifies, then never reads again."""
    token = tokens.user(UserType.FACTORY).token
    client = await StalledClient.identified(short_queue_relay.ws_url, short_queue_relay.port, token)
    try:
        yield client
    finally:
        client.close()


async def test_a_stalled_reader_is_closed_with_4013_and_never_delays_the_others(
    short_queue_relay: RelayProcess, stalled: StalledClient, connect: Connector
) -> None:
    relay = short_queue_relay
    fast = [await connect(relay, UserType.FACTORY) for _ in range(2)]
    operator = await connect(relay, UserType.OPERATOR)

    loop = asyncio.get_running_loop()
    slowest = 0.0
    for number in range(FLOOD):
        sent_at = loop.time()
        await operator.command({"n": number, "pad": BIG_PAYLOAD})
        for reader in fast:
            assert (await reader.recv_dispatch())["d"]["payload"]["n"] == number
        slowest = max(slowest, loop.time() - sent_at)

    assert slowest < 1.0, f"a fast reader waited {slowest:.2f} s for one message"
    async with asyncio.timeout(5):
        assert await stalled.read_until_closed() == CloseCode.TOO_SLOW
    await wait_for_metric(relay, 'relay_closes_total{code="4013"}', 1)


async def test_a_stalled_reader_that_never_reads_again_is_disconnected(
    short_queue_relay: RelayProcess, stalled: StalledClient, connect: Connector
) -> None:
    operator = await connect(short_queue_relay, UserType.OPERATOR)
    for number in range(FLOOD):
        await operator.command({"n": number, "pad": BIG_PAYLOAD})

    # The relay's close handshake cannot complete: it must give up and drop the
    # socket (its close timeout is 2 s) rather than hold the session for ever.
    await wait_for_metric(short_queue_relay, "relay_sockets", 1, within=6)
    await wait_for_metric(short_queue_relay, 'relay_connections{type="factory"}', 0, within=1)
