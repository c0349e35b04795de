"""The relay on a bad Redis day: hung (SIGSTOP), restarted, or too slow for the publish queue.

A hung Redis keeps its TCP connections open and answers nothing. The relay notices it by
the PING its listener sends every second (`/readyz` 503, `relay_broker_up` 0), bounds
every call it makes (`REDIS_TIMEOUT_SECONDS`), refuses Identify while the revocation check
cannot answer (4000), and drops what it cannot publish in time instead of delivering it
late (`relay_broker_dropped_messages_total{reason}`). Each test runs real relay processes
on a `redis-server` of its own, with small timeouts so that each takes a few seconds; the
drop callback (`on_dropped`, for telling senders) is tested on the broker itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from relay_service import frames
from relay_service.broker import Broker, broker_for
from relay_service.channels import Channels
from relay_service.config import RelaySettings
from relay_service.relay import redis_client
from shared.identity import UserType
from shared.protocol import CloseCode, Op
from shared.redis_connect import RedisClient
from tests.redis_server import RedisServer
from tests.relay.conftest import StartRelay
from tests.relay.harness import (
    JWT_SECRET,
    Client,
    Connector,
    RelayProcess,
    Relays,
    http_get,
    metric_value,
    wait_for_metric,
    wait_for_status,
)

REDIS_TIMEOUT_SECONDS = 0.5
MAX_AGE_MS = 300
FAST = {
    "REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT_SECONDS),
    "BROKER_PUBLISH_MAX_AGE_MS": str(MAX_AGE_MS),
    "BROKER_RECONNECT_MAX_SECONDS": "0.5",
}
HEALTH_INTERVAL_SECONDS = 1.0
NOTICED_WITHIN = HEALTH_INTERVAL_SECONDS + REDIS_TIMEOUT_SECONDS + 1.5
"""A hung Redis is noticed within one PING interval plus the timeout (and a margin)."""
LATE_AFTER_SECONDS = MAX_AGE_MS / 1000 + REDIS_TIMEOUT_SECONDS
DROPPED = "relay_broker_dropped_messages_total"
LOCAL_ONLY = "relay_broker_local_only_messages_total"


def dropped(reason: str) -> str:
    return f'{DROPPED}{{reason="{reason}"}}'


def start_on(private_redis: RedisServer, start_relay: StartRelay, **settings: str) -> RelayProcess:
    return start_relay({**FAST, **settings}, redis_url=private_redis.url, redis_prefix="faults")


async def heartbeat(client: Client) -> list[dict[str, object]]:
    """A round trip: everything the client sent before has been handled by the relay.

    Returns the DELIVERY_FAILED events the relay sent this client meanwhile."""
    await client.send({"op": Op.HEARTBEAT, "d": None})
    failures = []
    while (frame := await client.recv()) != {"op": Op.HEARTBEAT_ACK, "d": None}:
        assert frame.get("t") == "DELIVERY_FAILED", frame
        failures.append(frame)
    return failures


def log_events(relay: RelayProcess) -> list[dict[str, object]]:
    lines = relay.stdout_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]


# -- readiness ------------------------------------------------------------------------


async def test_a_hung_redis_makes_readyz_503_and_a_resumed_one_200_again(
    private_redis: RedisServer, start_relay: StartRelay
) -> None:
    relay = start_on(private_redis, start_relay)
    assert await metric_value(relay, "relay_broker_up") == 1

    private_redis.pause()
    await wait_for_status(relay, "/readyz", 503, within=NOTICED_WITHIN)
    assert (await http_get(relay, "/readyz")).json() == {"detail": "broker unreachable"}
    assert await metric_value(relay, "relay_broker_up") == 0

    private_redis.resume()
    await wait_for_status(relay, "/readyz", 200, within=5)
    assert await metric_value(relay, "relay_broker_up") == 1


# -- Identify -------------------------------------------------------------------------


async def test_identify_during_a_hang_closes_4000_within_the_identify_timeout(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    identify_timeout = 1.0
    # A long Redis timeout: the hang is not noticed yet, so the lookup itself must give up.
    relay = start_on(
        private_redis,
        start_relay,
        REDIS_TIMEOUT_SECONDS="5",
        IDENTIFY_TIMEOUT_MS=str(int(identify_timeout * 1000)),
    )
    client = await connect.raw(relay)
    private_redis.pause()

    await client.send(
        {"op": Op.IDENTIFY, "d": {"token": connect.tokens.user(UserType.VIEWER).token}}
    )
    # Within the identify timeout (and a margin), long before the 5 s Redis timeout.
    reason = await client.expect_close(CloseCode.UNKNOWN_ERROR, within=identify_timeout + 1)

    assert reason == "revocation check unavailable, retry"
    events = log_events(relay)
    warnings = [e for e in events if e.get("event") == "revocation_check_unavailable"]
    assert [e["level"] for e in warnings] == ["warning"], warnings
    assert not any("exception" in e or e.get("level") == "error" for e in events), events


async def test_identify_while_redis_is_known_unreachable_closes_4000_at_once(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    relay = start_on(private_redis, start_relay)
    private_redis.pause()
    await wait_for_status(relay, "/readyz", 503, within=NOTICED_WITHIN)
    client = await connect.raw(relay)

    await client.send(
        {"op": Op.IDENTIFY, "d": {"token": connect.tokens.user(UserType.VIEWER).token}}
    )

    reason = await client.expect_close(CloseCode.UNKNOWN_ERROR)
    assert reason == "revocation check unavailable, retry"
    warnings = [e for e in log_events(relay) if e.get("event") == "revocation_check_unavailable"]
    assert [e["error"] for e in warnings] == ["broker unreachable"]  # not a lookup timing out


# -- publishing -----------------------------------------------------------------------


async def test_statuses_held_by_a_hung_redis_are_dropped_as_too_old_and_fresh_ones_flow_after(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    relay = start_on(private_redis, start_relay)
    factory = await connect(relay, UserType.FACTORY)
    viewer = await connect(relay, UserType.VIEWER)
    await factory.status("before")
    assert (await viewer.recv_dispatch())["d"]["payload"] == "before"

    private_redis.pause()
    hung_at = time.monotonic()
    await factory.status("hung-0")  # the publisher sends it and waits on Redis...
    await heartbeat(factory)
    for n in range(1, 5):  # ...while these wait behind it, past the max age
        await factory.status(f"hung-{n}")
    await wait_for_metric(relay, dropped("too_old"), 4, within=NOTICED_WITHIN)
    assert await metric_value(relay, dropped("publish_failed")) == 1  # hung-0's pipeline
    await wait_for_status(relay, "/readyz", 503, within=NOTICED_WITHIN)
    # Hang on until even hung-0, which sits in Redis's socket buffer, is past any use.
    await asyncio.sleep(max(0.0, hung_at + LATE_AFTER_SECONDS + 0.2 - time.monotonic()))
    private_redis.resume()
    await wait_for_status(relay, "/readyz", 200, within=5)

    await factory.status("after")

    assert (await viewer.recv_dispatch())["d"]["payload"] == "after"


async def test_a_status_sent_while_redis_is_known_unreachable_goes_to_this_replica_only(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    """Degraded, not dead: the replica's own observers still get it, the sender hears
    `local_only`, and it is never published later."""
    relay = start_on(private_redis, start_relay)
    factory = await connect(relay, UserType.FACTORY)
    viewer = await connect(relay, UserType.VIEWER)
    private_redis.pause()
    await wait_for_status(relay, "/readyz", 503, within=NOTICED_WITHIN)

    await factory.status("local")
    failures = await heartbeat(factory)

    assert (await viewer.recv_dispatch())["d"]["payload"] == "local"
    assert [failure["d"]["reason"] for failure in failures] == ["local_only"]  # type: ignore[index]
    assert await metric_value(relay, LOCAL_ONLY) == 1
    assert await metric_value(relay, dropped("unreachable")) == 0


async def test_the_publish_queue_drops_and_counts_what_passes_its_byte_bound(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    # A Redis timeout long enough for the queue to fill before the hang is noticed.
    relay = start_on(
        private_redis,
        start_relay,
        REDIS_TIMEOUT_SECONDS="3",
        BROKER_PUBLISH_QUEUE_LIMIT_BYTES="4096",
    )
    factory = await connect(relay, UserType.FACTORY)
    payload = "x" * 1500  # with its stamp, two fit in 4096 bytes and three do not
    private_redis.pause()
    await factory.status(payload)  # taken by the publisher, which waits on Redis
    await heartbeat(factory)

    for _ in range(5):
        await factory.status(payload)
    failures = await heartbeat(factory)

    assert await metric_value(relay, dropped("queue_full")) == 3
    assert len(failures) == 3
    assert 3000 < await metric_value(relay, "relay_broker_publish_queue_bytes") <= 4096


async def test_a_message_arriving_from_redis_past_its_time_is_not_delivered(
    redis_pair: Relays, connect: Connector
) -> None:
    """A publish Redis held (a partition, a hung server) and let go much later."""
    relays = redis_pair
    viewer = await connect(relays.b, UserType.VIEWER)
    factory = await connect(relays.a, UserType.FACTORY)
    late_before = await metric_value(relays.b, dropped("late"))
    stale_ms = int(time.time() * 1000) - 60_000
    body = frames.dispatch_body(Op.STATUS, None, {"payload": "stale", "ts": stale_ms})
    assert relays.redis_url is not None
    redis = Redis.from_url(relays.redis_url)
    try:
        assert factory.user is not None
        channel = Channels(relays.prefix).observer_shard(factory.user.username)
        stale = frames.Dispatch(Op.STATUS, stale_ms, body, factory.user.username)
        await redis.publish(channel, frames.pack(stale))
    finally:
        await redis.aclose()

    await factory.status("fresh")

    assert (await viewer.recv_dispatch())["d"]["payload"] == "fresh"
    assert await metric_value(relays.b, dropped("late")) == late_before + 1


# -- a restarted Redis ----------------------------------------------------------------


async def test_after_a_redis_restart_the_first_identify_and_publish_succeed(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    """Every pooled connection is stale after the restart: the bounded retries reconnect."""
    relay = start_on(private_redis, start_relay)
    factory = await connect(relay, UserType.FACTORY)
    viewer = await connect(relay, UserType.VIEWER)
    await factory.status("before")
    assert (await viewer.recv_dispatch())["d"]["payload"] == "before"

    await asyncio.to_thread(private_redis.restart_empty)
    await wait_for_status(relay, "/readyz", 200, within=5)
    second_viewer = await connect(relay, UserType.VIEWER)
    await factory.status("after")

    for client in (viewer, second_viewer):
        assert (await client.recv_dispatch())["d"]["payload"] == "after"
    for reason in ("publish_failed", "unreachable"):
        assert await metric_value(relay, dropped(reason)) == 0


# -- the broker's drop callback -------------------------------------------------------


def local_dropped(reason: str) -> float:
    return REGISTRY.get_sample_value(DROPPED, {"reason": reason}) or 0.0


def queued_bytes() -> float:
    return REGISTRY.get_sample_value("relay_broker_publish_queue_bytes") or 0.0


class Heard:
    """What the broker's listener hands over."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def __call__(self, channel: str, message: bytes) -> None:
        self.messages.append(message)


@pytest.fixture
async def make_broker() -> AsyncIterator[Callable[..., Broker]]:
    """A Redis broker in this process, built as the relay builds it, on given settings."""
    made: list[tuple[Broker, RedisClient]] = []

    def make(redis_url: str, on_message: Heard, **settings: object) -> Broker:
        relay_settings = RelaySettings(
            jwt_secret=JWT_SECRET,
            redis_url=redis_url,
            redis_timeout_seconds=REDIS_TIMEOUT_SECONDS,
            broker_publish_max_age_ms=MAX_AGE_MS,
            _env_file=None,
            **settings,  # type: ignore[arg-type]
        )
        client = redis_client(relay_settings)
        assert client is not None
        broker = broker_for(relay_settings, client, on_message)
        made.append((broker, client))
        return broker

    yield make
    for broker, client in made:
        await broker.disconnect()
        await client.aclose()


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_message_published_while_unreachable_is_heard_here_only_and_reported(
    private_redis: RedisServer, make_broker: Callable[..., Broker]
) -> None:
    heard = Heard()
    broker = make_broker(private_redis.url, heard)  # not connected: unreachable
    reasons: list[str] = []
    before = local_dropped("unreachable")

    broker.publish("faults:ch", b"message", reasons.append)

    assert reasons == ["local_only"]
    await until(lambda: heard.messages == [b"message"])
    assert local_dropped("unreachable") == before


async def test_each_dropped_message_calls_its_on_dropped_once_with_its_reason(
    private_redis: RedisServer, make_broker: Callable[..., Broker]
) -> None:
    broker = make_broker(private_redis.url, Heard(), broker_publish_queue_limit_bytes=1024)
    await broker.connect()
    await until(lambda: broker.ready)
    reasons: dict[str, list[str]] = {name: [] for name in ("first", "second", "third", "fourth")}
    message = b"m" * 400

    private_redis.pause()
    broker.publish("faults:ch", message, reasons["first"].append)
    assert queued_bytes() == len(message)
    await until(lambda: queued_bytes() == 0)  # the publisher took it and waits on Redis
    for name in ("second", "third", "fourth"):  # 400 + 400 fit in 1024 bytes, 1200 do not
        broker.publish("faults:ch", message, reasons[name].append)
    await until(lambda: all(reasons.values()))

    assert reasons == {
        "first": ["publish_failed"],  # its pipeline outlasted the Redis timeout
        "second": ["too_old"],  # waited behind it past the max age
        "third": ["too_old"],
        "fourth": ["queue_full"],
    }


async def test_a_published_message_is_heard_and_never_reported_dropped(
    private_redis: RedisServer, make_broker: Callable[..., Broker]
) -> None:
    heard = Heard()
    broker = make_broker(private_redis.url, heard)
    await broker.connect()
    await broker.subscribe("faults:ch")
    await until(lambda: broker.ready)
    reasons: list[str] = []

    broker.publish("faults:ch", b"delivered", reasons.append)
    await until(lambda: heard.messages == [b"delivered"])

    assert reasons == []


# -- telling the sender (DELIVERY_FAILED) ---------------------------------------------


async def test_a_command_sent_while_redis_is_unreachable_reaches_this_replicas_factory(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    """Delivered live, without a cursor (no stream kept it); its sender hears that it
    reached this replica's sessions only."""
    relay = start_on(private_redis, start_relay)
    operator = await connect(relay, UserType.OPERATOR)
    factory = await connect(relay, UserType.FACTORY)
    private_redis.pause()
    await wait_for_status(relay, "/readyz", 503, within=NOTICED_WITHIN)

    assert factory.user is not None
    await operator.command("stop", target=factory.user.username, id="cmd-9")

    delivered = await factory.recv_dispatch()
    assert (delivered["d"]["id"], delivered["d"]["payload"]) == ("cmd-9", "stop")
    assert "cursor" not in delivered["d"]
    frame = await operator.recv_dispatch()
    assert frame["t"] == "DELIVERY_FAILED"
    assert frame["d"] == {"id": "cmd-9", "reason": "local_only"}


async def test_a_message_delivered_locally_is_not_delivered_again_when_redis_comes_back(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    relay = start_on(private_redis, start_relay)
    operator = await connect(relay, UserType.OPERATOR)
    factory = await connect(relay, UserType.FACTORY)
    private_redis.pause()
    await wait_for_status(relay, "/readyz", 503, within=NOTICED_WITHIN)
    await operator.command("stop", id="cmd-10")
    assert (await factory.recv_dispatch())["d"]["id"] == "cmd-10"
    assert (await operator.recv_dispatch())["d"]["reason"] == "local_only"

    private_redis.resume()
    await wait_for_status(relay, "/readyz", 200, within=5)

    await connect.assert_nothing_relayed(relay, factory)


async def test_a_message_sent_while_redis_is_unreachable_does_not_reach_other_replicas(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    here = start_on(private_redis, start_relay)
    there = start_on(private_redis, start_relay)
    operator = await connect(here, UserType.OPERATOR)
    elsewhere = await connect(there, UserType.FACTORY)
    private_redis.pause()
    await wait_for_status(here, "/readyz", 503, within=NOTICED_WITHIN)
    await operator.command("stop", id="cmd-11")
    assert (await operator.recv_dispatch())["d"]["reason"] == "local_only"

    private_redis.resume()
    for relay in (here, there):
        await wait_for_status(relay, "/readyz", 200, within=5)

    await connect.assert_nothing_relayed(here, elsewhere)
