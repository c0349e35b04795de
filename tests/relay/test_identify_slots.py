"""Identifies served at once are bounded (`MAX_CONCURRENT_IDENTIFIES`); the rest wait.

A hung Redis (SIGSTOP on a `redis-server` of the test's own, with a Redis timeout long
enough that the hang is not noticed meanwhile) holds an Identify in its revocation
lookup, so the one slot stays taken for as long as the test needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shared.identity import UserType
from shared.protocol import CloseCode, Op
from tests.redis_server import RedisServer
from tests.relay.conftest import StartRelay
from tests.relay.harness import Client, Connector, RelayProcess, metric_value, wait_for_metric

IN_FLIGHT = "relay_identifies_in_flight"
WAITING = "relay_identifies_waiting"
ONE_SLOT = {"MAX_CONCURRENT_IDENTIFIES": "1", "REDIS_TIMEOUT_SECONDS": "30"}


def one_slot_relay(
    private_redis: RedisServer, start_relay: StartRelay, *, identify_timeout_ms: int = 30_000
) -> RelayProcess:
    settings = {**ONE_SLOT, "IDENTIFY_TIMEOUT_MS": str(identify_timeout_ms)}
    return start_relay(settings, redis_url=private_redis.url, redis_prefix="slots")


async def send_identify(client: Client, connect: Connector) -> None:
    token = connect.tokens.user(UserType.VIEWER).token
    await client.send({"op": Op.IDENTIFY, "d": {"token": token}})


@asynccontextmanager
async def slot_held(
    relay: RelayProcess, private_redis: RedisServer, connect: Connector
) -> AsyncIterator[tuple[Client, Client]]:
    """Redis hung, one Identify in the slot and one waiting for it; Redis back on exit."""
    holder, waiter = await connect.raw(relay), await connect.raw(relay)
    private_redis.pause()
    try:
        await send_identify(holder, connect)
        await wait_for_metric(relay, IN_FLIGHT, 1)
        await send_identify(waiter, connect)
        await wait_for_metric(relay, WAITING, 1)
        yield holder, waiter
    finally:
        private_redis.resume()


async def test_an_identify_past_the_bound_waits_and_every_one_gets_ready(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    relay = one_slot_relay(private_redis, start_relay)
    async with slot_held(relay, private_redis, connect) as (holder, waiter):
        assert await metric_value(relay, IN_FLIGHT) == 1

    assert (await holder.recv()).get("t") == "READY"
    assert (await waiter.recv()).get("t") == "READY"
    await wait_for_metric(relay, IN_FLIGHT, 0)
    assert await metric_value(relay, WAITING) == 0


async def test_a_heartbeat_is_answered_while_identifies_wait_for_a_slot(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    relay = one_slot_relay(private_redis, start_relay)
    viewer = await connect(relay, UserType.VIEWER)
    async with slot_held(relay, private_redis, connect):
        await viewer.send({"op": Op.HEARTBEAT, "d": None})
        assert await viewer.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}
        assert await metric_value(relay, WAITING) == 1


async def test_an_identify_still_waiting_at_its_deadline_closes_4000(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    # The waiter connected before the holder identified: its identify deadline passes
    # before the holder's revocation lookup gives up (the same timeout, counted later).
    relay = one_slot_relay(private_redis, start_relay, identify_timeout_ms=5_000)
    async with slot_held(relay, private_redis, connect) as (_, waiter):
        reason = await waiter.expect_close(CloseCode.UNKNOWN_ERROR, within=10)
    assert reason == "relay busy, retry"
