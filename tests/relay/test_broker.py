"""The broker contract: one bad message never takes a replica's listener down.

A message a replica cannot use (malformed, of another format version, or making its
handler fail) is skipped, counted in `relay_broker_bad_messages_total{reason}` and
logged; the listener goes on with the next, so nothing else is lost and the replica
does not reconnect. Tested by publishing straight into the Redis the replicas share,
while real traffic flows between them.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from relay_service.broker.base import BadMessageError
from relay_service.broker.memory import MemoryBroker
from relay_service.channels import Channels
from relay_service.frames import BROKER_FORMAT, Dispatch, pack, unpack
from shared.identity import UserType
from shared.protocol import Op
from tests.relay.harness import Connector, Relays, metric_value

BAD_MESSAGES = "relay_broker_bad_messages_total"


async def _publish_raw(relays: Relays, channel: str, message: bytes) -> None:
    assert relays.redis_url is not None
    redis = Redis.from_url(relays.redis_url)
    try:
        receivers = await redis.publish(channel, message)
    finally:
        await redis.aclose()
    assert receivers >= 1, "no replica heard the channel"


async def _sum_metric(relays: Relays, sample: str) -> float:
    return sum([await metric_value(relay, sample) for relay in relays.both])


async def _wait_for_sum(relays: Relays, sample: str, value: float, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (last := await _sum_metric(relays, sample)) != value:
        assert asyncio.get_running_loop().time() < deadline, f"{sample}: {last}, not {value}"
        await asyncio.sleep(0.05)


def _local_bad_messages(reason: str) -> float:
    return REGISTRY.get_sample_value(BAD_MESSAGES, {"reason": reason}) or 0.0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"not a dispatch at all", "malformed"),
        (b"15" + b"0" * 13 + b'"d":{"payload":"%b"}}' % (b"x" * 64), "unknown_version"),
        (pack(Dispatch(Op.STATUS, 0, b'"d":{}}')).replace(b"25", b"27", 1), "malformed"),
        (b"%c5%s" % (BROKER_FORMAT, b"x" * 57) + b'"d":{}}', "malformed"),
        (pack(Dispatch(Op.STATUS, 0, b'"d":{}}', "a")).replace(b"01a", b"99a"), "malformed"),
    ],
    ids=["garbage", "a-former-version", "unknown-op", "bad-timestamp", "bad-name-length"],
)
async def test_a_bad_audience_message_is_skipped_counted_and_nothing_else_is_lost(
    redis_pair: Relays, connect: Connector, message: bytes, reason: str
) -> None:
    relays = redis_pair
    operator = await connect(relays.b, UserType.OPERATOR)
    factory = await connect(relays.a, UserType.FACTORY)
    bad_before = await _sum_metric(relays, f'{BAD_MESSAGES}{{reason="{reason}"}}')
    reconnects_before = await _sum_metric(relays, "relay_broker_reconnects_total")

    await factory.status({"n": 1})
    assert factory.user is not None
    channel = Channels(relays.prefix).observer_shard(factory.user.username)
    await _publish_raw(relays, channel, message)
    await factory.status({"n": 2})

    assert (await operator.recv_dispatch())["d"]["payload"] == {"n": 1}
    assert (await operator.recv_dispatch())["d"]["payload"] == {"n": 2}
    assert await _sum_metric(relays, f'{BAD_MESSAGES}{{reason="{reason}"}}') > bad_before
    assert await _sum_metric(relays, "relay_broker_reconnects_total") == reconnects_before


async def test_a_malformed_revocation_event_is_skipped_and_revocation_goes_on(
    redis_pair: Relays, connect: Connector
) -> None:
    relays = redis_pair
    before = await _sum_metric(relays, f'{BAD_MESSAGES}{{reason="malformed"}}')

    await _publish_raw(relays, Channels(relays.prefix).revocations, b'{"no":"user"}')

    operator = await connect(relays.b, UserType.OPERATOR)
    factory = await connect(relays.a, UserType.FACTORY)
    await factory.status("still relayed")
    assert (await operator.recv_dispatch())["d"]["payload"] == "still relayed"
    await _wait_for_sum(relays, f'{BAD_MESSAGES}{{reason="malformed"}}', before + 2)


# -- the contract, on the in-process broker -------------------------------------------


async def test_memory_broker_hands_messages_over_outside_the_publishers_call() -> None:
    handled: list[bytes] = []
    broker = MemoryBroker(
        lambda channel, message: handled.append(message), history_size=10, history_idle_seconds=60
    )
    await broker.subscribe("c")

    broker.publish("c", b"one")
    broker.publish("c", b"two")

    assert handled == []
    await asyncio.sleep(0)
    assert handled == [b"one", b"two"]


async def test_memory_broker_counts_a_failing_handler_and_the_publisher_never_sees_it() -> None:
    def failing(channel: str, message: bytes) -> None:
        raise BadMessageError("malformed", "test")

    broker = MemoryBroker(failing, history_size=10, history_idle_seconds=60)
    await broker.subscribe("c")
    before = _local_bad_messages("malformed")

    broker.publish("c", b"x")
    await asyncio.sleep(0)

    assert _local_bad_messages("malformed") == before + 1


async def test_memory_broker_hands_over_only_subscribed_channels() -> None:
    handled: list[str] = []
    broker = MemoryBroker(
        lambda channel, message: handled.append(channel), history_size=10, history_idle_seconds=60
    )
    await broker.subscribe("heard")

    broker.publish("unheard", b"x")
    broker.publish("heard", b"y")
    await asyncio.sleep(0)

    assert handled == ["heard"]


# -- the format between replicas ------------------------------------------------------


def test_a_packed_dispatch_unpacks_to_itself() -> None:
    dispatch = Dispatch(Op.STATUS, 1_700_000_000_123, b'"d":{"payload":1}}', "press-7")

    assert unpack(pack(dispatch)) == dispatch


def test_a_packed_dispatch_starts_with_its_format_version() -> None:
    packed = pack(Dispatch(Op.COMMAND, 1, b'"d":null}'))

    assert packed[0] == BROKER_FORMAT
