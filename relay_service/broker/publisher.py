"""Publishing to Redis: one ordered queue, bounded in messages and in bytes, drained in
pipelines by one publisher task, so per-sender order holds and a sender never waits for
Redis.

A message is dropped instead (counted in `relay_broker_dropped_messages_total{reason}`, its
`on_dropped` called once) when the queue is full (`queue_full`) as it is published, when it
waited longer than the max age by the time its turn came (`too_old`), and when the
pipeline carrying it failed or outlasted the Redis timeout (`publish_failed`). Each
pipeline is bounded by the Redis timeout with `asyncio.timeout`.

While the broker is down, a message (sent then, or still queued) is never sent to Redis:
it is handed to `deliver_locally` (this replica's own sessions), in the senders' order,
and `on_dropped` hears `local_only` (`unreachable` without a local delivery).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, cast

from redis.exceptions import NoScriptError

from relay_service import metrics
from relay_service.broker.base import DropCallback
from relay_service.broker.redis_streams import RedisStreams
from relay_service.channels import StreamKeys
from relay_service.frames import StreamMessage
from shared.logging import get_logger
from shared.redis_connect import RedisClient

if TYPE_CHECKING:
    from relay_service.presence.redis import StatusKeeper

log = get_logger(__name__)

PUBLISH_BATCH = 1000
DROP_LOG_SECONDS = 10.0
"""At most one log line per drop reason this often: an outage drops every message."""

QUEUE_FULL = "queue_full"
TOO_OLD = "too_old"
PUBLISH_FAILED = "publish_failed"
UNREACHABLE = "unreachable"
LOCAL_ONLY = "local_only"
"""Not a drop: sent while the broker was unreachable, it reached this replica's sessions only."""

Append = tuple[StreamKeys, StreamMessage]
"""A message for factories: appended to its stream, which publishes it (one Lua script)."""


class Status(NamedTuple):
    """A factory's status for observers: published and kept as its latest (one Lua script,
    `relay_service.presence.redis.StatusKeeper`)."""

    factory: str
    message: bytes


Payload = bytes | Append | Status
Queued = tuple[float, str, Payload, DropCallback | None]
"""A message waiting to be published: (monotonic time queued, channel, message, on_dropped)."""


def payload_size(payload: Payload) -> int:
    if type(payload) is bytes:
        return len(payload)
    if type(payload) is Status:
        return len(payload.message)
    return sum(map(len, payload[1]))  # type: ignore[arg-type]


class Publisher:
    def __init__(
        self,
        client: RedisClient,
        streams: RedisStreams,
        *,
        publish_command: str,
        is_up: Callable[[], bool],
        timeout_seconds: float,
        queue_limit: int,
        queue_limit_bytes: int,
        max_age_seconds: float,
        deliver_locally: Callable[[str, Payload], None] | None = None,
        statuses: StatusKeeper | None = None,
    ) -> None:
        self._client = client
        self._streams = streams
        self._statuses = statuses
        self._publish_command = publish_command
        self._deliver_locally = deliver_locally
        self._is_up = is_up
        self._timeout = timeout_seconds
        self._queue_limit = queue_limit
        self._queue_limit_bytes = queue_limit_bytes
        self._max_age = max_age_seconds
        self._outbox: deque[Queued] = deque()
        self._queued_bytes = 0
        self._outbox_filled = asyncio.Event()
        self._drop_logged_at: dict[str, float] = {}
        metrics.BROKER_PUBLISH_QUEUE_BYTES.set_function(lambda: self._queued_bytes)

    def publish(
        self, channel: str, message: Payload, on_dropped: DropCallback | None = None
    ) -> None:
        if not self._is_up() and not self._outbox:  # else after those queued: in order
            self._unreachable(channel, message, on_dropped)
            return
        size = payload_size(message)
        if (
            len(self._outbox) >= self._queue_limit
            or self._queued_bytes + size > self._queue_limit_bytes
        ):
            self._drop(QUEUE_FULL, on_dropped)
            return
        self._outbox.append((time.monotonic(), channel, message, on_dropped))
        self._queued_bytes += size
        self._outbox_filled.set()

    async def run(self) -> None:
        """The publisher task: drain the queue whenever it fills, until cancelled."""
        while True:
            await self._outbox_filled.wait()
            self._outbox_filled.clear()
            while self._outbox:
                batch = self._next_batch()
                if batch:
                    await self._publish_batch(batch)

    def _next_batch(self) -> list[Queued]:
        """Up to `PUBLISH_BATCH` messages to publish now; on the way, those that waited past
        the max age, or all while the broker is down, are dropped."""
        oldest_allowed = time.monotonic() - self._max_age
        up = self._is_up()
        outbox = self._outbox
        batch: list[Queued] = []
        while outbox and len(batch) < PUBLISH_BATCH:
            queued = outbox.popleft()
            self._queued_bytes -= payload_size(queued[2])
            if queued[0] < oldest_allowed:
                self._drop(TOO_OLD, queued[3])
            elif not up:
                self._unreachable(queued[1], queued[2], queued[3])
            else:
                batch.append(queued)
        return batch

    async def _publish_batch(self, batch: list[Queued]) -> None:
        """One pipeline (two when Redis lost the append script: it is loaded and the
        appends run again, in order); a message Redis refused alone is dropped alone."""
        try:
            async with asyncio.timeout(self._timeout):
                refused = await self._execute(batch)
                unknown = [queued for queued, error in refused if isinstance(error, NoScriptError)]
                if unknown:
                    await self.load_scripts()
                    refused = [r for r in refused if not isinstance(r[1], NoScriptError)]
                    refused += await self._execute(unknown)
        except Exception as error:  # the publisher outlives any one failed batch
            log.warning("broker_publish_failed", dropped=len(batch), error=describe(error))
            for *_, on_dropped in batch:
                self._drop(PUBLISH_FAILED, on_dropped, logged=True)
            return
        if refused:
            log.warning("broker_publish_failed", dropped=len(refused), error=str(refused[0][1]))
        for queued, _ in refused:
            self._drop(PUBLISH_FAILED, queued[3], logged=True)

    async def load_scripts(self) -> None:
        """Make sure Redis knows the scripts the publisher runs (after a connect, or a
        NOSCRIPT answer); the caller bounds the call."""
        await self._streams.load()
        if self._statuses is not None:
            await self._statuses.load()

    async def _execute(self, batch: list[Queued]) -> list[tuple[Queued, Exception]]:
        """Publish `batch`; what Redis refused, with its error. A batch of one message (a
        paced sender's) is one command: a pipeline costs the relay more CPU than the
        command it carries."""
        if len(batch) == 1:
            queued = batch[0]
            try:
                await self._client.execute_command(*self._command(queued[1], queued[2]))
            except NoScriptError as error:
                return [(queued, error)]
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for _, channel, message, _ in batch:
                pipe.execute_command(*self._command(channel, message))
            results = await pipe.execute(raise_on_error=False)
        return [
            (queued, result)
            for queued, result in zip(batch, results, strict=True)
            if isinstance(result, Exception)
        ]

    def _command(self, channel: str, message: Payload) -> tuple[str | bytes | int, ...]:
        """PUBLISH (SPUBLISH on a cluster), a stream's append or a status's script."""
        if type(message) is bytes:
            return (self._publish_command, channel, message)
        if type(message) is Status:
            assert self._statuses is not None  # only a broker with a keeper queues them
            return self._statuses.command(message.factory, channel, message.message)
        keys, stream_message = cast(Append, message)
        return self._streams.append_command(keys, stream_message)

    def _unreachable(self, channel: str, message: Payload, on_dropped: DropCallback | None) -> None:
        """Never sent to Redis: it goes to this replica's own sessions instead
        (`deliver_locally`), and the sender hears `local_only`; without a local delivery,
        it is dropped."""
        if self._deliver_locally is None:
            self._drop(UNREACHABLE, on_dropped)
            return
        self._deliver_locally(channel, message)
        metrics.BROKER_LOCAL_ONLY.inc()
        self._log_drop(LOCAL_ONLY)
        _tell(on_dropped, LOCAL_ONLY)

    def _drop(self, reason: str, on_dropped: DropCallback | None, *, logged: bool = False) -> None:
        metrics.DROPPED[reason].inc()
        if not logged:
            self._log_drop(reason)
        _tell(on_dropped, reason)

    def _log_drop(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._drop_logged_at.get(reason, -DROP_LOG_SECONDS) >= DROP_LOG_SECONDS:
            self._drop_logged_at[reason] = now
            log.warning("broker_messages_dropped", reason=reason)


def _tell(on_dropped: DropCallback | None, reason: str) -> None:
    """Tell the publisher of the message why it was not published; never raises."""
    if on_dropped is not None:
        try:
            on_dropped(reason)
        except Exception:
            log.exception("broker_drop_callback_failed", reason=reason)


def describe(error: BaseException) -> str:
    """A log line's `error`: a timeout says so (its own text is empty)."""
    if isinstance(error, TimeoutError) and not str(error):
        return "timed out"
    return str(error) or repr(error)
