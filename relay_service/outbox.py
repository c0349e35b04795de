"""A session's outgoing frames: written at once while the socket takes them, queued when not.

No task per send. A frame queued while the connection is open and not under back-pressure
is written at the end of the current event-loop step (`loop.call_soon`), together with
every other frame queued for the session in that step (a fan-out burst is one write
system call per session, not one per frame). `send_now` writes a frame on the spot (the
heartbeat ACK: nothing else is waiting). Only under back-pressure (websockets paused the
transport: the kernel's buffer and the transport's are full) does a sender task wait for
the socket to drain, then write the queue in batches of up to `SEND_BATCH` frames or
`SEND_BATCH_BYTES`; it ends when the queue is empty, so an idle session holds no task.

The queue is one deque, made the first time a frame has to wait and then kept for the
session's life: a new container per burst cost fan-out about 0.3 µs per delivery in
garbage-collector work, and an idle session whose frames were all written on the spot
saves the ~0.7 KiB of an empty deque. It is bounded in frames and in bytes (`SEND_QUEUE_LIMIT`,
`SEND_QUEUE_LIMIT_BYTES`): past either it refuses a frame and the session closes as too
slow (4013), so a reader that stopped never holds the fan-out up, and what it costs in
memory is bounded (the transport's own buffer is bounded by the connection's guard).
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
    __slots__ = (
        "_bytes",
        "_flush_soon",
        "_frames",
        "_limit",
        "_limit_bytes",
        "_on_failure",
        "_sender",
        "_ws",
    )

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
        self._frames: deque[bytes] | None = None
        """Made at the first frame that has to wait, then kept (see the module docstring)."""
        self._bytes = 0
        self._sender: asyncio.Task[None] | None = None
        self._flush_soon: asyncio.Handle | None = None

    def put(self, frame: bytes) -> bool:
        """Queue a frame, written at the end of this loop step; False, and nothing
        queued, when the queue is full."""
        if self._bytes + len(frame) > self._limit_bytes:
            return False
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        elif len(frames) >= self._limit:
            return False
        frames.append(frame)
        self._bytes += len(frame)
        if self._sender is None and self._flush_soon is None:
            self._flush_soon = asyncio.get_running_loop().call_soon(self._flush)
        return True

    def send_now(self, frame: bytes) -> bool:
        """Write `frame` on the spot when nothing waits before it and the socket takes it;
        else queue it like `put` (False, and nothing queued, when the queue is full)."""
        if self._frames or self._sender is not None or not self._ws.writable():
            return self.put(frame)
        self._ws.write_texts((frame,))
        return True

    def discard(self) -> None:
        """Drop what is queued and stop writing: the session is closing."""
        if self._frames is not None:
            self._frames.clear()
        self._bytes = 0
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if self._sender is not None:
            self._sender.cancel()

    def _flush(self) -> None:
        """Write what this loop step queued; under back-pressure, hand it to a sender task."""
        self._flush_soon = None
        frames = self._frames
        assert frames is not None
        ws = self._ws
        while frames and ws.writable():  # a write may pause the transport
            ws.write_texts(self._next_batch(frames))
        if frames:
            self._sender = asyncio.create_task(self._send_queued(frames))
            self._sender.add_done_callback(self._on_sender_done)

    async def _send_queued(self, frames: deque[bytes]) -> None:
        """Write the queue in batches, waiting for the socket to drain, until it is empty.

        `_sender` is cleared here, with no await between the empty check and the clearing,
        so a frame queued at any moment either is sent by this task or starts a flush.
        """
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
