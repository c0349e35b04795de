"""`RelayConnection.send_texts` reaches into websockets beyond its documented API
(`send_context()` and the protocol's `send_text`): `pyproject.toml` pins the tested range of
websockets, and these tests fail loudly on a release that changed what it relies on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from relay_service.connection import RelayConnection

FRAMES = [b'{"op":2,"d":null}', b'{"op":5,"s":2,"d":"\xc3\xa9"}', b"{}"]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, RelayConnection)
        await connection.send_texts(FRAMES)
        await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=RelayConnection) as running:
        yield running


def _url(server: Server) -> str:
    host, port = next(iter(server.sockets)).getsockname()[:2]
    return f"ws://{host}:{port}"


async def test_a_batch_of_frames_arrives_as_separate_text_messages_in_order(
    server: Server,
) -> None:
    async with connect(_url(server)) as client:
        received = [await asyncio.wait_for(client.recv(), 5) for _ in FRAMES]

    assert received == [frame.decode() for frame in FRAMES]


async def test_a_batch_to_a_closed_connection_raises_connection_closed() -> None:
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, RelayConnection)
        await connection.wait_closed()
        try:
            await connection.send_texts(FRAMES)
        except ConnectionClosed as error:
            outcome.set_result(error)
        else:
            outcome.set_result(None)

    async with serve(handler, "127.0.0.1", 0, create_connection=RelayConnection) as running:
        async with connect(_url(running)):
            pass
        assert isinstance(await asyncio.wait_for(outcome, 5), ConnectionClosed)
