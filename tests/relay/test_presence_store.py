"""Presence's store steps, on both stores: Redis (real, a prefix of the test's own) and the
in-process one. Each step is what one replica asks; two replica ids stand for two replicas.

Announcements are what the store publishes atomically with a change: on Redis they are
read back from the factory's observer channel, in process from the publish callback.
On Redis Cluster (a 3-master cluster started for this module) the store publishes with
SPUBLISH on the factory's observer shard channel, heard on the master of its slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from relay_service import frames
from relay_service.broker.links import PUBLISH, SPUBLISH
from relay_service.channels import Channels
from relay_service.frames import Dispatch
from relay_service.presence import MemoryStore, PresenceStore, RedisStore
from relay_service.presence.keys import PresenceKeys
from relay_service.presence.redis import StatusKeeper
from shared.protocol import Op
from shared.redis_connect import RedisClient
from tests.redis_topologies import RedisClusterNodes, redis_cluster

NOW = 1_700_000_000_000
GRACE = 5_000
RETENTION_SECONDS = 3600
TTL_SECONDS = 30
ANNOUNCED_WITHIN = 2.0


@dataclass
class Harness:
    store: PresenceStore
    heard: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    redis: RedisClient | None = None
    keys: PresenceKeys | None = None
    channel_of: Callable[[str], str] | None = None
    publish_command: str = PUBLISH

    async def announced(self, count: int) -> list[bytes]:
        """Every announcement so far, once `count` have arrived (or fail)."""
        async with asyncio.timeout(ANNOUNCED_WITHIN):
            announced = [await self.heard.get() for _ in range(count)]
        await asyncio.sleep(0.05)  # one more would have arrived by now
        assert self.heard.empty(), f"more than {announced}: {self.heard.get_nowait()!r}"
        return announced


def channel_of(prefix: str) -> Callable[[str], str]:
    return lambda username: f"{prefix}:relay:obs:{username.lower()}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    yield from redis_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(params=["redis", "memory", "cluster"])
async def harness(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Harness]:
    if request.param == "cluster":
        nodes: RedisClusterNodes = request.getfixturevalue("cluster")
        async for on_cluster in cluster_harness(nodes, redis_prefix):
            yield on_cluster
        return
    channel = channel_of(redis_prefix)
    if request.param == "memory":
        heard: asyncio.Queue[bytes] = asyncio.Queue()

        def publish(_channel: str, message: bytes) -> None:
            heard.put_nowait(message)

        yield Harness(MemoryStore(publish, channel), heard)
        return
    client = Redis.from_url(redis_url)
    keys = PresenceKeys(redis_prefix)
    store = RedisStore(
        client,
        keys,
        channel_of=channel,
        timeout_seconds=2,
        retention_seconds=RETENTION_SECONDS,
        ttl_seconds=TTL_SECONDS,
    )
    harness = Harness(store, redis=client, keys=keys, channel_of=channel)
    pubsub = client.pubsub()
    await pubsub.psubscribe(f"{redis_prefix}:relay:obs:*")

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                harness.heard.put_nowait(message["data"])

    listener = asyncio.create_task(listen())
    try:
        yield harness
    finally:
        listener.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.delete(*[key async for key in client.scan_iter(f"{redis_prefix}:*")] or ["-"])
        await client.aclose()


async def cluster_harness(nodes: RedisClusterNodes, prefix: str) -> AsyncIterator[Harness]:
    """The store as the relay builds it on a cluster; its prefix is dropped with the cluster."""
    client = RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", node.port) for node in nodes.nodes]
    )
    channels = Channels(prefix)
    keys = PresenceKeys(prefix)
    store = RedisStore(
        client,
        keys,
        channel_of=channels.observer_shard,
        timeout_seconds=2,
        retention_seconds=RETENTION_SECONDS,
        ttl_seconds=TTL_SECONDS,
        publish_command=SPUBLISH,
    )
    harness = Harness(
        store,
        redis=client,
        keys=keys,
        channel_of=channels.observer_shard,
        publish_command=SPUBLISH,
    )
    listeners = [
        await _shard_listener(harness, port, names) for port, names in _by_master(nodes, channels)
    ]
    try:
        yield harness
    finally:
        for pubsub, task in listeners:
            task.cancel()
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await pubsub.connection_pool.disconnect()
        await client.aclose()


def _by_master(nodes: RedisClusterNodes, channels: Channels) -> list[tuple[int, list[str]]]:
    """Each master's port and the audience channels whose slot it serves."""
    owners = nodes.slot_owners()
    served: dict[int, list[str]] = {}
    for channel in channels.audiences:
        served.setdefault(owners[key_slot(channel.encode())].port, []).append(channel)
    return sorted(served.items())


async def _shard_listener(
    harness: Harness, port: int, names: list[str]
) -> tuple[PubSub, asyncio.Task[None]]:
    pubsub = Redis(host="127.0.0.1", port=port).pubsub()
    for name in names:  # one at a time: SSUBSCRIBE takes channels of one slot
        await pubsub.ssubscribe(name)

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "smessage":
                harness.heard.put_nowait(message["data"])

    return pubsub, asyncio.create_task(listen())


async def test_the_first_session_anywhere_announces_online_once(harness: Harness) -> None:
    assert await harness.store.join("a", "Press-7", 1, NOW, b"online")
    assert not await harness.store.join("b", "Press-7", 1, NOW + 1, b"again")
    assert await harness.announced(1) == [b"online"]
    [stored] = await harness.store.load(0)
    assert (stored.username, stored.online, stored.since) == ("Press-7", True, NOW)


async def test_a_replica_leaving_while_another_has_sessions_starts_no_grace(
    harness: Harness,
) -> None:
    await harness.store.join("a", "press-7", 1, NOW, b"online")
    await harness.store.join("b", "press-7", 1, NOW, b"-")
    assert await harness.store.leave("a", "press-7", NOW + GRACE) == 0
    assert await harness.store.due(NOW + 10 * GRACE, 10) == []


async def test_the_last_session_closing_goes_offline_when_the_grace_runs_out(
    harness: Harness,
) -> None:
    store = harness.store
    await store.join("a", "press-7", 1, NOW, b"online")
    assert await store.leave("a", "press-7", NOW + GRACE) == NOW + GRACE
    assert await store.due(NOW + GRACE - 1, 10) == []
    assert await store.due(NOW + GRACE, 10) == [("press-7", NOW + GRACE)]

    assert await store.settle("press-7", NOW + GRACE, b"offline")
    assert not await store.settle("press-7", NOW + GRACE, b"twice")  # another replica's sweep
    assert await harness.announced(2) == [b"online", b"offline"]
    assert await store.due(NOW + 10 * GRACE, 10) == []
    [stored] = await store.load(0)
    assert (stored.online, stored.since) == (False, NOW + GRACE)


async def test_a_session_identifying_within_the_grace_cancels_it_silently(
    harness: Harness,
) -> None:
    store = harness.store
    await store.join("a", "press-7", 1, NOW, b"online")
    await store.leave("a", "press-7", NOW + GRACE)
    assert not await store.join("b", "press-7", 1, NOW + 100, b"online again")

    assert not await store.settle("press-7", NOW + GRACE, b"offline")
    assert await harness.announced(1) == [b"online"]
    assert await store.due(NOW + 10 * GRACE, 10) == []
    [stored] = await store.load(0)
    assert (stored.online, stored.since) == (True, NOW)


async def test_a_second_leave_keeps_the_grace_already_running(harness: Harness) -> None:
    store = harness.store
    await store.join("a", "press-7", 1, NOW, b"online")
    await store.leave("a", "press-7", NOW + GRACE)
    assert await store.leave("a", "press-7", NOW + 3 * GRACE) == NOW + GRACE


async def test_the_latest_status_is_kept_and_loaded(harness: Harness) -> None:
    store = harness.store
    await store.join("a", "press-7", 1, NOW, b"online")
    await store.save_statuses([("press-7", b'{"payload":2}', NOW + 2)])
    await store.save_statuses([("press-7", b'{"payload":1}', NOW + 1)])  # older, arrived later
    [stored] = await store.load(0)
    assert (stored.status, stored.status_ts) == (b'{"payload":2}', NOW + 2)


async def test_load_lists_online_factories_and_those_offline_within_the_retention(
    harness: Harness,
) -> None:
    store = harness.store
    for name in ("old", "recent", "online"):
        await store.join("a", name, 1, NOW, b"+")
    for name, due in (("old", NOW + 10), ("recent", NOW + 1000)):
        await store.leave("a", name, due)
        await store.settle(name, due, b"-")
    names = sorted(stored.username for stored in await store.load(NOW + 500))
    assert names == ["online", "recent"]
    await store.trim(NOW + 500)
    assert sorted(stored.username for stored in await store.load(0)) == ["online", "recent"]


async def test_a_replica_is_unknown_until_it_heartbeats_and_stale_once_silent(
    harness: Harness,
) -> None:
    store = harness.store
    assert await store.heartbeat("a", NOW)
    assert not await store.heartbeat("a", NOW + 1000)
    await store.heartbeat("b", NOW + 5000)
    assert await store.stale_replicas(NOW + 2000, 10) == [("a", NOW + 1000)]


async def test_a_replica_that_heartbeated_again_is_not_forgotten(harness: Harness) -> None:
    store = harness.store
    await store.heartbeat("a", NOW)
    await store.join("a", "press-7", 1, NOW, b"online")
    await store.heartbeat("a", NOW + 1000)  # alive after all
    await store.forget_replica("a", NOW)
    assert await store.factories_of("a") == ["press-7"]
    await store.forget_replica("a", NOW + 1000)
    assert await store.factories_of("a") == []
    assert await store.heartbeat("a", NOW + 2000)  # unknown again: it must rewrite


async def test_an_offline_factory_expires_after_the_retention(harness: Harness) -> None:
    if harness.redis is None or harness.keys is None:
        pytest.skip("expiry is Redis's (the in-process store trims instead)")
    store = harness.store
    await store.join("a", "press-7", 1, NOW, b"online")
    key = harness.keys.factory("press-7")
    assert await harness.redis.ttl(key) == -1  # online: kept
    await store.leave("a", "press-7", NOW + GRACE)
    await store.settle("press-7", NOW + GRACE, b"offline")
    assert 0 < await harness.redis.ttl(key) <= RETENTION_SECONDS


async def test_every_step_loads_its_script_again_when_redis_forgot_it(harness: Harness) -> None:
    """A restarted Redis, or on a cluster a promoted replica, has none of the scripts."""
    if harness.redis is None:
        pytest.skip("scripts are Redis's")
    store = harness.store
    await store.join("a", "press-7", 1, NOW, b"online")
    forget = harness.redis.script_flush  # on a cluster: every master

    await forget()
    await store.save_statuses([("press-7", b'{"id":"st-1"}', NOW + 1)])
    await forget()
    assert await store.leave("a", "press-7", NOW + GRACE) == NOW + GRACE
    await forget()
    assert await store.settle("press-7", NOW + GRACE, b"offline")
    await forget()
    assert await store.join("a", "press-7", 1, NOW + 2 * GRACE, b"online again")
    await forget()
    await store.forget_replica("a", 0)

    assert await harness.announced(3) == [b"online", b"offline", b"online again"]
    [stored] = await store.load(0)
    assert (stored.online, stored.since, stored.status) == (True, NOW + 2 * GRACE, b'{"id":"st-1"}')


async def status_publisher(harness: Harness) -> Callable[[str, bytes], Awaitable[object]]:
    """How the broker publishes a factory's status on the harness's Redis, keeping it
    (skips in process)."""
    redis, keys, channel_of = harness.redis, harness.keys, harness.channel_of
    if redis is None or keys is None or channel_of is None:
        pytest.skip("in process, presence keeps the statuses itself")
    keeper = StatusKeeper(
        redis, keys, publish_command=harness.publish_command, retention_seconds=RETENTION_SECONDS
    )
    await keeper.load()

    async def publish(username: str, message: bytes) -> object:
        return await redis.execute_command(*keeper.command(username, channel_of(username), message))

    return publish


def status_message(username: str, ts_ms: int, data: bytes) -> bytes:
    """The broker message of a status whose `d` is `data`."""
    return frames.pack(Dispatch(Op.STATUS, ts_ms, b'"d":%b}' % data, username))


async def test_a_status_published_by_its_script_is_kept_unless_a_later_one_is(
    harness: Harness,
) -> None:
    """The broker's way of keeping statuses (Redis only): published, and kept by `ts`."""
    publish = await status_publisher(harness)
    await harness.store.join("a", "Press-7", 1, NOW, b"online")
    newer = status_message("Press-7", NOW + 2, b'{"payload":2}')
    older = status_message("Press-7", NOW + 1, b'{"payload":1}')  # arrived later

    for message in (newer, older):
        await publish("Press-7", message)

    assert await harness.announced(3) == [b"online", newer, older]
    [stored] = await harness.store.load(0)
    assert (stored.username, stored.status, stored.status_ts) == (
        "Press-7",
        b'{"payload":2}',
        NOW + 2,
    )


async def test_a_status_kept_for_an_unknown_factory_expires_after_the_retention(
    harness: Harness,
) -> None:
    publish = await status_publisher(harness)

    await publish("press-7", status_message("press-7", NOW, b'{"payload":1}'))

    assert harness.redis is not None
    assert harness.keys is not None
    assert 0 < await harness.redis.ttl(harness.keys.factory("press-7")) <= RETENTION_SECONDS
