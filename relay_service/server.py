"""Serving a replica: listen, run a session per connection, and drain on SIGTERM.

Built directly on the `websockets` server rather than an ASGI stack: the fan-out hot path
is a bytes concatenation and a socket write per delivery, and every layer between the two
would cost more than the work itself.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.typing import Origin

from relay_service.collector import Collector, freeze_start_up_objects
from relay_service.config import RelaySettings
from relay_service.connection import RelayConnection
from relay_service.endpoints import http_router
from relay_service.relay import Relay
from relay_service.session import Session
from shared.logging import get_logger
from shared.protocol import CloseCode
from shared.tasks import cancel_all

log = get_logger(__name__)

CLOSE_TIMEOUT_SECONDS = 2.0
"""How long a closing handshake may take before the peer is dropped."""
DRAIN_STEP_SECONDS = 0.1
"""A paced drain closes a batch of sessions this often."""


async def serve_until_stopped(settings: RelaySettings) -> None:
    """Run the relay until SIGTERM or SIGINT, then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    relay = Relay(settings)
    async with running(relay):
        freeze_start_up_objects()
        collector = Collector(lambda: len(relay.admission), lambda: relay.admission.released)
        collecting = asyncio.create_task(collector.run(), name="gc-collector")
        try:
            await stop.wait()
        finally:
            await cancel_all([collecting])


@asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[Server]:
    """Start the relay, listen, and on exit drain: every session gets 1012."""
    settings = relay.settings

    async def handle(connection: ServerConnection) -> None:
        assert isinstance(connection, RelayConnection)
        connection.forget_handshake()
        await Session(connection, relay).run()

    await relay.start()
    try:
        server = await _listen(relay, handle)
    except BaseException:
        await relay.stop()  # the port is taken, say: nothing may keep the loop alive
        raise
    log.info(
        "relay_listening",
        host=settings.host,
        port=settings.port,
        max_connections=relay.admission.total,
    )
    try:
        yield server
    finally:
        await _drain(relay, server)


async def _listen(relay: Relay, handle: Callable[[ServerConnection], Awaitable[None]]) -> Server:
    settings = relay.settings
    return await serve(
        handle,
        settings.host,
        settings.port,
        process_request=http_router(relay),
        origins=[*map(Origin, settings.cors_origins), None],
        max_size=settings.pre_identify_max_bytes,  # raised for each session at READY
        backlog=settings.listen_backlog,
        compression=None,
        ping_interval=None,
        close_timeout=CLOSE_TIMEOUT_SECONDS,
        server_header=None,
        create_connection=RelayConnection,
    )


async def _drain(relay: Relay, server: Server) -> None:
    """1012 to every connection, paced (`DRAIN_RATE_PER_SECOND`) so the sessions do not all
    land on the surviving replicas in the same second; a peer that does not complete its
    close in `CLOSE_TIMEOUT_SECONDS` (it stopped reading, say) is dropped, so the drain ends
    when the sessions have closed or been dropped, within `SHUTDOWN_TIMEOUT_SECONDS`."""
    relay.draining = True
    sessions = len(relay.hub)
    log.info("relay_draining", sessions=sessions)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + relay.settings.shutdown_timeout_seconds
    server.close(close_connections=False)  # no new connections; the open ones are ours
    pacing_ends = deadline - CLOSE_TIMEOUT_SECONDS - 0.5
    closing = await _close_paced(relay, pacing_ends)
    if not await _closed_by(server, min(deadline, loop.time() + CLOSE_TIMEOUT_SECONDS + 0.5)):
        dropped = relay.admission.connections()
        for connection in dropped:
            connection.transport.abort()
        log.info("drain_dropped_unresponsive", connections=len(dropped))
        if not await _closed_by(server, deadline):
            log.warning("drain_timed_out", remaining=len(relay.hub))
    for task in closing:
        task.cancel()
    await relay.stop()
    log.info("relay_stopped", closed_sessions=sessions)


async def _close_paced(relay: Relay, ends_at: float) -> list[asyncio.Task[None]]:
    """Start closing every connection with 1012, in batches every `DRAIN_STEP_SECONDS` at
    `DRAIN_RATE_PER_SECOND` (faster if needed to finish by `ends_at`, loop time)."""
    loop = asyncio.get_running_loop()
    connections = relay.admission.connections()
    if not connections:
        return []
    seconds = min(len(connections) / relay.settings.drain_rate_per_second, ends_at - loop.time())
    steps = max(1, int(seconds / DRAIN_STEP_SECONDS))
    per_step = -(-len(connections) // steps)  # ceiling division
    closing: list[asyncio.Task[None]] = []
    for start in range(0, len(connections), per_step):
        if start:
            await asyncio.sleep(DRAIN_STEP_SECONDS)
        for connection in connections[start : start + per_step]:
            close = connection.close_bounded(CloseCode.SERVICE_RESTART, "replica shutting down")
            closing.append(asyncio.create_task(close))
    return closing


async def _closed_by(server: Server, deadline: float) -> bool:
    """Whether every connection's handler has finished by `deadline` (loop time)."""
    try:
        async with asyncio.timeout_at(deadline):
            await server.wait_closed()
    except TimeoutError:
        return False
    return True
