"""SPEC 1, "Sequence": Hello, Identify, READY, heartbeats, and the Origin check."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from shared.identity import UserType
from shared.protocol import Op
from tests.relay.harness import ALLOWED_ORIGIN, Connector, Relays, Tokens


async def test_hello_is_the_first_frame_with_heartbeat_interval_and_session_id(
    relays: Relays, connect: Connector
) -> None:
    client = await connect.raw(relays.a)

    assert client.hello["op"] == Op.HELLO
    assert client.hello["d"]["heartbeat_interval"] == 30000
    assert isinstance(client.hello["d"]["session_id"], str)
    assert client.hello["d"]["session_id"]


async def test_every_session_gets_its_own_session_id(relays: Relays, connect: Connector) -> None:
    first = await connect.raw(relays.a)
    second = await connect.raw(relays.a)

    assert first.hello["d"]["session_id"] != second.hello["d"]["session_id"]


@pytest.mark.parametrize("user_type", list(UserType))
async def test_identify_answers_ready_with_s_1_the_session_and_the_user(
    relays: Relays, connect: Connector, tokens: Tokens, user_type: UserType
) -> None:
    user = tokens.user(user_type)
    client = await connect.raw(relays.a)

    ready = await client.identify(user)

    if user_type is not UserType.FACTORY:  # observers get the factories' presence too
        assert isinstance(ready["d"].pop("factories"), list)
    assert ready == {
        "op": Op.EVENT,
        "t": "READY",
        "s": 1,
        "d": {
            "session_id": client.hello["d"]["session_id"],
            "user": user.stamp,
            **({"cursors": ready["d"]["cursors"]} if user_type is UserType.FACTORY else {}),
        },
    }


async def test_heartbeat_is_answered_with_a_heartbeat_ack(
    relays: Relays, connect: Connector
) -> None:
    client = await connect(relays.a, UserType.OPERATOR)

    await client.send({"op": Op.HEARTBEAT, "d": 1})

    assert await client.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


async def test_heartbeat_with_null_sequence_is_answered(relays: Relays, connect: Connector) -> None:
    client = await connect(relays.a, UserType.FACTORY)

    await client.send({"op": Op.HEARTBEAT, "d": None})

    assert await client.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


async def test_heartbeat_before_identify_is_answered(relays: Relays, connect: Connector) -> None:
    client = await connect.raw(relays.a)

    await client.send({"op": Op.HEARTBEAT})

    assert await client.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


async def test_heartbeat_ack_from_the_client_gets_no_reply(
    relays: Relays, connect: Connector
) -> None:
    client = await connect(relays.a, UserType.VIEWER)

    await client.send({"op": Op.HEARTBEAT_ACK, "d": None})

    await client.expect_nothing()


async def test_handshake_from_an_origin_not_in_cors_origins_is_refused_with_403(
    relays: Relays, connect: Connector
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect.raw(relays.a, origin="https://evil.example.com")

    assert refused.value.response.status_code == 403


async def test_handshake_from_an_allowed_origin_is_accepted(
    relays: Relays, connect: Connector
) -> None:
    client = await connect.raw(relays.a, origin=ALLOWED_ORIGIN)

    assert client.hello["op"] == Op.HELLO


async def test_handshake_without_origin_is_accepted(relays: Relays, connect: Connector) -> None:
    client = await connect.raw(relays.a)

    assert client.hello["op"] == Op.HELLO
