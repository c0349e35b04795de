"""Live sessions and a steady flow of commands and statuses through real relays, recorded.

`Peer` is one identified WebSocket session that records every dispatch it receives (with
the time) and how it ended, if it did. `Flow` keeps an operator sending numbered commands
to a factory and the factory sending numbered statuses, so a test can say when messages
stopped crossing replicas, when they flowed again, and which were lost or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from shared.protocol import DISPATCH_OPS, Op

SEND_INTERVAL_SECONDS = 0.02
OPEN_TIMEOUT = 5.0

Frame = dict[str, Any]


@dataclass
class Peer:
    """One session: identified at `open`, then read in the background until closed."""

    ws: ClientConnection
    username: str
    ready: Frame = field(default_factory=dict)
    received: list[tuple[float, Frame]] = field(default_factory=list)
    close_code: int | None = None
    _reader: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(
        cls, ws_url: str, token: str, username: str, resume: Frame | None = None
    ) -> Peer:
        """Identified (with `resume`, a factory's cursors, when given): READY is `ready`."""
        ws = await connect(ws_url, open_timeout=OPEN_TIMEOUT, close_timeout=1, ping_interval=None)
        identify: Frame = {"token": token} if resume is None else {"token": token, "resume": resume}
        async with asyncio.timeout(OPEN_TIMEOUT):
            await ws.recv()  # Hello
            await ws.send(json.dumps({"op": Op.IDENTIFY, "d": identify}))
            ready = json.loads(await ws.recv())
        assert ready.get("t") == "READY", ready
        peer = cls(ws, username, ready)
        peer._reader = asyncio.create_task(peer._read())
        return peer

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("op") in DISPATCH_OPS:
                    self.received.append((time.monotonic(), frame))
                    self._arrived.set()
        except ConnectionClosed:
            pass
        received = self.ws.protocol.close_rcvd
        self.close_code = None if received is None else received.code

    @property
    def open_still(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    def payloads(self, op: Op) -> list[tuple[float, Any]]:
        return [(at, frame["d"]["payload"]) for at, frame in self.received if frame["op"] == op]

    async def wait_for(self, count: int, within: float = OPEN_TIMEOUT) -> None:
        """Until `count` dispatches have arrived (or `within` s passed)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while len(self.received) < count:
                    self._arrived.clear()
                    await self._arrived.wait()

    def delivery_failures(self) -> list[Frame]:
        return [frame for _, frame in self.received if frame.get("t") == "DELIVERY_FAILED"]

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@dataclass
class Flow:
    """Numbered commands operator → factory and statuses factory → observer, every 20 ms."""

    operator: Peer
    factory: Peer
    commands_sent: list[float] = field(default_factory=list)
    statuses_sent: list[float] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._commands()),
            asyncio.create_task(self._statuses()),
        ]

    async def _commands(self) -> None:
        while True:
            seq = len(self.commands_sent)
            self.commands_sent.append(time.monotonic())
            await self.operator.send(
                {
                    "op": Op.COMMAND,
                    "d": {"payload": {"seq": seq}, "target": self.factory.username, "id": str(seq)},
                }
            )
            await asyncio.sleep(SEND_INTERVAL_SECONDS)

    async def _statuses(self) -> None:
        while True:
            seq = len(self.statuses_sent)
            self.statuses_sent.append(time.monotonic())
            await self.factory.send({"op": Op.STATUS, "d": {"payload": {"seq": seq}}})
            await asyncio.sleep(SEND_INTERVAL_SECONDS)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task

    def commands_received(self) -> list[tuple[float, int]]:
        return [(at, payload["seq"]) for at, payload in self.factory.payloads(Op.COMMAND)]

    def command_cursors(self) -> list[tuple[int, tuple[str, int]]]:
        """Each command received: its number and its cursor (epoch, offset)."""
        return [
            (
                frame["d"]["payload"]["seq"],
                (frame["d"]["cursor"]["epoch"], frame["d"]["cursor"]["offset"]),
            )
            for _, frame in self.factory.received
            if frame["op"] == Op.COMMAND
        ]

    def commands_reported_failed(self) -> set[int]:
        """The numbers of the commands the relay answered with DELIVERY_FAILED."""
        return {int(frame["d"]["id"]) for frame in self.operator.delivery_failures()}

    def statuses_received(self) -> list[tuple[float, int]]:
        return [(at, payload["seq"]) for at, payload in self.operator.payloads(Op.STATUS)]

    async def wait_for_command(self, seq: int, within: float) -> float | None:
        """When the factory received a command numbered `seq` or later (None: not within)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for at, received in self.commands_received():
                if received >= seq:
                    return at
            await asyncio.sleep(0.02)
        return None


def in_order_without_repeats(seqs: list[int]) -> bool:
    return all(earlier < later for earlier, later in itertools.pairwise(seqs))
