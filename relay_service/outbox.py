"""A session's outgoing frames: a bounded queue and the task that writes it in batches.

At most one sender task per session, started when a frame is queued and ended when the
queue is empty, so an idle session holds no task. The queue is one deque for the
session's life: a new container per burst (a list or deque each time a sender starts)
cost fan-out about 0.3 µs per delivery in garbage-collector work, more than the ~0.7 KiB
an idle session's empty deque holds. Frames are written in batches of up to `SEND_BATCH`
frames or `SEND_BATCH_BYTES` in one system call (`RelayConnection.send_texts`). The queue
is bounded in frames and in bytes (`SEND_QUEUE_LIMIT`, `SEND_QUEUE_LIMIT_BYTES`): past
either it refuses a frame and the session closes as too slow (4013), so a reader that
stopped never holds the fan-out up, and what it costs in memory is bounded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed

from relay_service.connection import RelayConnection

SEND_BATCH = 64
"""Frames written to a socket in one system call, at most."""
SEND_BATCH_BYTES = 256 * 1024
"""Bytes handed to the socket in one batch, at most (one frame may exceed it alone)."""


class Outbox:
    __slots__ = ("_bytes", "_frames", "_limit", "_limit_bytes", "_on_failure", "_sender", "_ws")

    def __init__(
        self,
        ws: RelayConnection,
        *,
        limit: int,
        limit_bytes: int,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self._ws = ws
        self._limit = limit
        self._limit_bytes = limit_bytes
        self._on_failure = on_failure
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._sender: asyncio.Task[None] | None = None

    def put(self, frame: bytes) -> bool:
        """Queue a frame for sending; False, and nothing queued, when the queue is full."""
        frames = self._frames
        if len(frames) >= self._limit or self._bytes + len(frame) > self._limit_bytes:
            return False
        frames.append(frame)
        self._bytes += len(frame)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_queued())
            self._sender.add_done_callback(self._on_sender_done)
        return True

    def discard(self) -> None:
        """Drop what is queued and stop writing: the session is closing."""
        self._frames.clear()
        self._bytes = 0
        if self._sender is not None:
            self._sender.cancel()

    async def _send_queued(self) -> None:
        """Write the queue in batches until it is empty, then end.

        `_sender` is cleared here, with no await between the empty check and the clearing,
        so a frame queued at any moment either is sent by this task or starts the next one.
        """
        frames = self._frames
        while frames:
            await self._ws.send_texts(self._next_batch(frames))
        self._sender = None

    def _next_batch(self, frames: deque[bytes]) -> list[bytes]:
        """Up to `SEND_BATCH` frames and `SEND_BATCH_BYTES` (one frame may exceed it alone)."""
        batch = [frames.popleft()]
        size = len(batch[0])
        while frames and len(batch) < SEND_BATCH and size + len(frames[0]) <= SEND_BATCH_BYTES:
            frame = frames.popleft()
            batch.append(frame)
            size += len(frame)
        self._bytes -= size
        return batch

    def _on_sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, ConnectionClosed):
            self._on_failure(error)
