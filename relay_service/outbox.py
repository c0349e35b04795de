"""A session's outgoing frames: a bounded queue and the task that writes it in batches.

At most one sender task per session, started when a frame is queued and ended when the
queue is empty; the queue itself exists only while the sender does, so an idle session
holds neither a task nor a queue. The queue is a list, handed whole to the socket as the
next batch when it fits one (no copy, and a new list costs less than a deque). Frames are
written in batches of up to `SEND_BATCH` frames or `SEND_BATCH_BYTES` in one system call
(`RelayConnection.send_texts`).
The queue is bounded in frames and in bytes (`SEND_QUEUE_LIMIT`, `SEND_QUEUE_LIMIT_BYTES`):
past either it refuses a frame and the session closes as too slow (4013), so a reader
that stopped never holds the fan-out up, and what it costs in memory is bounded.
"""

from __future__ import annotations

import asyncio
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
        self._frames: list[bytes] | None = None
        self._bytes = 0
        self._sender: asyncio.Task[None] | None = None

    def put(self, frame: bytes) -> bool:
        """Queue a frame for sending; False, and nothing queued, when the queue is full."""
        frames = self._frames
        if frames is None:
            frames = self._frames = []
        elif len(frames) >= self._limit or self._bytes + len(frame) > self._limit_bytes:
            return False
        frames.append(frame)
        self._bytes += len(frame)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_queued())
            self._sender.add_done_callback(self._on_sender_done)
        return True

    def discard(self) -> None:
        """Drop what is queued and stop writing: the session is closing."""
        self._frames = None
        self._bytes = 0
        if self._sender is not None:
            self._sender.cancel()

    async def _send_queued(self) -> None:
        """Write the queue in batches until it is empty, then end.

        `_sender` is cleared here, with no await between the empty check and the clearing,
        so a frame queued at any moment either is sent by this task or starts the next one.
        """
        while self._frames:
            await self._ws.send_texts(self._next_batch(self._frames))
        self._frames = None
        self._sender = None

    def _next_batch(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) <= SEND_BATCH and self._bytes <= SEND_BATCH_BYTES:  # the usual case
            self._frames = None  # the whole queue is the batch; the next put starts anew
            self._bytes = 0
            return frames
        count, size = 1, len(frames[0])
        while (
            count < min(len(frames), SEND_BATCH) and size + len(frames[count]) <= SEND_BATCH_BYTES
        ):
            size += len(frames[count])
            count += 1
        batch = frames[:count]
        del frames[:count]
        self._bytes -= size
        return batch

    def _on_sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, ConnectionClosed):
            self._on_failure(error)
