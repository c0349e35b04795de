"""Property tests of the decoder and the session's routing, without a socket.

Whatever a client sends, the relay's decoding path raises nothing but `ProtocolError`,
and the close code names the cause: 4002 for a frame of the wrong shape, 4001 for an
integer op outside 1-7, 4010 for an op or event name the user type may not send.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, cast

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay_service.broker import DropCallback
from relay_service.channels import Channels
from relay_service.config import RelaySettings
from relay_service.connection import RelayConnection
from relay_service.frames import unpack
from relay_service.relay import Relay
from relay_service.session import Session
from shared.identity import USERNAME_PATTERN, UserType
from shared.protocol import (
    EVENT_NAME_PATTERN,
    MESSAGE_ID_PATTERN,
    RESERVED_EVENT_NAMES,
    CloseCode,
    IdentifyData,
    Op,
    ProtocolError,
    StatusData,
    TargetedData,
    decode_frame,
    event_name,
    heartbeat_sequence,
    parse_data,
)
from tests.relay.harness import JWT_SECRET, Tokens, User

PROPERTIES = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
non_objects = json_values.filter(lambda value: not isinstance(value, dict))
not_integers = st.one_of(
    st.text(max_size=5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
message_ids = st.from_regex(MESSAGE_ID_PATTERN, fullmatch=True)
factory_names = st.from_regex(USERNAME_PATTERN, fullmatch=True)
event_names = st.from_regex(EVENT_NAME_PATTERN, fullmatch=True)


def decode_path(raw: str | bytes) -> None:
    """What the relay does with a frame before routing it: envelope, then `d` by op."""
    frame = decode_frame(raw)
    if frame.op == Op.HEARTBEAT:
        heartbeat_sequence(frame.d)
    elif frame.op in (Op.IDENTIFY, Op.REFRESH):
        parse_data(IdentifyData, frame.d)
    elif frame.op == Op.STATUS:
        parse_data(StatusData, frame.d)
    elif frame.op in (Op.COMMAND, Op.EVENT):
        if frame.op == Op.EVENT:
            event_name(frame)
        parse_data(TargetedData, frame.d)


def close_code_of(raw: str | bytes) -> int | None:
    try:
        decode_path(raw)
    except ProtocolError as error:
        if not error.reason:
            raise AssertionError(f"close {error.code} without a reason") from error
        return error.code
    return None


# -- the decoder ----------------------------------------------------------------------


@PROPERTIES
@given(st.text() | st.binary())
def test_the_decoder_raises_nothing_but_protocol_error_on_arbitrary_input(
    raw: str | bytes,
) -> None:
    close_code_of(raw)


@PROPERTIES
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "op": st.integers(-3, 9) | not_integers,
            "d": json_values,
            "t": st.text(max_size=5) | st.integers(),
            "s": st.integers(-2, 5) | not_integers,
            "x": json_values,
        },
    )
)
def test_the_decoder_raises_nothing_but_protocol_error_on_arbitrary_envelopes(
    frame: dict[str, Any],
) -> None:
    close_code_of(json.dumps(frame))


@PROPERTIES
@given(non_objects)
def test_valid_json_that_is_not_an_object_is_4002(value: Any) -> None:
    assert close_code_of(json.dumps(value)) == CloseCode.DECODE_ERROR


@PROPERTIES
@given(
    st.integers(min_value=-(2**70), max_value=2**70).filter(lambda op: not 1 <= op <= 7),
    json_values,
)
def test_an_object_with_an_integer_op_outside_1_to_7_is_4001(op: int, d: Any) -> None:
    assert close_code_of(json.dumps({"op": op, "d": d})) == CloseCode.UNKNOWN_OPCODE


@PROPERTIES
@given(not_integers, json_values)
def test_an_op_that_is_not_an_integer_is_4002(op: Any, d: Any) -> None:
    assert close_code_of(json.dumps({"op": op, "d": d})) == CloseCode.DECODE_ERROR


@PROPERTIES
@given(st.integers(1, 6), st.text(min_size=1, max_size=8).filter(lambda k: k not in "opdts"))
def test_an_unknown_envelope_field_is_4002(op: int, field: str) -> None:
    assert close_code_of(json.dumps({"op": op, "d": None, field: 1})) == CloseCode.DECODE_ERROR


@PROPERTIES
@given(st.sampled_from([1, 2, 3, 4, 5]), event_names)
def test_t_on_an_op_other_than_6_is_4002(op: int, t: str) -> None:
    assert close_code_of(json.dumps({"op": op, "t": t, "d": None})) == CloseCode.DECODE_ERROR


@PROPERTIES
@given(st.text(max_size=70).filter(lambda text: not re.fullmatch(MESSAGE_ID_PATTERN, text)))
def test_an_id_outside_the_pattern_is_4002(message_id: str) -> None:
    raw = json.dumps({"op": 4, "d": {"payload": 1, "id": message_id}})
    assert close_code_of(raw) == CloseCode.DECODE_ERROR


# -- the session's routing ------------------------------------------------------------


class RecordingRelay(Relay):
    """The real relay minus the network: what its broker is asked to publish is recorded."""

    def __init__(self) -> None:
        super().__init__(RelaySettings(jwt_secret=JWT_SECRET, redis_url=None, _env_file=None))
        self.published: list[tuple[str, bytes]] = []
        self.broker.publish = self._record  # type: ignore[method-assign]

    def _record(self, channel: str, message: bytes, on_dropped: DropCallback | None = None) -> None:
        self.published.append((channel, message))


TOKENS = Tokens()
CHANNELS = Channels("factory-relay")

valid_data = st.fixed_dictionaries(
    {"payload": json_values},
    optional={"id": message_ids, "target": factory_names},
)
bad_data = st.one_of(
    non_objects,
    st.fixed_dictionaries({}, optional={"id": message_ids, "target": factory_names}),
    st.fixed_dictionaries({"payload": json_values, "priority": json_values}),
)
messages = st.one_of(
    st.builds(lambda d: {"op": 4, "d": d}, valid_data | bad_data),
    st.builds(lambda d: {"op": 5, "d": d}, valid_data | bad_data),
    st.builds(
        lambda t, d: {"op": 6, "t": t, "d": d},
        event_names | st.sampled_from(sorted(RESERVED_EVENT_NAMES)) | st.none(),
        valid_data | bad_data,
    ),
)


def expected_outcome(user_type: UserType, frame: dict[str, Any], sender: str) -> int | str:
    """The SPEC's table: a close code, or the channel the message is published on."""
    op, d, t = frame["op"], frame["d"], frame.get("t")
    well_formed = isinstance(d, dict) and "payload" in d and set(d) <= {"payload", "id", "target"}
    if op == Op.STATUS:
        if user_type is not UserType.FACTORY:
            return CloseCode.NOT_AUTHORIZED
        if not well_formed or "target" in d:
            return CloseCode.DECODE_ERROR
        return CHANNELS.observer_shard(sender)
    if op == Op.COMMAND and not user_type.is_controller:
        return CloseCode.NOT_AUTHORIZED
    if op == Op.EVENT:
        if user_type is UserType.VIEWER:
            return CloseCode.NOT_AUTHORIZED
        if t is None:
            return CloseCode.DECODE_ERROR
        if t in RESERVED_EVENT_NAMES:
            return CloseCode.NOT_AUTHORIZED
    if not well_formed:
        return CloseCode.DECODE_ERROR
    if user_type is UserType.FACTORY:
        return CloseCode.DECODE_ERROR if "target" in d else CHANNELS.observer_shard(sender)
    if "target" in d:
        return CHANNELS.factory_shard(d["target"])
    return CHANNELS.factories


class SilentConnection:
    """Stands in for the socket: what the session writes is dropped, closing does nothing."""

    close_timeout = 1.0
    guard: object = None

    def allow_messages_up_to(self, max_bytes: int) -> None:
        return None

    async def send_texts(self, frames: list[bytes]) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None


async def route(user: User, frame: dict[str, Any]) -> tuple[RecordingRelay, int | None]:
    relay = RecordingRelay()
    session = Session(cast(RelayConnection, SilentConnection()), relay)
    await session._handle(json.dumps({"op": 3, "d": {"token": user.token}}))
    try:
        await session._handle(json.dumps(frame))
    except ProtocolError as error:
        return relay, error.code
    return relay, None


@PROPERTIES
@given(st.sampled_from(list(UserType)), messages)
def test_routing_follows_the_delivery_table_and_stamps_every_message(
    user_type: UserType, frame: dict[str, Any]
) -> None:
    user = TOKENS.user(user_type)
    expected = expected_outcome(user_type, frame, user.username)

    relay, code = asyncio.run(route(user, frame))

    if isinstance(expected, int):
        assert (code, relay.published) == (expected, [])
        return
    assert code is None
    [(channel, message)] = relay.published
    assert channel == expected
    dispatch = unpack(message)
    op, ts_ms, body = dispatch.op, dispatch.ts_ms, dispatch.body
    assert op == frame["op"]
    delivered = orjson.loads(b"{" + body)
    assert delivered.get("t") == frame.get("t")
    stamped = delivered["d"]
    assert stamped["payload"] == frame["d"]["payload"]
    assert stamped["ts"] == ts_ms
    assert stamped["from"]["type"] == user_type.value
    assert stamped["target"] == frame["d"].get("target")
    assert re.fullmatch(MESSAGE_ID_PATTERN, stamped["id"])
    if "id" in frame["d"]:
        assert stamped["id"] == frame["d"]["id"]
