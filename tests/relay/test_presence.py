"""Presence (which factories are online) and last status, seen by observers on real relays.

Behaviour on both brokers uses the shared pairs (`relays`); the grace, a replica's drain
or death, and Redis losing its data use relays of the test's own with a small grace and
TTL (`PRESENCE_GRACE_MS`, `PRESENCE_TTL_SECONDS`), so each takes a few seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from shared.identity import UserType
from shared.protocol import CloseCode, Op
from tests.docs.test_asyncapi import MESSAGES, payload_schema
from tests.redis_server import RedisServer
from tests.relay.conftest import StartRelay
from tests.relay.harness import Client, Connector, Frame, RelayProcess, Relays, wait_for_status

GRACE_MS = 600
TTL_SECONDS = 1
REWRITE_TTL_SECONDS = 3
RETRY_MAX_SECONDS = 5.0
"""The longest a replica waits before writing again what it could not write."""
SWEEP_SECONDS = 0.15
"""How often every replica sweeps with this grace (a quarter of it)."""
PRESENCE = {
    "PRESENCE_GRACE_MS": str(GRACE_MS),
    "PRESENCE_TTL_SECONDS": str(TTL_SECONDS),
    "REDIS_TIMEOUT_SECONDS": "0.5",
    "BROKER_RECONNECT_MAX_SECONDS": "0.5",
}
MARGIN_SECONDS = 3.0
"""Process scheduling on a busy test machine, on top of what the protocol allows."""
QUIET_SECONDS = GRACE_MS / 1000 + 4 * SWEEP_SECONDS + 0.2
"""Long enough for a grace, and the sweeps after it, to have announced what they would."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def factory_entry(ready: Frame | None, username: str) -> dict[str, Any] | None:
    assert ready is not None
    entries = [e for e in ready["d"]["factories"] if e["username"] == username]
    assert len(entries) <= 1, entries
    return entries[0] if entries else None


async def next_presence(client: Client, username: str, within: float) -> dict[str, Any]:
    """The next PRESENCE_UPDATE about `username` (other factories' are passed over)."""
    try:
        async with asyncio.timeout(within):
            while True:
                frame = await client.recv_presence(within)
                if frame["d"]["username"] == username:
                    data: dict[str, Any] = frame["d"]
                    return data
    except TimeoutError:
        pytest.fail(f"no PRESENCE_UPDATE about {username} within {within} s")


async def no_presence(client: Client, username: str, seconds: float) -> None:
    """No PRESENCE_UPDATE about `username` for `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                frame = await client.recv_presence(seconds + 1)
                assert frame["d"]["username"] != username, f"announced: {frame}"
    except TimeoutError:
        return


def factory_name() -> str:
    return f"press-{uuid.uuid4().hex[:10]}"


# -- on both brokers, the shared relays ----------------------------------------------


async def test_an_observer_hears_a_factory_come_online_on_the_other_replica(
    relays: Relays, connect: Connector
) -> None:
    operator = await connect(relays.b, UserType.OPERATOR)
    name = factory_name()
    before = now_ms()

    await connect(relays.a, UserType.FACTORY, username=name)

    update = await next_presence(operator, name, within=3)
    assert update["online"] is True
    assert before <= update["since"] <= now_ms()
    assert set(update) == {"username", "online", "since"}


async def test_ready_lists_a_factory_online_with_its_latest_status_exactly_as_delivered(
    relays: Relays, connect: Connector
) -> None:
    name = factory_name()
    factory = await connect(relays.a, UserType.FACTORY, username=name)
    operator = await connect(relays.b, UserType.OPERATOR)
    await factory.status({"state": "idle"}, id="st-1")
    await factory.status({"state": "running", "rpm": 1200}, id="st-2")
    await operator.recv_dispatch()
    delivered = (await operator.recv_dispatch())["d"]

    viewer = await connect(relays.b, UserType.VIEWER)

    entry = factory_entry(viewer.ready, name)
    assert entry is not None
    assert entry["online"] is True
    assert entry["status"] == delivered
    assert delivered["id"] == "st-2"
    jsonschema.validate(viewer.ready, payload_schema(MESSAGES["ready"]))  # as documented


async def test_ready_for_a_factory_carries_no_snapshot(relays: Relays, connect: Connector) -> None:
    factory = await connect(relays.a, UserType.FACTORY)
    assert factory.ready is not None
    assert "factories" not in factory.ready["d"]


# -- the grace, on relays of the test's own --------------------------------------------

Pair = tuple[RelayProcess, RelayProcess]


@pytest.fixture(params=["memory", "redis"])
def presence_pair(
    request: pytest.FixtureRequest, start_relay: StartRelay, redis_url: str, redis_prefix: str
) -> Pair:
    """Replicas A and B with a small grace: one process in process, two sharing Redis."""
    if request.param == "memory":
        only = start_relay(PRESENCE)
        return only, only
    return start_pair(start_relay, redis_url, redis_prefix)


def start_pair(
    start_relay: StartRelay, redis_url: str, redis_prefix: str, settings: dict[str, str] = PRESENCE
) -> Pair:
    a, b = (
        start_relay(settings, redis_url=redis_url, redis_prefix=redis_prefix, wait=False)
        for _ in "ab"
    )
    a.wait_ready()
    b.wait_ready()
    return a, b


async def test_a_factory_whose_last_session_closes_goes_offline_when_the_grace_runs_out(
    presence_pair: Pair, connect: Connector
) -> None:
    a, b = presence_pair
    operator = await connect(b, UserType.OPERATOR)
    name = factory_name()
    factory = await connect(a, UserType.FACTORY, username=name)
    online = await next_presence(operator, name, within=3)

    closed_at = now_ms()
    await factory.close()

    offline = await next_presence(operator, name, within=GRACE_MS / 1000 + MARGIN_SECONDS)
    assert offline["online"] is False
    assert offline["since"] >= closed_at + GRACE_MS - 50  # the grace, give or take a clock read
    assert offline["since"] > online["since"]
    assert now_ms() >= offline["since"]  # announced after the grace, not before
    viewer = await connect(b, UserType.VIEWER)
    assert factory_entry(viewer.ready, name) == {**offline, "status": None}


async def test_a_factory_reconnecting_within_the_grace_announces_nothing(
    presence_pair: Pair, connect: Connector
) -> None:
    a, b = presence_pair
    operator = await connect(b, UserType.OPERATOR)
    user = connect.tokens.user(UserType.FACTORY, username=factory_name())
    factory = await connect(a, user)
    online = await next_presence(operator, user.username, within=3)

    await factory.close()
    await connect(b, user)

    await no_presence(operator, user.username, QUIET_SECONDS)
    viewer = await connect(b, UserType.VIEWER)
    assert factory_entry(viewer.ready, user.username) == {**online, "status": None}


async def test_a_1012_drain_while_the_factory_reconnects_elsewhere_announces_nothing(
    start_relay: StartRelay, redis_url: str, redis_prefix: str, connect: Connector
) -> None:
    a, b = start_pair(start_relay, redis_url, redis_prefix)
    operator = await connect(b, UserType.OPERATOR)
    user = connect.tokens.user(UserType.FACTORY, username=factory_name())
    factory = await connect(a, user)
    await next_presence(operator, user.username, within=3)

    a.terminate()
    await factory.expect_close(CloseCode.SERVICE_RESTART)
    await connect(b, user)

    assert a.wait() == 0  # the draining replica is gone: nothing of its own decides
    await no_presence(operator, user.username, QUIET_SECONDS)


async def test_a_killed_replicas_factories_go_offline_within_the_ttl_plus_the_grace(
    start_relay: StartRelay, redis_url: str, redis_prefix: str, connect: Connector
) -> None:
    a, b = start_pair(start_relay, redis_url, redis_prefix)
    operator = await connect(b, UserType.OPERATOR)
    name = factory_name()
    await connect(a, UserType.FACTORY, username=name)
    await next_presence(operator, name, within=3)

    a.kill()  # SIGKILL: no session is closed, nothing is written
    killed_at = now_ms()

    within = TTL_SECONDS + GRACE_MS / 1000 + SWEEP_SECONDS
    offline = await next_presence(operator, name, within=within + MARGIN_SECONDS)
    assert offline["online"] is False
    assert offline["since"] <= killed_at + within * 1000


# -- Redis losing its data ------------------------------------------------------------


def _flush(server: RedisServer) -> None:
    with server.client() as client:
        client.flushall()


@pytest.mark.parametrize(
    "lose_data", [RedisServer.restart_empty, _flush], ids=["restarted_empty", "flushed"]
)
async def test_presence_and_statuses_are_written_again_when_redis_loses_its_data(
    private_redis: RedisServer,
    start_relay: StartRelay,
    connect: Connector,
    lose_data: Callable[[RedisServer], None],
) -> None:
    # A longer TTL: a replica re-reading Redis before the others wrote their factories again
    # waits a TTL before it takes one still missing for offline.
    settings = {**PRESENCE, "PRESENCE_TTL_SECONDS": str(REWRITE_TTL_SECONDS)}
    a, b = start_pair(start_relay, private_redis.url, "presence", settings)
    operator = await connect(b, UserType.OPERATOR)
    name = factory_name()
    factory = await connect(a, UserType.FACTORY, username=name)
    await next_presence(operator, name, within=3)
    await factory.status({"state": "running"})
    status = (await operator.recv_dispatch())["d"]

    lose_data(private_redis)

    # Replica A finds Redis without it (its next heartbeat) and writes its factory again.
    rewritten = await next_presence(operator, name, within=REWRITE_TTL_SECONDS + 3)
    assert rewritten["online"] is True, rewritten
    await wait_for_status(b, "/readyz", 200)
    # A replica started now seeds its snapshot from what Redis has.
    late = start_relay(settings, redis_url=private_redis.url, redis_prefix="presence")
    viewer = await connect(late, UserType.VIEWER)
    entry = factory_entry(viewer.ready, name)
    assert entry is not None
    assert (entry["online"], entry["status"]) == (True, status)


async def test_a_factory_whose_replica_died_as_redis_lost_its_data_still_goes_offline(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    a, b = start_pair(start_relay, private_redis.url, "presence")
    operator = await connect(b, UserType.OPERATOR)
    name = factory_name()
    await connect(a, UserType.FACTORY, username=name)
    await next_presence(operator, name, within=3)

    a.kill()  # nobody will write its factory again, and nothing of it is left in Redis:
    _flush(private_redis)

    # B re-reads Redis (its own heartbeat finds it emptied), misses the factory, and a TTL
    # later, still missing it, takes it for offline.
    offline = await next_presence(operator, name, within=3 * TTL_SECONDS + MARGIN_SECONDS)
    assert offline["online"] is False


async def test_a_factory_closing_while_redis_hangs_goes_offline_once_redis_answers(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    a, b = start_pair(start_relay, private_redis.url, "presence")
    operator = await connect(b, UserType.OPERATOR)
    name = factory_name()
    factory = await connect(a, UserType.FACTORY, username=name)
    await next_presence(operator, name, within=3)

    private_redis.pause()
    await factory.close()  # its replica cannot write it: kept, and retried
    await wait_for_status(a, "/readyz", 503)
    private_redis.resume()

    offline = await next_presence(operator, name, within=RETRY_MAX_SECONDS + MARGIN_SECONDS)
    assert offline["online"] is False
    await operator.send({"op": Op.HEARTBEAT, "d": None})  # the session lived through it
    assert await operator.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


async def test_a_status_is_kept_when_redis_had_forgotten_the_script_that_keeps_it(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    """A restarted Redis, or a promoted replica, has none of the relay's scripts."""
    relay = start_relay(PRESENCE, redis_url=private_redis.url, redis_prefix="presence")
    name = factory_name()
    factory = await connect(relay, UserType.FACTORY, username=name)
    operator = await connect(relay, UserType.OPERATOR)
    with private_redis.client() as redis:
        redis.script_flush()

    await factory.status({"state": "running"})
    status = (await operator.recv_dispatch())["d"]

    late = start_relay(PRESENCE, redis_url=private_redis.url, redis_prefix="presence")
    viewer = await connect(late, UserType.VIEWER)
    entry = factory_entry(viewer.ready, name)
    assert entry is not None
    assert entry["status"] == status


async def test_a_status_delivered_while_redis_hung_is_kept_once_it_answers(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    """Sent while the broker is down, a status reaches this replica's observers only; once
    the broker is back, the replica keeps it as the factory's latest for everyone."""
    relay = start_relay(PRESENCE, redis_url=private_redis.url, redis_prefix="presence")
    name = factory_name()
    factory = await connect(relay, UserType.FACTORY, username=name)
    operator = await connect(relay, UserType.OPERATOR)
    private_redis.pause()
    await wait_for_status(relay, "/readyz", 503)
    await factory.status({"state": "stopped"})
    status = (await operator.recv_dispatch())["d"]
    private_redis.resume()
    await wait_for_status(relay, "/readyz", 200)

    async with asyncio.timeout(RETRY_MAX_SECONDS + MARGIN_SECONDS):
        while True:  # kept within a save (0.5 s) of the reconnect
            late = start_relay(PRESENCE, redis_url=private_redis.url, redis_prefix="presence")
            viewer = await connect(late, UserType.VIEWER)
            entry = factory_entry(viewer.ready, name)
            assert entry is not None
            if entry["status"] == status:
                return
            late.stop()
