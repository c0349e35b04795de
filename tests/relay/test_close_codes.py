"""SPEC 1, "Closing": each close code by its exact cause, and nothing of a refused frame relayed."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shared.identity import UserType
from shared.keys import hs256_kid
from shared.protocol import CloseCode, Op
from tests.relay.harness import JWT_SECRET, Connector, Relays, Tokens

VALID_COMMAND: dict[str, Any] = {"op": Op.COMMAND, "d": {"payload": {"start": True}}}


# -- 4001 unknown opcode --------------------------------------------------------------


@pytest.mark.parametrize("op", [0, 8, 99, -1, 2**40], ids=lambda op: f"op-{op}")
async def test_an_integer_op_other_than_1_to_7_closes_with_4001(
    relays: Relays, connect: Connector, op: int
) -> None:
    client = await connect(relays.a, UserType.OPERATOR)

    await client.send({"op": op, "d": None})

    await client.expect_close(CloseCode.UNKNOWN_OPCODE)


async def test_hello_op_0_from_the_client_closes_with_4001_before_identify(
    relays: Relays, connect: Connector
) -> None:
    client = await connect.raw(relays.a)

    await client.send({"op": Op.HELLO, "d": None})

    await client.expect_close(CloseCode.UNKNOWN_OPCODE)


# -- 4002 decode error ----------------------------------------------------------------

DECODE_ERRORS: dict[str, str] = {
    "not-json": "{op: 1}",
    "truncated-json": '{"op": 1',
    "empty": "",
    "array": "[1, 2]",
    "string": '"hello"',
    "number": "1",
    "null": "null",
    "op-missing": '{"d": null}',
    "op-string": '{"op": "1", "d": null}',
    "op-float": '{"op": 1.0, "d": null}',
    "op-float-fraction": '{"op": 1.5, "d": null}',
    "op-bool": '{"op": true, "d": null}',
    "op-null": '{"op": null, "d": null}',
    "unknown-envelope-field": '{"op": 1, "d": null, "x": 1}',
    "s-negative": '{"op": 1, "d": null, "s": -1}',
    "s-string": '{"op": 1, "d": null, "s": "1"}',
    "t-on-heartbeat": '{"op": 1, "d": null, "t": "PING"}',
    "t-not-a-string": '{"op": 6, "t": 1, "d": {"payload": 1}}',
    "heartbeat-d-string": '{"op": 1, "d": "1"}',
    "heartbeat-d-negative": '{"op": 1, "d": -1}',
    "heartbeat-d-object": '{"op": 1, "d": {}}',
    "identify-d-null": '{"op": 3, "d": null}',
    "identify-token-missing": '{"op": 3, "d": {}}',
    "identify-token-number": '{"op": 3, "d": {"token": 1}}',
    "identify-unknown-field": '{"op": 3, "d": {"token": "x", "remember": true}}',
    "identify-token-too-long": json.dumps({"op": 3, "d": {"token": "x" * 8193}}),
}


@pytest.mark.parametrize("raw", DECODE_ERRORS.values(), ids=DECODE_ERRORS.keys())
async def test_a_malformed_frame_closes_with_4002(
    relays: Relays, connect: Connector, raw: str
) -> None:
    client = await connect.raw(relays.a)

    await client.send_raw(raw)

    await client.expect_close(CloseCode.DECODE_ERROR)


async def test_a_binary_frame_closes_with_4002(relays: Relays, connect: Connector) -> None:
    client = await connect(relays.a, UserType.OPERATOR)

    await client.send_raw(json.dumps(VALID_COMMAND).encode())

    await client.expect_close(CloseCode.DECODE_ERROR)


BAD_MESSAGES: dict[str, dict[str, Any]] = {
    "d-missing": {"op": Op.COMMAND},
    "d-null": {"op": Op.COMMAND, "d": None},
    "d-array": {"op": Op.COMMAND, "d": [1]},
    "d-string": {"op": Op.COMMAND, "d": "go"},
    "payload-missing": {"op": Op.COMMAND, "d": {"target": "press-01"}},
    "unknown-field": {"op": Op.COMMAND, "d": {"payload": 1, "priority": "high"}},
    "t-on-command": {"op": Op.COMMAND, "t": "START", "d": {"payload": 1}},
    "id-with-space": {"op": Op.COMMAND, "d": {"payload": 1, "id": "a b"}},
    "id-empty": {"op": Op.COMMAND, "d": {"payload": 1, "id": ""}},
    "id-65-chars": {"op": Op.COMMAND, "d": {"payload": 1, "id": "a" * 65}},
    "id-number": {"op": Op.COMMAND, "d": {"payload": 1, "id": 7}},
    "target-too-short": {"op": Op.COMMAND, "d": {"payload": 1, "target": "ab"}},
    "target-with-slash": {"op": Op.COMMAND, "d": {"payload": 1, "target": "press/01"}},
    "target-number": {"op": Op.COMMAND, "d": {"payload": 1, "target": 1}},
    "event-without-t": {"op": Op.EVENT, "d": {"payload": 1}},
    "event-t-lower-case": {"op": Op.EVENT, "t": "alarm", "d": {"payload": 1}},
    "event-t-too-long": {"op": Op.EVENT, "t": "A" * 65, "d": {"payload": 1}},
    "event-payload-missing": {"op": Op.EVENT, "t": "ALARM", "d": {}},
}


@pytest.mark.parametrize("frame", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
async def test_a_message_of_the_wrong_shape_closes_with_4002_and_is_not_relayed(
    relays: Relays, connect: Connector, frame: dict[str, Any]
) -> None:
    factory = await connect(relays.b, UserType.FACTORY, username="press-01")
    operator = await connect(relays.a, UserType.OPERATOR)

    await operator.send(frame)

    await operator.expect_close(CloseCode.DECODE_ERROR)
    await connect.assert_nothing_relayed(relays.a, factory)


@pytest.mark.parametrize(
    "data",
    [{}, {"payload": 1, "target": "x"}, {"payload": 1, "extra": 1}, {"payload": 1, "id": "a b"}],
    ids=["payload-missing", "target", "unknown-field", "bad-id"],
)
async def test_a_status_of_the_wrong_shape_closes_with_4002(
    relays: Relays, connect: Connector, data: dict[str, Any]
) -> None:
    factory = await connect(relays.a, UserType.FACTORY)

    await factory.send({"op": Op.STATUS, "d": data})

    await factory.expect_close(CloseCode.DECODE_ERROR)


# -- 4003 not authenticated -----------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        VALID_COMMAND,
        {"op": Op.STATUS, "d": {"payload": 1}},
        {"op": Op.EVENT, "t": "ALARM", "d": {"payload": 1}},
        {"op": Op.REFRESH, "d": {"token": "any"}},
    ],
    ids=["command", "status", "event", "refresh"],
)
async def test_a_message_before_ready_closes_with_4003_and_is_not_relayed(
    relays: Relays, connect: Connector, frame: dict[str, Any]
) -> None:
    observer = await connect(relays.b, UserType.VIEWER)
    factory = await connect(relays.b, UserType.FACTORY)
    client = await connect.raw(relays.a)

    await client.send(frame)

    await client.expect_close(CloseCode.NOT_AUTHENTICATED)
    await connect.assert_nothing_relayed(relays.a, observer, factory)


# -- 4004 authentication failed -------------------------------------------------------


def _bad_tokens() -> dict[str, str]:
    encode, claims = Tokens.encode, Tokens.claims
    bad = {
        "not-a-jwt": "not-a-jwt",
        "empty": "",
        "bad-signature": encode(
            claims(), secret="another-secret-0123456789abcdefghijklmnop", kid=hs256_kid(JWT_SECRET)
        ),
        "unknown-kid": encode(claims(), secret="another-secret-0123456789abcdefghijklmnop"),
        "no-kid": Tokens.without_kid(claims()),
        "fractional-iat": encode(claims(iat=time.time())),
        "expired": encode(claims(exp=1_600_000_000, iat=1_599_990_000)),
        "wrong-issuer": encode(claims(iss="someone-else")),
        "wrong-audience": encode(claims(aud="another-service")),
        "unknown-user-type": encode(claims(type="superuser")),
        "empty-subject": encode(claims(sub="")),
        "none-algorithm": Tokens.none_algorithm(claims()),
    }
    for name in ("sub", "name", "type", "iat", "exp", "iss", "aud", "jti"):
        without = claims()
        del without[name]
        bad[f"missing-{name}"] = encode(without)
    return bad


BAD_TOKENS = _bad_tokens()


@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_identify_with_a_bad_token_closes_with_4004(
    relays: Relays, connect: Connector, token: str
) -> None:
    client = await connect.raw(relays.a)

    await client.send({"op": Op.IDENTIFY, "d": {"token": token}})

    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)


# -- 4005 already authenticated -------------------------------------------------------


async def test_a_second_identify_closes_with_4005(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    user = tokens.user(UserType.OPERATOR)
    client = await connect.raw(relays.a)
    await client.identify(user)

    await client.send({"op": Op.IDENTIFY, "d": {"token": user.token}})

    await client.expect_close(CloseCode.ALREADY_AUTHENTICATED)


# -- 4010 not authorized --------------------------------------------------------------

FORBIDDEN: list[tuple[UserType, dict[str, Any]]] = [
    (UserType.VIEWER, VALID_COMMAND),
    (UserType.VIEWER, {"op": Op.STATUS, "d": {"payload": 1}}),
    (UserType.VIEWER, {"op": Op.EVENT, "t": "ALARM", "d": {"payload": 1}}),
    (UserType.FACTORY, VALID_COMMAND),
    (UserType.FACTORY, {"op": Op.COMMAND, "d": {"payload": 1, "target": "press-01"}}),
    (UserType.OPERATOR, {"op": Op.STATUS, "d": {"payload": 1}}),
    (UserType.ADMIN, {"op": Op.STATUS, "d": {"payload": 1}}),
]


@pytest.mark.parametrize(
    ("user_type", "frame"),
    FORBIDDEN,
    ids=[f"{user_type}-op{frame['op']}" for user_type, frame in FORBIDDEN],
)
async def test_an_op_this_user_type_may_not_send_closes_with_4010_and_is_not_relayed(
    relays: Relays, connect: Connector, user_type: UserType, frame: dict[str, Any]
) -> None:
    factory = await connect(relays.b, UserType.FACTORY, username="press-01")
    observer = await connect(relays.b, UserType.OPERATOR)
    sender = await connect(relays.a, user_type)

    await sender.send(frame)

    await sender.expect_close(CloseCode.NOT_AUTHORIZED)
    await connect.assert_nothing_relayed(relays.a, factory, observer)


@pytest.mark.parametrize("name", ["READY", "RECONNECT", "PRESENCE_UPDATE"])
@pytest.mark.parametrize("user_type", [UserType.OPERATOR, UserType.ADMIN, UserType.FACTORY])
async def test_an_event_with_a_server_event_name_closes_with_4010(
    relays: Relays, connect: Connector, user_type: UserType, name: str
) -> None:
    receiver = await connect(
        relays.b, UserType.VIEWER if user_type is UserType.FACTORY else UserType.FACTORY
    )
    sender = await connect(relays.a, user_type)

    await sender.event(name, {"forged": True})

    await sender.expect_close(CloseCode.NOT_AUTHORIZED)
    await connect.assert_nothing_relayed(relays.a, receiver)


# -- 1009 message too big -------------------------------------------------------------


async def test_a_frame_over_max_message_bytes_closes_with_1009(
    relays: Relays, connect: Connector
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)

    await operator.command("x" * 65_536)

    await operator.expect_close(CloseCode.MESSAGE_TOO_BIG)
    await connect.assert_nothing_relayed(relays.a, factory)


async def test_a_frame_just_under_max_message_bytes_is_relayed(
    relays: Relays, connect: Connector
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)
    envelope = len(json.dumps({"op": 4, "d": {"payload": ""}}))

    await operator.command("x" * (65_536 - envelope))

    assert len((await factory.recv_dispatch())["d"]["payload"]) == 65_536 - envelope
