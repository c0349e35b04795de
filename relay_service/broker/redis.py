"""Redis pub/sub: every replica publishes each message once and hears every audience it serves.

One pub/sub connection per replica, read by one listener task that hands each message to
the hub at once (the hub only appends to bounded per-session queues, so reading never
waits on a socket). When Redis drops, the sockets stay open: the listener reconnects with
capped exponential backoff and jitter, re-subscribes, and the gauge `relay_broker_up` and
`/readyz` say it was down. Publishing goes through one ordered queue drained in pipelines,
so per-sender order holds and a sender never waits for Redis.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from contextlib import suppress
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from relay_service import metrics
from relay_service.broker.base import Broker, MessageHandler
from shared.logging import get_logger

log = get_logger(__name__)

FIRST_RETRY_SECONDS = 0.1
PUBLISH_BATCH = 1000
POLL_SECONDS = 5.0
SUBSCRIBE_CONFIRM_SECONDS = 2.0


class RedisBroker(Broker):
    def __init__(
        self,
        client: Redis,
        on_message: MessageHandler,
        *,
        reconnect_max_seconds: float,
        publish_queue_limit: int,
    ) -> None:
        super().__init__(on_message)
        self._client = client
        self._reconnect_max_seconds = reconnect_max_seconds
        self._publish_queue_limit = publish_queue_limit
        self._channels: set[str] = set()
        self._pubsub: PubSub | None = None
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_filled = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._was_connected = False
        self._confirmations: dict[str, asyncio.Future[None]] = {}

    async def connect(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="broker-listener"),
            asyncio.create_task(self._publish_forever(), name="broker-publisher"),
        ]

    async def disconnect(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def subscribe(self, channel: str) -> None:
        """Subscribe, and wait (briefly) until Redis confirms: then nothing sent is missed."""
        self._channels.add(channel)
        if self._pubsub is None:
            return
        confirmed = self._confirmations.setdefault(
            channel, asyncio.get_running_loop().create_future()
        )
        await self._send_to_pubsub("subscribe", channel)
        with suppress(TimeoutError):
            async with asyncio.timeout(SUBSCRIBE_CONFIRM_SECONDS):
                await asyncio.shield(confirmed)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        await self._send_to_pubsub("unsubscribe", channel)

    def publish(self, channel: str, message: bytes) -> None:
        if len(self._outbox) >= self._publish_queue_limit:
            metrics.BROKER_DROPPED.inc()
            return
        self._outbox.append((channel, message))
        self._outbox_filled.set()

    @property
    def ready(self) -> bool:
        return self._pubsub is not None

    async def _send_to_pubsub(self, command: str, channel: str) -> None:
        """Change a live subscription; while disconnected, the next connect subscribes anew."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            await getattr(pubsub, command)(channel)
        except (RedisError, OSError) as error:
            log.warning("broker_subscription_deferred", channel=channel, error=str(error))

    async def _listen_forever(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                await self._listen_once()
            except (RedisError, OSError) as error:
                log.warning("broker_connection_lost", error=str(error), retry_in=round(delay, 2))
            except Exception:
                log.exception("broker_listener_failed", retry_in=round(delay, 2))
            if self._was_connected:
                delay = FIRST_RETRY_SECONDS
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 — jitter
            delay = min(delay * 2, self._reconnect_max_seconds)
            metrics.BROKER_RECONNECTS.inc()

    async def _listen_once(self) -> None:
        self._was_connected = False
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*self._channels)
            self._mark_up(pubsub)
            while True:
                message = await pubsub.get_message(timeout=POLL_SECONDS)
                if message is not None:
                    self._route(message)
        finally:
            self._mark_down()
            with suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _route(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        if message["type"] == "message":
            self._hand_over(channel, message["data"])
        elif message["type"] == "subscribe":
            confirmed = self._confirmations.pop(channel, None)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)

    def _mark_up(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self._was_connected = True
        metrics.BROKER_UP.set(1)
        log.info("broker_connected", channels=len(self._channels))

    def _mark_down(self) -> None:
        self._pubsub = None
        metrics.BROKER_UP.set(0)

    async def _publish_forever(self) -> None:
        while True:
            await self._outbox_filled.wait()
            self._outbox_filled.clear()
            while self._outbox:
                batch = [
                    self._outbox.popleft() for _ in range(min(len(self._outbox), PUBLISH_BATCH))
                ]
                await self._publish_batch(batch)

    async def _publish_batch(self, batch: list[tuple[str, bytes]]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, message in batch:
                    pipe.publish(channel, message)
                await pipe.execute()
        except Exception as error:  # the publisher outlives any one failed batch
            metrics.BROKER_DROPPED.inc(len(batch))
            log.warning("broker_publish_failed", dropped=len(batch), error=repr(error))
