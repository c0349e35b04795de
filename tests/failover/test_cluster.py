"""Redis Cluster: two relays and the auth service on a 3-master cluster (`redis+cluster://`).

The audience channels are shard channels (SSUBSCRIBE/SPUBLISH), each served by the master
of its hash slot; the revocation channel is plain pub/sub (broadcast to every node); each
stream's keys share its channel's hash tag, so one Lua script appends and publishes on one
slot. The cluster is started by the tests (`tests.redis_topologies`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial

import pytest
from redis.crc import key_slot

from devtools.redis_nodes import RedisProcess
from relay_service.channels import Channels
from relay_service.presence.keys import PresenceKeys
from shared.identity import UserType
from shared.protocol import CloseCode, Op
from tests.auth.stack import ADMIN, JWT_SECRET, AuthClient, bearer
from tests.processes import AuthProcess, RelayProcess
from tests.redis_topologies import RedisClusterNodes, redis_cluster
from tests.relay.harness import Client, Connector, Tokens, metric_value, wait_for_status
from tests.relay.test_presence import factory_entry, next_presence

PREFIX = "cluster"
RELAYS = 2
RECONNECTS = "relay_broker_reconnects_total"
FOLLOWED_WITHIN = 10.0
GRACE_MS = 600
TTL_SECONDS = 5
"""A heartbeat every third of it: how soon a replica finds a master emptied."""
PRESENCE_WITHIN = GRACE_MS / 1000 + 3.0
"""The grace, plus process scheduling on a busy test machine."""


async def _more(relay: RelayProcess, sample: str, than: float) -> bool:
    return await metric_value(relay, sample) > than


async def wait_for(check: Callable[[], Awaitable[bool]], within: float = FOLLOWED_WITHIN) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    yield from redis_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def relays(
    cluster: RedisClusterNodes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[RelayProcess]]:
    workdir = tmp_path_factory.mktemp("cluster-relays")
    started = [
        RelayProcess(
            workdir,
            jwt_secret=JWT_SECRET,
            name=name,
            redis_url=cluster.url,
            redis_prefix=PREFIX,
            settings={"PRESENCE_GRACE_MS": str(GRACE_MS), "PRESENCE_TTL_SECONDS": str(TTL_SECONDS)},
        )
        for name in ("relay-a", "relay-b")
    ]
    try:
        for relay in started:
            relay.start(wait=False)
        for relay in started:
            relay.wait_ready()
        yield started
    finally:
        for relay in started:
            relay.kill()


@pytest.fixture(scope="module")
def auth(
    cluster: RedisClusterNodes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthProcess]:
    process = AuthProcess(
        tmp_path_factory.mktemp("cluster-auth"),
        jwt_secret=JWT_SECRET,
        admin=ADMIN,
        settings={"REDIS_URL": cluster.url, "REDIS_PREFIX": PREFIX},
    )
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.fixture
async def connect() -> AsyncIterator[Connector]:
    connector = Connector(Tokens(JWT_SECRET))
    yield connector
    await connector.close_all()


async def test_a_command_crosses_relays_and_the_status_comes_back(
    relays: list[RelayProcess], connect: Connector
) -> None:
    relay_a, relay_b = relays
    operator = await connect(relay_a, UserType.OPERATOR)
    factory = await connect(relay_b, UserType.FACTORY)
    assert factory.user is not None

    await operator.command({"speed": 3}, target=factory.user.username, id="own-1")
    await operator.command({"all": True}, id="all-1")
    # Two streams on two masters, heard on two connections: either may come first.
    received = [await factory.recv_dispatch(), await factory.recv_dispatch()]
    await factory.status({"speed": 3})

    streams = {dispatch["d"]["id"]: dispatch["d"]["cursor"]["stream"] for dispatch in received}
    assert streams == {"own-1": "own", "all-1": "all"}
    status = await operator.recv_dispatch()
    assert (status["op"], status["d"]["payload"]) == (Op.STATUS, {"speed": 3})


def test_the_audience_channels_are_spread_over_every_master_and_heard_by_both_relays(
    relays: list[RelayProcess], cluster: RedisClusterNodes
) -> None:
    owners = cluster.slot_owners()
    heard_on: dict[int, int] = {}
    for channel in Channels(PREFIX).audiences:
        node = owners[key_slot(channel.encode())]
        with node.client() as client:
            [(_, subscribers)] = client.pubsub_shardnumsub(channel)
        assert subscribers == RELAYS, channel
        heard_on[node.port] = heard_on.get(node.port, 0) + 1
    assert set(heard_on) == {node.port for node in cluster.nodes}, heard_on


async def test_a_factory_resumes_what_was_sent_while_it_was_away(
    relays: list[RelayProcess], connect: Connector, tokens: Tokens
) -> None:
    relay_a, relay_b = relays
    user = tokens.user(UserType.FACTORY)
    away = await connect(relay_b, user)
    assert away.ready is not None
    cursors = away.ready["d"]["cursors"]
    await away.close()
    operator = await connect(relay_a, UserType.OPERATOR)

    for number in range(3):
        await operator.command({"n": number}, target=user.username)
    back = await connect.raw(relay_a)
    await back.send({"op": Op.IDENTIFY, "d": {"token": user.token, "resume": cursors}})

    ready = await back.recv()
    assert ready["d"]["resumed"] == {"all": True, "own": True}
    replayed = [(await back.recv_dispatch())["d"]["payload"] for _ in range(3)]
    assert replayed == [{"n": 0}, {"n": 1}, {"n": 2}]


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(JWT_SECRET)


def factory_name() -> str:
    return f"press-{uuid.uuid4().hex[:10]}"


async def test_a_factory_on_one_relay_is_seen_online_with_its_status_on_the_other(
    relays: list[RelayProcess], connect: Connector
) -> None:
    """Its presence hash and observer channel on one slot, the index under `{presence}`
    on another: the update crosses the relays, and a new observer's READY lists it."""
    relay_a, relay_b = relays
    operator = await connect(relay_b, UserType.OPERATOR)
    name = factory_name()
    factory = await connect(relay_a, UserType.FACTORY, username=name)
    online = await next_presence(operator, name, within=PRESENCE_WITHIN)
    await factory.status({"state": "running"}, id="st-1")
    delivered = (await operator.recv_dispatch())["d"]

    viewer = await connect(relay_b, UserType.VIEWER)

    assert online["online"] is True
    assert factory_entry(viewer.ready, name) == {**online, "status": delivered}


async def test_a_factory_closing_on_one_relay_goes_offline_on_the_other_after_the_grace(
    relays: list[RelayProcess], connect: Connector
) -> None:
    relay_a, relay_b = relays
    operator = await connect(relay_b, UserType.OPERATOR)
    name = factory_name()
    factory = await connect(relay_a, UserType.FACTORY, username=name)
    online = await next_presence(operator, name, within=PRESENCE_WITHIN)
    closed_at = time.time_ns() // 1_000_000

    await factory.close()

    offline = await next_presence(operator, name, within=PRESENCE_WITHIN)
    assert offline["online"] is False
    assert offline["since"] >= max(closed_at + GRACE_MS - 50, online["since"])
    viewer = await connect(relay_b, UserType.VIEWER)  # the relay that announced it
    assert factory_entry(viewer.ready, name) == {**offline, "status": None}


async def test_a_logout_at_the_auth_service_closes_the_session_and_refuses_the_token(
    relays: list[RelayProcess], auth: AuthProcess
) -> None:
    """Login (its throttle's script on one slot), the revocation key and its event (plain
    pub/sub, heard through the cluster bus) all on the cluster."""
    client = AuthClient(auth)
    admin = await client.token(*ADMIN)
    _, token = await client.create_operator(admin)
    live = await Client.open(relays[1].ws_url)
    await live.send({"op": Op.IDENTIFY, "d": {"token": token}})
    assert (await live.recv())["t"] == "READY"

    async with client.http() as http:
        assert (await http.post("/auth/logout", headers=bearer(token))).status_code == 204

    await live.expect_close(CloseCode.AUTHENTICATION_FAILED)
    again = await Client.open(relays[0].ws_url)
    await again.send({"op": Op.IDENTIFY, "d": {"token": token}})
    await again.expect_close(CloseCode.AUTHENTICATION_FAILED)


async def test_the_relays_follow_a_channel_whose_slot_moves_to_another_master(
    relays: list[RelayProcess], cluster: RedisClusterNodes, connect: Connector
) -> None:
    """Redis unsubscribes a moved slot's shard channels: the relays reconnect on the new
    slot map, and what is sent there afterwards crosses them again."""
    relay_a, relay_b = relays
    factory = await connect(relay_b, UserType.FACTORY)
    assert factory.user is not None
    channel = Channels(PREFIX).factory_shard(factory.user.username)
    slot = key_slot(channel.encode())
    owner = cluster.slot_owners()[slot]
    before = [await metric_value(relay, RECONNECTS) for relay in relays]

    cluster.move_slot(slot, next(node for node in cluster.nodes if node is not owner))

    for relay, reconnects in zip(relays, before, strict=True):
        await wait_for(partial(_more, relay, RECONNECTS, reconnects))
        await wait_for_status(relay, "/readyz", 200)
    operator = await connect(relay_a, UserType.OPERATOR)
    await operator.command("after the move", target=factory.user.username)
    assert (await factory.recv_dispatch())["d"]["payload"] == "after the move"


async def test_presence_follows_its_bookkeeping_slot_to_another_master(
    relays: list[RelayProcess], cluster: RedisClusterNodes, connect: Connector
) -> None:
    """The `{presence}` slot (index, graces pending, replicas) resharded: the relays'
    next writes follow it, and a grace armed there still ends in an offline update."""
    relay_a, relay_b = relays
    slot = key_slot(PresenceKeys(PREFIX).pending.encode())
    owner = cluster.slot_owners()[slot]
    cluster.move_slot(slot, next(node for node in cluster.nodes if node is not owner))
    operator = await connect(relay_b, UserType.OPERATOR)
    name = factory_name()
    factory = await connect(relay_a, UserType.FACTORY, username=name)
    online = await next_presence(operator, name, within=PRESENCE_WITHIN)

    await factory.close()

    offline = await next_presence(operator, name, within=PRESENCE_WITHIN)
    assert (online["online"], offline["online"]) == (True, False)


async def test_a_master_that_lost_its_data_gets_its_factories_written_again(
    relays: list[RelayProcess], cluster: RedisClusterNodes, connect: Connector
) -> None:
    """One master emptied (restarted without persistence), the `{presence}` one intact:
    the relays' next heartbeat finds that master's shards without them and writes their
    factories again, so a factory there still goes offline after its grace."""
    relay_a, relay_b = relays
    keys = PresenceKeys(PREFIX)
    owners = cluster.slot_owners()
    bookkeeping = owners[key_slot(keys.pending.encode())]
    name = next(
        name
        for name in (factory_name() for _ in range(100))
        if owners[key_slot(keys.factory(name).encode())] is not bookkeeping
    )
    emptied = owners[key_slot(keys.factory(name).encode())]
    operator = await connect(relay_b, UserType.OPERATOR)
    factory = await connect(relay_a, UserType.FACTORY, username=name)
    await next_presence(operator, name, within=PRESENCE_WITHIN)

    emptied.ask("FLUSHALL")

    await wait_for(partial(_exists, emptied, keys.factory(name)), within=2 * TTL_SECONDS)
    await factory.close()
    while (await next_presence(operator, name, within=PRESENCE_WITHIN))["online"]:
        pass  # the rewrite announces online again (an update may repeat)


async def _exists(node: RedisProcess, key: str) -> bool:
    return bool(node.ask("EXISTS", key))
