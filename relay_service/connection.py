"""The relay's WebSocket connection: websockets' own, plus writing a batch of frames at once.

`send()` takes a lock-like context, serializes one frame and makes one write system call
per message. A session whose outbox holds several frames sends them all under one
context and in one `writelines`, with the same flow control (`drain`) and close handling.
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection


class RelayConnection(ServerConnection):
    async def send_texts(self, frames: Sequence[bytes]) -> None:
        """Send each of `frames` (UTF-8 JSON) as its own text message, in one write."""
        async with self.send_context():
            for frame in frames:
                self.protocol.send_text(frame)
            self.transport.writelines(self.protocol.data_to_send())
