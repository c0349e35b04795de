"""The relay's WebSocket connection: websockets' own, plus what the session needs of it.

- `write_texts` writes a batch of frames now, in one `writelines`, when `writable()` says
  the write cannot block (the outbox's path while the socket keeps up: no task, no await).
  `send_texts` writes a batch under websockets' `send_context()`, with its flow control
  (`drain`) and close handling (the outbox's path under back-pressure). websockets' own
  `send()` would make one write system call per message.
- A `guard` (the session) hears of every control frame received, so pings count against
  the session's rate limit like any frame, and of unsent output past its bound, whatever
  filled it (pongs to a client that never reads included).
- `forget_handshake` drops the opening request's headers and the response once answered.
- `allow_messages_up_to` raises the frame size limit once the session is identified.
- `admission`, set when the handshake is admitted, gets the connection's slot back when
  its socket closes (with the `client_address` it was counted against).

`send_context()`, `paused`, `protocol.state`, `protocol.send_text` and
`protocol.max_message_size` are websockets
internals, not its documented API: `pyproject.toml` pins the tested range of websockets and
`tests/relay/test_connection.py` fails loudly on a release that changed them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State


class ConnectionGuard(Protocol):
    output_limit_bytes: int

    def control_frame_received(self) -> None: ...

    def output_overflowed(self, buffered_bytes: int) -> None: ...


class Admitter(Protocol):
    def release(self, connection: RelayConnection) -> None: ...


class RelayConnection(ServerConnection):
    # Slots, not instance-dict entries: websockets' connection already has a large
    # __dict__, and one more key can double its size for every idle session.
    __slots__ = ("admission", "client_address", "guard")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets keeps its drain waiters in a deque (~0.7 KiB empty, per session);
        # it only appends, removes and iterates them, which a list does in 56 bytes.
        self.drain_waiters = []  # type: ignore[assignment]
        self.guard: ConnectionGuard | None = None
        self.admission: Admitter | None = None
        self.client_address = ""

    def forget_handshake(self) -> None:
        """Drop the opening handshake's headers (~2 KiB a session, for the session's whole
        life) once the session runs. The request itself stays: websockets tells it from
        later frames by `request is None`, and its parser's generator holds it anyway."""
        if self.request is not None:
            self.request.headers.clear()
        self.response = None

    async def send_texts(self, frames: Sequence[bytes]) -> None:
        """Send each of `frames` (UTF-8 JSON) as its own text message, in one write."""
        async with self.send_context():
            for frame in frames:
                self.protocol.send_text(frame)
            self.transport.writelines(self.protocol.data_to_send())

    def writable(self) -> bool:
        """Whether a write now cannot block: open, and websockets has not paused writing
        (the transport's buffer is below its high-water mark)."""
        return (
            not self.paused
            and self.protocol.state is State.OPEN
            and not self.transport.is_closing()
        )

    def write_texts(self, frames: Sequence[bytes]) -> None:
        """Write each of `frames` as its own text message, in one write, now: only when
        `writable()` (what `send_texts` does without its wait for the socket to drain)."""
        protocol = self.protocol
        for frame in frames:
            protocol.send_text(frame)
        self.transport.writelines(protocol.data_to_send())

    async def close_bounded(self, code: int, reason: str) -> None:
        """The closing handshake, bounded by `close_timeout`: a peer that stopped reading
        cannot take the close frame, and is dropped."""
        try:
            async with asyncio.timeout(self.close_timeout):
                await self.close(code, reason)
        except TimeoutError:
            self.transport.abort()

    async def read_until_closed(self) -> None:
        """Read past what the client still sends, so its close reply is heard promptly."""
        with suppress(ConnectionClosed):
            async for _ in self:
                pass

    def close_started_by_websockets(self) -> int | None:
        """The code of a close websockets itself started (1009: a frame too large)."""
        protocol = self.protocol
        if protocol.close_sent is not None and not protocol.close_rcvd_then_sent:
            return protocol.close_sent.code
        return None

    def allow_messages_up_to(self, max_bytes: int) -> None:
        self.protocol.max_message_size = max_bytes

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        guard = self.guard
        if guard is not None and isinstance(event, Frame) and event.opcode is Opcode.PING:
            guard.control_frame_received()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        guard = self.guard
        if guard is not None:
            buffered = self.transport.get_write_buffer_size()
            if buffered > guard.output_limit_bytes:
                guard.output_overflowed(buffered)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        admission, self.admission = self.admission, None
        if admission is not None:
            admission.release(self)
