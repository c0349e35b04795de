"""The embedded default: one replica, messages handed to its own sessions in process.

Like the Redis broker, the handler runs in the event loop's own turn (`call_soon`), not in
the publisher's call stack: a sender's task never runs the fan-out, so nothing the fan-out
does can fail the sender, and the order of each channel is kept (callbacks run FIFO).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from relay_service.broker.base import Broker, DropCallback, MessageHandler
from relay_service.channels import StreamKeys
from relay_service.frames import StreamMessage
from relay_service.streams import Kept, MemoryStreams


class MemoryBroker(Broker):
    def __init__(
        self, on_message: MessageHandler, *, history_size: int, history_idle_seconds: float
    ) -> None:
        super().__init__(on_message)
        self._channels: set[str] = set()
        self._streams = MemoryStreams(history_size, idle_seconds=history_idle_seconds)

    async def connect(self) -> None:
        return None

    async def disconnect(self) -> None:
        self._channels.clear()

    async def subscribe(self, channel: str, *, control: bool = False) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    def publish(self, channel: str, message: bytes, on_dropped: DropCallback | None = None) -> None:
        """Never drops: there is no queue and nothing to be unreachable."""
        asyncio.get_running_loop().call_soon(self._deliver, channel, message)

    def append(
        self, keys: StreamKeys, message: StreamMessage, on_dropped: DropCallback | None = None
    ) -> None:
        self.publish(keys.channel, self._streams.append(keys, message))

    async def read_streams(self, reads: Sequence[tuple[StreamKeys, int]]) -> list[Kept]:
        return [self._streams.read(keys, after) for keys, after in reads]

    def _deliver(self, channel: str, message: bytes) -> None:
        """Checked at delivery, like Redis: a channel subscribed meanwhile hears it."""
        if channel in self._channels:
            self._hand_over(channel, message)

    @property
    def ready(self) -> bool:
        return True
