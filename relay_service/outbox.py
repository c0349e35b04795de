"""A session's outgoing frames: a bounded queue and the task that writes it in batches.

At most one sender task per session, started when a frame is queued and ended when the
queue is empty, so an idle session holds no task. Frames are written in batches of up to
`SEND_BATCH` in one system call (`RelayConnection.send_texts`). Past its limit the queue
refuses a frame and the session closes as too slow (4013): a reader that stopped never
holds the fan-out up, and its memory is bounded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed

from relay_service.connection import RelayConnection

SEND_BATCH = 64
"""Frames written to a socket in one system call, at most."""


class Outbox:
    __slots__ = ("_frames", "_limit", "_on_failure", "_sender", "_ws")

    def __init__(
        self, ws: RelayConnection, limit: int, on_failure: Callable[[BaseException], None]
    ) -> None:
        self._ws = ws
        self._limit = limit
        self._on_failure = on_failure
        self._frames: deque[bytes] = deque()
        self._sender: asyncio.Task[None] | None = None

    def put(self, frame: bytes) -> bool:
        """Queue a frame for sending; False, and nothing queued, when the queue is full."""
        if len(self._frames) >= self._limit:
            return False
        self._frames.append(frame)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_queued())
            self._sender.add_done_callback(self._on_sender_done)
        return True

    def discard(self) -> None:
        """Drop what is queued and stop writing: the session is closing."""
        self._frames.clear()
        if self._sender is not None:
            self._sender.cancel()

    async def _send_queued(self) -> None:
        """Write the queue in batches until it is empty, then end.

        `_sender` is cleared here, with no await between the empty check and the clearing,
        so a frame queued at any moment either is sent by this task or starts the next one.
        """
        frames = self._frames
        while frames:
            batch = [frames.popleft() for _ in range(min(len(frames), SEND_BATCH))]
            await self._ws.send_texts(batch)
        self._sender = None

    def _on_sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, ConnectionClosed):
            self._on_failure(error)
