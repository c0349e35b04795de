"""Commands across reconnects (SPEC 5.2): streams, cursors, resume, expiry, gap filling.

Stream `own` (targeted messages) is used where a test counts messages exactly: the shared
relay pair's stream `all` also carries other tests' broadcasts. Tests about stream `all`
start relays of their own.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.identity import UserType
from shared.protocol import CloseCode, Op
from tests.redis_server import RedisServer, private_redis_server
from tests.relay.conftest import StartRelay
from tests.relay.harness import (
    Client,
    Connector,
    Relays,
    User,
    metric_value,
)

EPOCH = re.compile(r"^[0-9a-f]{16}$")
FOREIGN_EPOCH = "0123456789abcdef"
LONG_TTL_MS = 60_000
SHORT_TTL_MS = 150
GAP_METRIC = 'relay_stream_replayed_messages_total{reason="gap"}'
FAST_BROKER = {"BROKER_RECONNECT_MAX_SECONDS": "0.5", "REDIS_TIMEOUT_SECONDS": "1"}

StartOwn = Any
"""`start_own(settings)`: a relay of the test's own, on the broker of the parameter."""


@pytest.fixture(params=["memory", "redis"])
def start_own(request: pytest.FixtureRequest, start_relay: StartRelay) -> StartOwn:
    """Relays of this test's own (their own streams), on either broker."""
    if request.param == "memory":
        return lambda settings=None: start_relay(settings)
    url = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    return lambda settings=None: start_relay(settings, redis_url=url, redis_prefix=prefix)


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis that keeps every write across a restart (append-only, fsync always)."""
    yield from private_redis_server(tmp_path / "redis", persistent=True)


def cursors(client: Client) -> dict[str, Any]:
    assert client.ready is not None
    result: dict[str, Any] = client.ready["d"]["cursors"]
    return result


async def send_targeted(operator: Client, factory: User, count: int, **data: object) -> list[str]:
    """`count` commands to `factory`, ids returned in the order sent."""
    ids = [f"cmd-{uuid.uuid4().hex[:8]}-{n}" for n in range(count)]
    for message_id in ids:
        await operator.command({"n": message_id}, target=factory.username, id=message_id, **data)
    return ids


async def receive_ids(factory: Client, count: int) -> list[str]:
    return [(await factory.recv_dispatch())["d"]["id"] for _ in range(count)]


async def delivered_to(relay: Any, connect: Connector, user: User) -> str:
    """Wait until a message to `user` is delivered through `relay` (the sends before it were
    published): an own-stream marker, received by a short-lived session of that factory.
    Returns the marker's id."""
    probe = await connect(relay, user)
    operator = await connect(relay, UserType.OPERATOR)
    [marker] = await send_targeted(operator, user, 1)
    assert (await probe.recv_dispatch())["d"]["id"] == marker
    await probe.close()
    return marker


# -- READY and dispatches ---------------------------------------------------------------


async def test_a_factory_ready_carries_a_cursor_for_each_stream(
    relays: Relays, connect: Connector
) -> None:
    factory = await connect(relays.a, UserType.FACTORY)

    assert factory.ready is not None
    assert set(factory.ready["d"]["cursors"]) == {"all", "own"}
    for cursor in cursors(factory).values():
        assert EPOCH.match(cursor["epoch"])
        assert isinstance(cursor["offset"], int)
    assert "resumed" not in factory.ready["d"]


async def test_observers_ready_carries_no_cursors(relays: Relays, connect: Connector) -> None:
    operator = await connect(relays.a, UserType.OPERATOR)

    assert operator.ready is not None
    assert "cursors" not in operator.ready["d"]


async def test_a_fresh_factory_starts_at_the_head_of_its_own_stream(
    relays: Relays, connect: Connector, tokens: Any
) -> None:
    user = tokens.user(UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)
    await send_targeted(operator, user, 2)
    await delivered_to(relays.b, connect, user)

    factory = await connect(relays.b, user)

    assert cursors(factory)["own"]["offset"] == 3
    await factory.expect_nothing()


async def test_a_targeted_command_carries_expires_at_from_ttl_ms_and_its_own_cursor(
    relays: Relays, connect: Connector
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)
    assert factory.user is not None

    await operator.command("go", target=factory.user.username, ttl_ms=1234)

    d = (await factory.recv_dispatch())["d"]
    assert d["expires_at"] == d["ts"] + 1234
    own = cursors(factory)["own"]
    assert d["cursor"] == {"stream": "own", "epoch": own["epoch"], "offset": own["offset"] + 1}


async def test_an_operator_event_to_factories_is_kept_and_carries_a_cursor(
    relays: Relays, connect: Connector
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)
    assert factory.user is not None

    await operator.event("RECIPE", {"r": 1}, target=factory.user.username)

    frame = await factory.recv_dispatch()
    assert (frame["op"], frame["t"], frame["d"]["cursor"]["stream"]) == (Op.EVENT, "RECIPE", "own")


async def test_statuses_carry_neither_expires_at_nor_cursor(
    relays: Relays, connect: Connector
) -> None:
    viewer = await connect(relays.b, UserType.VIEWER)
    factory = await connect(relays.a, UserType.FACTORY)

    await factory.status("ok")

    d = (await viewer.recv_dispatch())["d"]
    assert "expires_at" not in d
    assert "cursor" not in d


async def test_ttl_ms_above_the_maximum_closes_4002(relays: Relays, connect: Connector) -> None:
    operator = await connect(relays.a, UserType.OPERATOR)

    await operator.command("go", ttl_ms=3_600_001)

    await operator.expect_close(CloseCode.DECODE_ERROR)


async def test_ttl_ms_on_a_factory_event_closes_4002(relays: Relays, connect: Connector) -> None:
    factory = await connect(relays.a, UserType.FACTORY)

    await factory.event("ALARM", "hot", ttl_ms=1000)

    await factory.expect_close(CloseCode.DECODE_ERROR)


async def test_a_malformed_resume_closes_4002(
    relays: Relays, connect: Connector, tokens: Any
) -> None:
    client = await connect.raw(relays.a)

    await client.send(
        {
            "op": Op.IDENTIFY,
            "d": {"token": tokens.user(UserType.FACTORY).token, "resume": {"own": {"offset": 1}}},
        }
    )

    await client.expect_close(CloseCode.DECODE_ERROR)


async def test_resume_from_an_operator_is_ignored(
    relays: Relays, connect: Connector, tokens: Any
) -> None:
    client = await connect.raw(relays.a)

    ready = await client.identify(
        tokens.user(UserType.OPERATOR), resume={"own": {"epoch": FOREIGN_EPOCH, "offset": 1}}
    )

    assert "resumed" not in ready["d"]
    assert "cursors" not in ready["d"]


# -- resume -----------------------------------------------------------------------------


async def test_a_resumed_factory_gets_exactly_what_it_missed_in_order_before_live(
    relays: Relays, connect: Connector, tokens: Any
) -> None:
    user = tokens.user(UserType.FACTORY)
    first = await connect(relays.a, user)
    operator = await connect(relays.a, UserType.OPERATOR)
    before = await send_targeted(operator, user, 2)
    assert await receive_ids(first, 2) == before
    own = {"epoch": cursors(first)["own"]["epoch"], "offset": cursors(first)["own"]["offset"] + 2}
    await first.close()

    missed = await send_targeted(operator, user, 3)
    marker = await delivered_to(relays.b, connect, user)
    resumed = await connect.raw(relays.b)
    ready = await resumed.identify(user, resume={"own": own})
    live = await send_targeted(operator, user, 1)

    assert ready["d"]["resumed"] == {"all": False, "own": True}
    assert ready["d"]["cursors"]["own"] == own
    assert await receive_ids(resumed, 5) == [*missed, marker, *live]
    await resumed.expect_nothing()


async def test_a_cursor_of_another_epoch_resumes_nothing(
    relays: Relays, connect: Connector, tokens: Any
) -> None:
    user = tokens.user(UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)
    await send_targeted(operator, user, 2)
    await delivered_to(relays.b, connect, user)
    client = await connect.raw(relays.b)

    ready = await client.identify(user, resume={"own": {"epoch": FOREIGN_EPOCH, "offset": 0}})

    assert ready["d"]["resumed"]["own"] is False
    assert ready["d"]["cursors"]["own"]["offset"] == 3  # the head: starts afresh
    await client.expect_nothing()


async def test_an_empty_epoch_resumes_nothing(
    relays: Relays, connect: Connector, tokens: Any
) -> None:
    user = tokens.user(UserType.FACTORY)
    client = await connect.raw(relays.a)

    ready = await client.identify(user, resume={"own": {"epoch": "", "offset": 0}})

    assert ready["d"]["resumed"]["own"] is False


async def test_a_cursor_past_the_head_resumes_nothing(
    relays: Relays, connect: Connector, tokens: Any
) -> None:
    user = tokens.user(UserType.FACTORY)
    fresh = await connect(relays.a, user)
    own = cursors(fresh)["own"]
    await fresh.close()
    client = await connect.raw(relays.a)

    ready = await client.identify(user, resume={"own": {**own, "offset": own["offset"] + 5}})

    assert ready["d"]["resumed"]["own"] is False
    assert ready["d"]["cursors"]["own"] == own


async def test_expired_messages_are_never_replayed(
    relays: Relays, connect: Connector, tokens: Any
) -> None:
    user = tokens.user(UserType.FACTORY)
    fresh = await connect(relays.a, user)
    own = cursors(fresh)["own"]
    await fresh.close()
    operator = await connect(relays.a, UserType.OPERATOR)
    await send_targeted(operator, user, 2, ttl_ms=SHORT_TTL_MS)
    [kept] = await send_targeted(operator, user, 1, ttl_ms=LONG_TTL_MS)
    await asyncio.sleep(SHORT_TTL_MS / 1000 + 0.2)
    client = await connect.raw(relays.b)

    ready = await client.identify(user, resume={"own": own})

    assert ready["d"]["resumed"]["own"] is True
    assert await receive_ids(client, 1) == [kept]
    await client.expect_nothing()


async def test_a_trimmed_history_resumes_nothing(
    start_own: StartOwn, connect: Connector, tokens: Any
) -> None:
    relay = start_own({"COMMAND_HISTORY_SIZE": "3"})
    user = tokens.user(UserType.FACTORY)
    fresh = await connect(relay, user)
    own = cursors(fresh)["own"]
    await fresh.close()
    operator = await connect(relay, UserType.OPERATOR)
    await send_targeted(operator, user, 5, ttl_ms=LONG_TTL_MS)
    await delivered_to(relay, connect, user)
    client = await connect.raw(relay)

    ready = await client.identify(user, resume={"own": own})

    assert ready["d"]["resumed"]["own"] is False
    assert ready["d"]["cursors"]["own"]["offset"] == 6
    await client.expect_nothing()


async def test_a_history_trimmed_only_of_expired_messages_still_resumes(
    start_own: StartOwn, connect: Connector, tokens: Any
) -> None:
    relay = start_own({"COMMAND_HISTORY_SIZE": "3"})
    user = tokens.user(UserType.FACTORY)
    fresh = await connect(relay, user)
    own = cursors(fresh)["own"]
    await fresh.close()
    operator = await connect(relay, UserType.OPERATOR)
    await send_targeted(operator, user, 3, ttl_ms=SHORT_TTL_MS)
    await asyncio.sleep(SHORT_TTL_MS / 1000 + 0.2)
    kept = await send_targeted(operator, user, 2, ttl_ms=LONG_TTL_MS)
    marker = await delivered_to(relay, connect, user)  # offsets 4-6 kept, 1-3 trimmed
    client = await connect.raw(relay)

    ready = await client.identify(user, resume={"own": own})

    assert ready["d"]["resumed"]["own"] is True
    assert await receive_ids(client, 3) == [*kept, marker]
    await client.expect_nothing()


async def test_stream_all_resumes_every_factory_with_the_broadcasts_it_missed(
    start_own: StartOwn, connect: Connector, tokens: Any
) -> None:
    relay = start_own()
    user = tokens.user(UserType.FACTORY)
    fresh = await connect(relay, user)
    all_cursor = cursors(fresh)["all"]
    await fresh.close()
    operator = await connect(relay, UserType.OPERATOR)
    for n in range(3):
        await operator.command({"n": n}, id=f"all-{n}")
    await delivered_to(relay, connect, user)
    client = await connect.raw(relay)

    ready = await client.identify(user, resume={"all": all_cursor})

    assert ready["d"]["resumed"] == {"all": True, "own": False}
    assert await receive_ids(client, 3) == ["all-0", "all-1", "all-2"]
    await client.expect_nothing()


# -- replicas and Redis failures ---------------------------------------------------------


async def test_a_factory_resumes_on_another_replica_after_a_1012_drain(
    redis_url: str, redis_prefix: str, start_relay: StartRelay, connect: Connector, tokens: Any
) -> None:
    a, b = (start_relay(redis_url=redis_url, redis_prefix=redis_prefix) for _ in range(2))
    user = tokens.user(UserType.FACTORY)
    factory = await connect(a, user)
    own = cursors(factory)["own"]
    operator = await connect(b, UserType.OPERATOR)

    a.terminate()
    await factory.expect_close(CloseCode.SERVICE_RESTART)
    missed = await send_targeted(operator, user, 4)
    marker = await delivered_to(b, connect, user)
    client = await connect.raw(b)
    ready = await client.identify(user, resume={"own": own})

    assert ready["d"]["resumed"]["own"] is True
    assert await receive_ids(client, 5) == [*missed, marker]
    await client.expect_nothing()


async def test_a_replica_whose_broker_connection_dropped_fills_the_gap_from_the_streams(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector, tokens: Any
) -> None:
    a, b = (
        start_relay(FAST_BROKER, redis_url=private_redis.url, redis_prefix="gap") for _ in range(2)
    )
    user = tokens.user(UserType.FACTORY)
    factory = await connect(a, user)
    operator = await connect(b, UserType.OPERATOR)
    gap_before = await metric_value(a, GAP_METRIC)

    a.process.send_signal(signal.SIGSTOP)  # A cannot reconnect before the gap is made
    try:
        with private_redis.client() as redis:
            [listener] = [
                client
                for client in redis.client_list(_type="pubsub")
                if client["name"].endswith(f":{a.process.pid}")
            ]
            redis.client_kill_filter(_id=listener["id"])
        sent = await send_targeted(operator, user, 20)
        await asyncio.sleep(0.5)  # published by B meanwhile, heard by no listener of A
    finally:
        a.process.send_signal(signal.SIGCONT)

    assert await receive_ids(factory, 20) == sent  # in order, none twice
    await factory.expect_nothing()
    assert await metric_value(a, GAP_METRIC) > gap_before


async def test_an_emptied_redis_starts_new_epochs_and_nothing_resumes(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector, tokens: Any
) -> None:
    relay = start_relay(FAST_BROKER, redis_url=private_redis.url, redis_prefix="emptied")
    user = tokens.user(UserType.FACTORY)
    factory = await connect(relay, user)
    before = cursors(factory)
    await factory.close()

    with private_redis.client() as redis:
        redis.flushall()
    client = await connect.raw(relay)
    ready = await client.identify(user, resume=before)

    assert ready["d"]["resumed"] == {"all": False, "own": False}
    for stream in ("all", "own"):
        assert ready["d"]["cursors"][stream]["epoch"] != before[stream]["epoch"]
        assert ready["d"]["cursors"][stream]["offset"] == 0


async def test_a_redis_restart_loses_no_command_within_its_ttl(
    persistent_redis: RedisServer, start_relay: StartRelay, connect: Connector, tokens: Any
) -> None:
    """Every command is delivered once, or refused with DELIVERY_FAILED: none lost silently."""
    a, b = (
        start_relay(FAST_BROKER, redis_url=persistent_redis.url, redis_prefix="restart")
        for _ in range(2)
    )
    user = tokens.user(UserType.FACTORY)
    factory = await connect(a, user)
    operator = await connect(b, UserType.OPERATOR)
    sent: list[str] = []

    async def keep_sending(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            sent.extend(await send_targeted(operator, user, 1, ttl_ms=LONG_TTL_MS))
            await asyncio.sleep(0.01)

    sending = asyncio.create_task(keep_sending(3.0))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(persistent_redis.restart)
    await sending
    marker = await delivered_to(a, connect, user)

    delivered, failed = await _delivered_and_failed(factory, operator, marker)
    assert len(delivered) == len(set(delivered))  # none twice
    assert sorted(delivered + failed) == sorted(sent)
    assert delivered == [message_id for message_id in sent if message_id in set(delivered)]


async def _delivered_and_failed(
    factory: Client, operator: Client, marker: str
) -> tuple[list[str], list[str]]:
    """What the factory received up to `marker`, and what the operator heard had failed."""
    delivered = []
    while (message_id := (await factory.recv_dispatch())["d"]["id"]) != marker:
        delivered.append(message_id)
    failed = []
    while True:
        try:
            frame = await operator.recv_dispatch(within=0.5)
        except pytest.fail.Exception:
            break
        if frame.get("t") == "DELIVERY_FAILED":
            failed.append(frame["d"]["id"])
    return delivered, failed


async def test_a_redis_that_lost_the_scripts_still_keeps_and_delivers(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector, tokens: Any
) -> None:
    relay = start_relay(FAST_BROKER, redis_url=private_redis.url, redis_prefix="noscript")
    user = tokens.user(UserType.FACTORY)
    with private_redis.client() as redis:
        redis.script_flush()
    factory = await connect(relay, user)  # READY reads the streams
    operator = await connect(relay, UserType.OPERATOR)
    with private_redis.client() as redis:
        redis.script_flush()

    sent = await send_targeted(operator, user, 3)

    assert await receive_ids(factory, 3) == sent
