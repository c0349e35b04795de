"""Redis pub/sub: every replica publishes each message once and hears every audience it serves.

Listening: one pub/sub connection per replica (one per master on Redis Cluster, where the
audience channels are shard channels: `relay_service.broker.links`), read by the listener,
which hands each message to the hub at once (the hub only appends to bounded per-session
queues, so reading never waits on a socket). The listener also watches each connection:
every `HEALTH_INTERVAL_SECONDS` it sends PING on it and expects the pong within the Redis
timeout. A missing pong (a hung Redis keeps its TCP connections open and answers nothing)
or a lost connection marks the broker down (`ready` false, `relay_broker_up` 0, `/readyz`
503), closes the connections and reconnects with capped exponential backoff and jitter
(on Sentinel, asking the sentinels for the master anew; on a cluster, for the slot map).
It is up again once the pong of a PING sent after re-subscribing every channel arrives on
every connection (Redis answers in order, so that pong also confirms the subscriptions).

Publishing: `relay_service.broker.publisher`.

Every Redis call here is bounded by the Redis timeout with `asyncio.timeout` (a timer, not a
task per call); the client has no socket timeout of its own (`relay.redis_client`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from relay_service import frames, metrics
from relay_service.broker.base import Broker, DropCallback, MessageHandler
from relay_service.broker.links import Link, open_links, publish_command
from relay_service.broker.publisher import Payload, Publisher, Status, describe
from relay_service.broker.redis_streams import RedisStreams
from relay_service.channels import StreamKeys
from relay_service.frames import StreamMessage
from relay_service.streams import Kept
from shared.logging import get_logger
from shared.redis_connect import REDIS_ERRORS, RedisClient
from shared.tasks import cancel_all

if TYPE_CHECKING:
    from relay_service.presence.redis import StatusKeeper

log = get_logger(__name__)

FIRST_RETRY_SECONDS = 0.1
HEALTH_INTERVAL_SECONDS = 1.0
"""How often the listener PINGs its connection: a hung Redis is noticed within this plus
the Redis timeout."""


class UnresponsiveError(Exception):
    """Redis did not answer on the pub/sub connection in time, or its subscriptions are stale."""


LISTENER_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, UnresponsiveError)
"""What ends a connection the listener then reopens, logged without a traceback."""


class RedisBroker(Broker):
    def __init__(
        self,
        client: RedisClient,
        on_message: MessageHandler,
        *,
        reconnect_max_seconds: float,
        timeout_seconds: float,
        publish_queue_limit: int,
        publish_queue_limit_bytes: int,
        publish_max_age_seconds: float,
        history_size: int,
        history_ttl_ms: int,
        statuses: StatusKeeper | None = None,
    ) -> None:
        super().__init__(on_message)
        self._client = client
        self._streams = RedisStreams(
            client,
            history_size=history_size,
            log_ttl_ms=history_ttl_ms,
            publish_command=publish_command(client),
        )
        self._reconnect_max_seconds = reconnect_max_seconds
        self._timeout = timeout_seconds
        self._channels: set[str] = set()
        self._pubsub: PubSub | None = None
        self._publisher = Publisher(
            client,
            self._streams,
            publish_command=publish_command(client),
            is_up=lambda: self._pubsub is not None,
            timeout_seconds=timeout_seconds,
            queue_limit=publish_queue_limit,
            queue_limit_bytes=publish_queue_limit_bytes,
            max_age_seconds=publish_max_age_seconds,
            deliver_locally=self._deliver_locally,
            statuses=statuses,
        )
        self.keeps_statuses = statuses is not None
        self._tasks: list[asyncio.Task[None]] = []
        self._was_connected = False
        self._stale = False
        self._cluster = isinstance(client, RedisCluster)
        self._controls: set[str] = set()
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._early: list[tuple[str, bytes]] | None = None
        """Messages heard on a new connection before the gap was filled (handed over after
        it, so each stream's messages stay in offset order)."""

    async def connect(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="broker-listener"),
            asyncio.create_task(self._publisher.run(), name="broker-publisher"),
        ]

    async def disconnect(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    @property
    def ready(self) -> bool:
        """Connected, subscribed, and the last PING answered in time."""
        return self._pubsub is not None

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(self, channel: str, *, control: bool = False) -> None:
        """Subscribe, and wait (at most the Redis timeout) until Redis confirms: then
        nothing published afterwards is missed. While down, the next connect subscribes."""
        self._channels.add(channel)
        if control:
            self._controls.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return
        if self._cluster:  # which connection serves it is the slot map's business
            self._stale = True
            return
        confirmed = self._confirmations.setdefault(
            channel, asyncio.get_running_loop().create_future()
        )
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe(channel)
                await asyncio.shield(confirmed)
        except REDIS_ERRORS as error:  # TimeoutError is an OSError
            self._resubscribe_soon("subscribe", channel, error)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return
        if self._cluster:
            self._stale = True
            return
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.unsubscribe(channel)
        except REDIS_ERRORS as error:
            self._resubscribe_soon("unsubscribe", channel, error)

    def _resubscribe_soon(self, command: str, channel: str, error: BaseException) -> None:
        """A subscription change that failed halfway leaves the connection's subscriptions
        unknown: the listener reconnects (within a health interval) and subscribes anew."""
        log.warning(
            "broker_subscription_deferred", command=command, channel=channel, error=describe(error)
        )
        self._stale = True

    # -- publishing ---------------------------------------------------------------

    def publish(self, channel: str, message: bytes, on_dropped: DropCallback | None = None) -> None:
        self._publisher.publish(channel, message, on_dropped)

    def publish_status(
        self, channel: str, message: bytes, factory: str, on_dropped: DropCallback | None = None
    ) -> None:
        if self.keeps_statuses:
            self._publisher.publish(channel, Status(factory, message), on_dropped)
        else:
            self._publisher.publish(channel, message, on_dropped)

    def append(
        self, keys: StreamKeys, message: StreamMessage, on_dropped: DropCallback | None = None
    ) -> None:
        self._publisher.publish(keys.channel, (keys, message), on_dropped)

    def _deliver_locally(self, channel: str, message: Payload) -> None:
        """While unreachable: hand a message to this replica's own sessions, as if heard
        from Redis (in the loop's next turn, like a message heard: never in the sender's
        call stack). A message to factories goes without a stream: no cursor."""
        if isinstance(message, bytes):
            packed = message
        elif isinstance(message, Status):
            packed = message.message
        else:
            packed = frames.unkept(message[1])
        asyncio.get_running_loop().call_soon(self._hand_over, channel, packed)

    async def read_streams(self, reads: Sequence[tuple[StreamKeys, int]]) -> list[Kept]:
        async with asyncio.timeout(self._timeout):
            return await self._streams.read(reads)

    # -- listening ----------------------------------------------------------------

    async def _listen_forever(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                await self._listen_once()
            except LISTENER_ERRORS as error:
                log.warning(
                    "broker_connection_lost", error=describe(error), retry_in=round(delay, 2)
                )
            except Exception:
                log.exception("broker_listener_failed", retry_in=round(delay, 2))
            if self._was_connected:
                delay = FIRST_RETRY_SECONDS
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 — jitter
            delay = min(delay * 2, self._reconnect_max_seconds)
            metrics.BROKER_RECONNECTS.inc()

    async def _listen_once(self) -> None:
        self._was_connected = False
        self._stale = False
        wanted = set(self._channels)
        async with asyncio.timeout(self._timeout):
            links = await open_links(
                self._client,
                audiences=sorted(wanted - self._controls),
                controls=sorted(wanted & self._controls),
            )
        self._early = []
        try:
            await self._subscribe_links(links)
            for link in links:
                _never_reconnect_silently(link.pubsub)
            async with asyncio.timeout(self._timeout):
                await self._publisher.load_scripts()  # a new or failed-over Redis has none
            if self.on_resubscribed is not None:
                await self.on_resubscribed()  # the gap, before anything newer is handled
            early, self._early = self._early, None
            for channel, message in early:
                self._hand_over(channel, message)
            self._mark_up(links[0].pubsub)
            if self._cluster and self._channels != wanted:  # changed while connecting
                self._stale = True
            if len(links) == 1:
                await self._watch(links[0])
            else:
                await self._watch_all(links)
            if any(link.moved for link in links):
                raise UnresponsiveError("a slot moved to another node: following the slot map")
            raise UnresponsiveError("a subscription change failed: subscribing anew")
        finally:
            self._mark_down()
            for link in links:
                connection = link.pubsub.connection
                if connection is not None and link.owned is None:  # back to the shared pool:
                    connection.retry = self._client.get_retry() or connection.retry  # retried
                await link.aclose()

    async def _subscribe_links(self, links: list[Link]) -> None:
        """Subscribe every link's channels; on one server also those added meanwhile."""
        for link in links:
            await self._check(link, plain=link.plain, sharded=link.sharded)
        if self._cluster:
            return
        link = links[0]
        subscribed = set(link.plain)
        while missing := self._channels - subscribed:
            await self._check(link, plain=sorted(missing))
            subscribed |= missing

    async def _watch(self, link: Link) -> None:
        """Read, and PING every health interval, until a subscription change fails."""
        while not self._stale:
            await self._read_for(link, HEALTH_INTERVAL_SECONDS)
            await self._check(link)

    async def _watch_all(self, links: list[Link]) -> None:
        """Watch every link at once; the first to fail or stop ends them all."""
        watchers = [asyncio.create_task(self._watch(link)) for link in links]
        try:
            done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        for watcher in done:
            watcher.result()  # the failure, if it failed

    async def _check(
        self, link: Link, plain: Sequence[str] = (), sharded: Sequence[str] = ()
    ) -> None:
        """PING (after subscribing, if asked) and read on until its pong, all within the
        timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        pongs = link.pongs
        try:
            async with asyncio.timeout_at(deadline):
                await link.subscribe(plain, sharded)
                await link.pubsub.ping()
        except TimeoutError:
            raise UnresponsiveError(f"no answer within {self._timeout:g} s") from None
        while link.pongs == pongs:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UnresponsiveError(f"no answer to PING within {self._timeout:g} s")
            await self._read_one(link, remaining)

    async def _read_for(self, link: Link, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while not self._stale and (remaining := until - loop.time()) > 0:
            await self._read_one(link, remaining)

    async def _read_one(self, link: Link, within: float) -> None:
        """One message, or none within `within` s (redis-py bounds the read with a timer)."""
        message = await link.pubsub.get_message(timeout=within)
        if message is not None:
            self._route(link, message)

    def _route(self, link: Link, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("message", "smessage"):
            if self._early is not None:  # heard while subscribing: after the gap's messages
                self._early.append((message["channel"].decode(), message["data"]))
            else:
                self._hand_over(message["channel"].decode(), message["data"])
        elif kind == "pong":
            link.pongs += 1
        elif kind == "subscribe":
            confirmed = self._confirmations.pop(message["channel"].decode(), None)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "sunsubscribe":  # never asked for: the slot moved
            link.moved = True
            self._stale = True

    def _mark_up(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self._was_connected = True
        metrics.BROKER_UP.set(1)
        log.info("broker_connected", channels=len(self._channels))

    def _mark_down(self) -> None:
        self._pubsub = None
        metrics.BROKER_UP.set(0)


def _never_reconnect_silently(pubsub: PubSub) -> None:
    """redis-py reconnects a pub/sub connection and re-subscribes by itself when a read
    fails (the pool's retry): messages published meanwhile would be missed unnoticed.
    Without retries the failure reaches the listener, which reconnects and fills the gap."""
    assert pubsub.connection is not None
    pubsub.connection.retry = Retry(NoBackoff(), retries=0)
