"""The lean floor: the least a relay on the same libraries does for the benchmark's scenarios.

websockets + uvloop + redis.asyncio + orjson (+ PyJWT), in one file, no layers: Hello;
Identify verifies the JWT and asks Redis for its revocation (one MGET) before READY;
heartbeats are answered; statuses and commands are stamped, serialized once and published;
one pub/sub connection, subscribed at start to the two broadcast channels, fans each
message out to this process's sessions, writing synchronously while a socket's transport
is not paused. No limits, no metrics, no validation beyond what the scenarios need, no
targeted commands: it is a yardstick for `bench.relay`, never a relay to run.

    python -m bench.lean    # HOST, PORT, JWT_SECRET, REDIS_URL, REDIS_PREFIX as the relay
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import jwt
import orjson
import uvloop
from redis.asyncio import BlockingConnectionPool, Redis
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import State

HEARTBEAT_INTERVAL_MS = 30_000
AUDIENCE = "factory-relay"
ISSUER = "factory-relay-auth"


class LeanRelay:
    def __init__(self) -> None:
        self.secret = os.environ["JWT_SECRET"]
        self.prefix = os.environ.get("REDIS_PREFIX", "factory-relay")
        pool = BlockingConnectionPool.from_url(os.environ["REDIS_URL"], max_connections=32)
        self.redis = Redis.from_pool(pool)
        self.observers_channel = f"{self.prefix}:lean:observers"
        self.factories_channel = f"{self.prefix}:lean:factories"
        self.audiences: dict[str, set[ServerConnection]] = {
            self.observers_channel: set(),
            self.factories_channel: set(),
        }
        self.sequences: dict[ServerConnection, int] = {}
        self.subscribed = asyncio.Event()

    async def listen(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(*self.audiences)
        self.subscribed.set()
        async for message in pubsub.listen():
            if message["type"] == "message":
                self.fan_out(message["channel"].decode(), message["data"])

    def fan_out(self, channel: str, message: bytes) -> None:
        prefix, body = message[:12], message[12:]  # b'{"op":N,"s":' then the rest
        sequences = self.sequences
        for ws in self.audiences[channel]:
            sequences[ws] += 1
            send(ws, b"%b%d,%b" % (prefix, sequences[ws], body))

    async def session(self, ws: ServerConnection) -> None:
        session_id = uuid.uuid4().hex
        send(ws, orjson.dumps({"op": 0, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}}))
        audience = None
        stamp: dict[str, Any] = {}
        try:
            async for raw in ws:
                frame = orjson.loads(raw)
                op = frame["op"]
                if op == 1:
                    send(ws, b'{"op":2,"d":null}')
                elif op == 3:
                    identified = await self.identify(ws, frame["d"]["token"], session_id)
                    if identified is not None:
                        audience, stamp = identified
                elif op in (4, 5) and audience is not None:
                    await self.relay(op, frame["d"], stamp)
        finally:
            if audience is not None:
                self.audiences[audience].discard(ws)
                del self.sequences[ws]

    async def identify(
        self, ws: ServerConnection, token: str, session_id: str
    ) -> tuple[str, dict[str, Any]] | None:
        claims = jwt.decode(
            token, self.secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
        )
        token_flag, cutoff = await self.redis.mget(
            f"{self.prefix}:revoked:token:{claims['jti']}",
            f"{self.prefix}:revoked:user:{claims['sub']}",
        )
        if token_flag is not None or (cutoff is not None and claims["iat"] < float(cutoff)):
            await ws.close(4004, "token revoked")
            return None
        stamp = {"id": claims["sub"], "username": claims["name"], "type": claims["type"]}
        audience = self.factories_channel if claims["type"] == "factory" else self.observers_channel
        self.sequences[ws] = 1
        self.audiences[audience].add(ws)
        ready = {"session_id": session_id, "user": stamp}
        send(ws, orjson.dumps({"op": 6, "t": "READY", "s": 1, "d": ready}))
        return audience, stamp

    async def relay(self, op: int, data: dict[str, Any], stamp: dict[str, Any]) -> None:
        stamped = {
            "id": data.get("id") or uuid.uuid4().hex,
            "from": stamp,
            "target": None,
            "payload": data.get("payload"),
            "ts": int(time.time() * 1000),
        }
        channel = self.factories_channel if op == 4 else self.observers_channel
        body = orjson.dumps({"d": stamped})[1:]
        await self.redis.publish(channel, b'{"op":%d,"s":' % op + body)


def send(ws: ServerConnection, frame: bytes) -> None:
    """Write now while the socket keeps up; a task that waits for it only when it does not."""
    if not ws.paused and ws.protocol.state is State.OPEN:
        ws.protocol.send_text(frame)
        ws.transport.writelines(ws.protocol.data_to_send())
    else:
        task = asyncio.ensure_future(ws.send(frame, text=True))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def main() -> None:
    relay = LeanRelay()
    listener = asyncio.create_task(relay.listen())
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])

    def http(ws: ServerConnection, request: Any) -> Any:
        if request.path == "/readyz":
            return ws.respond(200 if relay.subscribed.is_set() else 503, "\n")
        return None

    async with serve(
        relay.session,
        host,
        port,
        process_request=http,
        compression=None,
        ping_interval=None,
        backlog=4096,
        max_size=65_536,
    ):
        await listener


if __name__ == "__main__":
    uvloop.run(main())
