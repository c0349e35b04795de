"""A scripted relay on a real socket: what a real relay never sends on demand.

A real relay delivers a message twice only in rare failures, and never one past its
`expires_at`; the client must still cope with both. Each connection to the stand-in
gets the next `Script`: Hello, READY with the script's fields, the script's frames, then
a close (or heartbeat answers until the client leaves). The Identify of every connection
is kept, to check what the client resumed from, and so is every frame it sent after.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from shared.clock import now_ms

EPOCH = "3f2a9c0d11e4b7a8"
FACTORY = "press-7"
OPERATOR = {"id": "2", "username": "operator-1", "type": "operator"}
HOUR_MS = 3_600_000


def factory_token(username: str = FACTORY, user_type: str = "factory") -> str:
    """A token the stand-in takes as it is (it checks nothing)."""
    now = int(time.time())
    claims = {"sub": "1", "name": username, "type": user_type, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, "stand-in-secret-0123456789abcdefghij", algorithm="HS256")


def command(
    message_id: str,
    offset: int,
    *,
    stream: str = "own",
    epoch: str = EPOCH,
    ttl_ms: int = HOUR_MS,
    payload: Any = None,
) -> dict[str, Any]:
    """Op 4 as the relay delivers it to a factory, with its cursor and `expires_at`."""
    ts = now_ms()
    return {
        "op": 4,
        "d": {
            "id": message_id,
            "from": OPERATOR,
            "target": FACTORY if stream == "own" else None,
            "payload": {"action": "stop"} if payload is None else payload,
            "ts": ts,
            "expires_at": ts + ttl_ms,
            "cursor": {"stream": stream, "epoch": epoch, "offset": offset},
        },
    }


def cursors(all_offset: int = 0, own_offset: int = 0, epoch: str = EPOCH) -> dict[str, Any]:
    return {
        "all": {"epoch": epoch, "offset": all_offset},
        "own": {"epoch": epoch, "offset": own_offset},
    }


@dataclass
class Script:
    ready: dict[str, Any] = field(default_factory=dict)
    """READY's fields beside `session_id` and `user`."""
    frames: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    user: dict[str, str] = field(
        default_factory=lambda: {"id": "1", "username": FACTORY, "type": "factory"}
    )


@dataclass
class StandInRelay:
    scripts: list[Script]
    url: str = ""
    identifies: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    """Every frame the clients sent after Identify, heartbeats aside."""

    async def _serve(self, ws: ServerConnection) -> None:
        script = self.scripts[min(len(self.identifies), len(self.scripts) - 1)]
        hello = {"op": 0, "d": {"heartbeat_interval": 30000, "session_id": "s"}}
        await ws.send(orjson.dumps(hello).decode())
        self.identifies.append(orjson.loads(await ws.recv())["d"])
        ready = {"session_id": "s", "user": script.user, **script.ready}
        await ws.send(orjson.dumps({"op": 6, "t": "READY", "s": 1, "d": ready}).decode())
        for sequence, frame in enumerate(script.frames, start=2):
            await ws.send(orjson.dumps({**frame, "s": sequence}).decode())
        if script.close_code is not None:
            await ws.close(script.close_code, "scripted close")
            return
        try:
            async for raw in ws:
                frame = orjson.loads(raw)
                if frame["op"] == 1:
                    await ws.send(orjson.dumps({"op": 2, "d": None}).decode())
                elif frame["op"] != 2:
                    self.received.append(frame)
        except ConnectionClosed:
            pass


@asynccontextmanager
async def stand_in_relay(*scripts: Script) -> AsyncIterator[StandInRelay]:
    relay = StandInRelay(list(scripts))
    async with serve(relay._serve, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        relay.url = f"ws://127.0.0.1:{port}/ws"
        yield relay
