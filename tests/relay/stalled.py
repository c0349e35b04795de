"""A WebSocket client on a raw socket that identifies, then stops reading.

`websockets`' own client keeps reading into its buffer; this one does not read at all
until told to, with a small receive buffer, so the relay's writes to it back up the way a
hung console's would.
"""

from __future__ import annotations

import asyncio
import json
import socket

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

READ_CHUNK = 65536


class StalledClient:
    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self._sock = sock
        self._protocol = protocol
        self.texts: list[str] = []
        self.close_code: int | None = None

    @classmethod
    async def identified(cls, url: str, port: int, token: str) -> StalledClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        protocol = ClientProtocol(parse_uri(url))
        protocol.send_request(protocol.connect())
        client = cls(sock, protocol)
        await client._flush()
        await client._read_until(lambda: len(client.texts) >= 1)  # Hello
        protocol.send_text(json.dumps({"op": 3, "d": {"token": token}}).encode())
        await client._flush()
        await client._read_until(lambda: len(client.texts) >= 2)  # READY
        assert json.loads(client.texts[1])["t"] == "READY", client.texts
        return client

    async def ping_flood(self, count: int, payload: bytes = b"") -> None:
        """Send `count` WebSocket pings, reading nothing (their pongs pile up at the relay)."""
        for _ in range(count):
            self._protocol.send_ping(payload)
        await self._flush()

    async def read_until_closed(self) -> int | None:
        """Resume reading: everything queued, then the close frame; its code."""
        await self._read_until(lambda: self.close_code is not None)
        return self.close_code

    def close(self) -> None:
        self._sock.close()

    async def _flush(self) -> None:
        data = b"".join(self._protocol.data_to_send())
        if data:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)

    async def _read_until(self, done: object) -> None:
        assert callable(done)
        loop = asyncio.get_running_loop()
        while not done():
            data = await loop.sock_recv(self._sock, READ_CHUNK)
            if not data:
                self._protocol.receive_eof()
                return
            self._protocol.receive_data(data)
            for event in self._protocol.events_received():
                if isinstance(event, Response):
                    assert event.status_code == 101, event
                elif isinstance(event, Frame):
                    self._on_frame(event)
            await self._flush()

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.TEXT:
            self.texts.append(bytes(frame.data).decode())
        elif frame.opcode is Opcode.CLOSE:
            self.close_code = Close.parse(bytes(frame.data)).code
