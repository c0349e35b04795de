"""Redis pub/sub as the relays use it: one Redis against a 3-master cluster (sharded pub/sub).

Every relay replica subscribes to every audience channel, so each message published is
delivered once per replica: Redis's work is deliveries (published x replicas). This starts
its own `redis-server`s (one, then a 3-master cluster) on free loopback ports, subscribes
`REPLICAS` connections per node to the 16 observer channels a node owns (as the relays do:
`SUBSCRIBE` on one server, `SSUBSCRIBE` on a cluster), and publishes pipelined statuses of
`PAYLOAD_BYTES` (`PUBLISH` / `SPUBLISH`, as fast as the nodes take them) for `SECONDS`.

It reports messages and bytes per second published and delivered, per node, and each
node's CPU: the delivered rate at 100 % of one core is where a node runs out. The load
generator is this Python process, on the same 2 cores as Redis: its own CPU is printed too,
and on a larger machine each node would do more.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from redis.crc import key_slot

from devtools.redis_nodes import RedisClusterNodes, RedisProcess

SECONDS = 5.0
REPLICAS = 3
PAYLOAD_BYTES = 200
"""About a status's broker message (v2 header, sender, a small JSON payload)."""
CHANNELS = [f"bench:relay:{{obs:{shard:02d}}}" for shard in range(16)]
PIPELINE = 500
IN_FLIGHT = 4
"""Pipelines a publisher keeps unanswered: enough to keep a node busy, bounded."""
MAX_BEHIND = 20 * PIPELINE
"""Deliveries a node's subscribers may lag behind its publishes before the publisher
waits: past Redis's `client-output-buffer-limit pubsub` a lagging subscriber is dropped
(a relay replica would reconnect and miss messages), so the publisher keeps the pace the
subscribers read at."""
READ_BYTES = 1 << 20


def _resp(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


@dataclass
class Node:
    """One Redis node: the channels it owns, and what its subscribers counted."""

    process: RedisProcess
    channels: list[str]
    delivered_bytes: int = 0
    published: int = 0
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)

    def behind(self, frame_bytes: int) -> int:
        return self.published * REPLICAS - self.delivered_bytes // frame_bytes

    def cpu_seconds(self) -> float:
        assert self.process.pid is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


async def _subscriber(node: Node, command: bytes, frame: int, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.process.port)
    for channel in node.channels:  # one slot each: a sharded subscribe never spans slots
        writer.write(_resp(command, channel.encode()))
    confirmations = 0
    while confirmations < len(node.channels):  # each confirmation ends with ":<count>\r\n"
        line = await reader.readline()
        confirmations += line.startswith(b":")
    while not stop.is_set():
        try:
            chunk = await asyncio.wait_for(reader.read(READ_BYTES), 0.2)
        except TimeoutError:
            continue
        if not chunk:
            raise ConnectionError(f"node {node.process.port} dropped a subscriber (too slow?)")
        node.delivered_bytes += len(chunk)
        if node.behind(frame) <= MAX_BEHIND:
            node.caught_up.set()
    writer.close()


async def _publisher(node: Node, command: bytes, frame: int, stop: asyncio.Event) -> None:
    payload = b"x" * PAYLOAD_BYTES
    batch = b"".join(
        _resp(command, node.channels[i % len(node.channels)].encode(), payload)
        for i in range(PIPELINE)
    )
    reply_bytes = len(b":%d\r\n" % REPLICAS) * PIPELINE
    reader, writer = await asyncio.open_connection("127.0.0.1", node.process.port)
    in_flight = 0
    while not stop.is_set() or in_flight:
        while in_flight < IN_FLIGHT and not stop.is_set():
            writer.write(batch)
            in_flight += 1
        await writer.drain()
        await reader.readexactly(reply_bytes)
        in_flight -= 1
        node.published += PIPELINE
        if node.behind(frame) > MAX_BEHIND:
            node.caught_up.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(node.caught_up.wait(), 0.2)
    writer.close()


def _frame_bytes(kind: bytes) -> int:
    """What one delivery costs on the wire (every channel name has the same length)."""
    return len(_resp(kind, CHANNELS[0].encode(), b"x" * PAYLOAD_BYTES))


async def _measure(nodes: Sequence[Node], *, sharded: bool) -> list[str]:
    publish, subscribe, kind = (
        (b"SPUBLISH", b"SSUBSCRIBE", b"smessage")
        if sharded
        else (b"PUBLISH", b"SUBSCRIBE", b"message")
    )
    stop = asyncio.Event()
    frame = _frame_bytes(kind)
    subscribers = [
        asyncio.create_task(_subscriber(node, subscribe, frame, stop))
        for node in nodes
        for _ in range(REPLICAS)
    ]
    await asyncio.sleep(0.5)  # subscribed
    generator = psutil.Process()
    cpu_before = [node.cpu_seconds() for node in nodes]
    own_before = sum(generator.cpu_times()[:2])
    started = time.perf_counter()
    publishers = [asyncio.create_task(_publisher(node, publish, frame, stop)) for node in nodes]
    await asyncio.sleep(SECONDS)
    stop.set()
    await asyncio.gather(*publishers)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.3)  # the last deliveries
    own_cpu = sum(generator.cpu_times()[:2]) - own_before
    await asyncio.gather(*subscribers)
    lines = []
    for index, node in enumerate(nodes):
        cpu = (node.cpu_seconds() - cpu_before[index]) / elapsed
        delivered = node.delivered_bytes / frame / elapsed
        lines.append(
            f"  node {index}: {node.published / elapsed:,.0f} published/s, "
            f"{delivered:,.0f} delivered/s ({delivered * frame / 1e6:,.1f} MB/s out), "
            f"CPU {cpu:.0%} of a core -> {delivered / max(cpu, 0.01):,.0f} deliveries/s "
            "per core"
        )
    total_published = sum(node.published for node in nodes) / elapsed
    total_delivered = sum(node.delivered_bytes for node in nodes) / frame / elapsed
    lines.append(
        f"  all: {total_published:,.0f} published/s, {total_delivered:,.0f} delivered/s; "
        f"load generator CPU {own_cpu / elapsed:.0%} of a core"
    )
    return lines


def _one_server(workdir: Path) -> Iterator[str]:
    server = RedisProcess(workdir, "single", ["--save", "", "--appendonly", "no"]).start()
    try:
        yield f"pubsub: one Redis, PUBLISH/SUBSCRIBE, {REPLICAS} subscribed replicas"
        yield from asyncio.run(_measure([Node(server, CHANNELS)], sharded=False))
    finally:
        server.kill()


def _cluster(workdir: Path) -> Iterator[str]:
    cluster = RedisClusterNodes(workdir).start()
    try:
        owners = cluster.slot_owners()
        nodes = [
            Node(process, [c for c in CHANNELS if owners[key_slot(c.encode())] is process])
            for process in cluster.nodes
        ]
        yield (
            f"pubsub: 3-master cluster, SPUBLISH/SSUBSCRIBE, {REPLICAS} subscribed replicas "
            f"per node (channels per node: {', '.join(str(len(n.channels)) for n in nodes)})"
        )
        yield from asyncio.run(_measure(nodes, sharded=True))
    finally:
        cluster.kill_all()


def run() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-pubsub-") as directory:
        workdir = Path(directory)
        yield (
            f"pubsub: {PAYLOAD_BYTES}-byte messages on {len(CHANNELS)} channels for "
            f"{SECONDS:g} s, pipelines of {PIPELINE}; the load generator shares the cores"
        )
        yield from _one_server(workdir / "single")
        yield from _cluster(workdir / "cluster")
