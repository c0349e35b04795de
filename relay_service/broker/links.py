"""The broker's pub/sub connections: one to a single Redis (or Sentinel's master), one per
master on Redis Cluster.

On one server every channel is subscribed with `SUBSCRIBE` on the one connection. On a
cluster the audience channels are shard channels (`SSUBSCRIBE`): each lives on the master
serving its hash slot, so the listener opens one connection per master and subscribes
there the channels that master serves (one `SSUBSCRIBE` per channel: one command never
spans slots). Control channels (the auth service's revocation events, published with plain
`PUBLISH`, which a cluster broadcasts to every node) are subscribed on one of them. When a
slot moves to another master, Redis unsubscribes its shard channels (`sunsubscribe`): the
listener then reconnects on the new slot map (`Link.moved`).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import SlotNotCoveredError

from shared.redis_connect import REDIS_ERRORS, RedisClient

PUBLISH = "PUBLISH"
SPUBLISH = "SPUBLISH"


def publish_command(client: RedisClient) -> str:
    """How audience channels are published: sharded on a cluster."""
    return SPUBLISH if isinstance(client, RedisCluster) else PUBLISH


@dataclass(eq=False)
class Link:
    """One pub/sub connection and the channels it carries."""

    pubsub: PubSub
    plain: list[str]
    """Subscribed with SUBSCRIBE."""
    sharded: list[str] = field(default_factory=list)
    """Subscribed with SSUBSCRIBE, one command per channel."""
    owned: Redis | None = None
    """The client this link opened for itself (a cluster node's), closed with it."""
    pongs: int = 0
    moved: bool = False
    """Redis unsubscribed a shard channel: its slot moved, the slot map is stale."""

    async def subscribe(self, plain: Iterable[str] = (), sharded: Iterable[str] = ()) -> None:
        """Send the subscriptions (the caller bounds the call and reads the answers)."""
        plain = list(plain)
        if plain:
            await self.pubsub.subscribe(*plain)
        for channel in sharded:
            await self.pubsub.ssubscribe(channel)

    async def aclose(self) -> None:
        with suppress(*REDIS_ERRORS):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        if self.owned is not None:
            with suppress(*REDIS_ERRORS):
                await self.owned.aclose()


async def open_links(
    client: RedisClient, audiences: Iterable[str], controls: Iterable[str]
) -> list[Link]:
    """The links for these channels (the caller bounds the call: it may ask a cluster for
    its slot map). Nothing is subscribed yet."""
    if not isinstance(client, RedisCluster):
        return [Link(client.pubsub(), plain=[*controls, *audiences])]
    await client.nodes_manager.initialize()  # the current slot map, after any failover
    by_node: dict[str, tuple[ClusterNode, list[str]]] = {}
    for channel in audiences:
        node = client.get_node_from_key(channel)
        if node is None:
            raise SlotNotCoveredError(f"no cluster node serves {channel}")
        by_node.setdefault(node.name, (node, []))[1].append(channel)
    links = [_node_link(node, channels) for node, channels in by_node.values()]
    if not links:
        links = [_node_link(client.get_random_node(), [])]
    links[0].plain = list(controls)
    return links


def _node_link(node: ClusterNode, sharded: list[str]) -> Link:
    """A connection of its own to one cluster node, with the cluster's settings."""
    pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
    owned = Redis.from_pool(pool)
    return Link(owned.pubsub(), plain=[], sharded=sharded, owned=owned)
