"""The relay's WebSocket protocol (SPEC section 1): opcodes, close codes, frame models.

Client frames are decoded in two steps: the envelope (`op`, `d`, `t`, `s`), then `d`
against the model of that op, so that the relay can answer 4001, 4003, 4005 and 4010
before it spends any work on a payload it would refuse anyway.
"""

from __future__ import annotations

import json
import math
from enum import IntEnum
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from shared.identity import USERNAME_PATTERN

EVENT_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
RESERVED_EVENT_NAMES = frozenset(
    {"READY", "RECONNECT", "PRESENCE_UPDATE", "REFRESHED", "DELIVERY_FAILED"}
)
MAX_TOKEN_LENGTH = 8192
MAX_EPOCH_LENGTH = 64
MAX_OFFSET = 10**12 - 1
"""Offsets fit the broker header's 12 digits."""


class Op(IntEnum):
    HELLO = 0
    HEARTBEAT = 1
    HEARTBEAT_ACK = 2
    IDENTIFY = 3
    COMMAND = 4
    STATUS = 5
    EVENT = 6
    REFRESH = 7


DISPATCH_OPS = frozenset({Op.COMMAND, Op.STATUS, Op.EVENT})
CLIENT_OPS = frozenset({Op.HEARTBEAT, Op.HEARTBEAT_ACK, Op.IDENTIFY, *DISPATCH_OPS, Op.REFRESH})
SERVER_OPS = frozenset({Op.HELLO, Op.HEARTBEAT_ACK, *DISPATCH_OPS})


class CloseCode(IntEnum):
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    NOT_AUTHORIZED = 4010
    TOO_MANY_SESSIONS = 4011
    TOO_SLOW = 4013
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012


class ProtocolError(Exception):
    """A client broke the protocol; the session closes with `code` and `reason`."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


MessageId = Annotated[StrictStr, Field(pattern=MESSAGE_ID_PATTERN)]
FactoryName = Annotated[StrictStr, Field(pattern=USERNAME_PATTERN)]
EventName = Annotated[StrictStr, Field(pattern=EVENT_NAME_PATTERN)]


ModelT = TypeVar("ModelT", bound=_Strict)


class ClientFrame(_Strict):
    op: StrictInt
    d: Any = None
    t: EventName | None = None
    s: Annotated[StrictInt, Field(ge=0)] | None = None


class Cursor(_Strict):
    """A place in a command stream: the last message a factory received (SPEC 5.2)."""

    epoch: Annotated[StrictStr, Field(max_length=MAX_EPOCH_LENGTH)]
    offset: Annotated[StrictInt, Field(ge=0, le=MAX_OFFSET)]


class ResumeData(_Strict):
    """`resume` of a factory's Identify: where each stream left off."""

    all: Cursor | None = None
    own: Cursor | None = None


class IdentifyData(_Strict):
    token: Annotated[StrictStr, Field(max_length=MAX_TOKEN_LENGTH)]
    resume: ResumeData | None = None


class RefreshData(_Strict):
    """`d` of op 7: a fresh token of the same user, before the session's token expires."""

    token: Annotated[StrictStr, Field(max_length=MAX_TOKEN_LENGTH)]


class _Stampable(_Strict):
    """A relayed message's `d`; the server's own stamps are ignored, never trusted."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)

    payload: Any
    id: MessageId | None = None
    forged_from: Any = Field(default=None, alias="from", exclude=True)
    forged_ts: Any = Field(default=None, alias="ts", exclude=True)
    forged_expires_at: Any = Field(default=None, alias="expires_at", exclude=True)
    forged_cursor: Any = Field(default=None, alias="cursor", exclude=True)


class StatusData(_Stampable):
    pass


class TargetedData(_Stampable):
    """`d` of a Command (op 4) or Event (op 6): for every factory, or one."""

    target: FactoryName | None = None
    ttl_ms: Annotated[StrictInt, Field(ge=1)] | None = None
    """Checked against `COMMAND_TTL_MAX_MS` by the relay, which knows the setting."""


_HEARTBEAT_SEQUENCE: TypeAdapter[int | None] = TypeAdapter(Annotated[StrictInt, Field(ge=0)] | None)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate key")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:24]}")
    return value


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_STRICT_JSON = json.JSONDecoder(
    object_pairs_hook=_object, parse_float=_finite, parse_constant=_no_constant
)


def loads_strict(raw: str | bytes) -> Any:
    """RFC 8259 JSON and nothing looser: no NaN or Infinity, no number that overflows a
    double, no duplicate key anywhere (parsers disagree on which one wins); else 4002."""
    try:
        text = raw if isinstance(raw, str) else raw.decode()
        return _STRICT_JSON.decode(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeError too
        raise ProtocolError(CloseCode.DECODE_ERROR, f"not strict JSON: {error}"[:100]) from None


def decode_frame(raw: str | bytes) -> ClientFrame:
    """Parse the envelope of a client frame; bad JSON or shapes are 4002, bad ops 4001."""
    value = loads_strict(raw)
    try:
        frame = ClientFrame.model_validate(value)
    except ValidationError as error:
        raise ProtocolError(CloseCode.DECODE_ERROR, _first_problem(error)) from None
    if frame.op not in CLIENT_OPS:
        raise ProtocolError(CloseCode.UNKNOWN_OPCODE, f"unknown opcode {frame.op}")
    if frame.t is not None and frame.op != Op.EVENT:
        raise ProtocolError(CloseCode.DECODE_ERROR, "t is for op 6 only")
    return frame


def parse_data(model: type[ModelT], data: Any) -> ModelT:
    """Validate a frame's `d` against `model`; a wrong shape is 4002."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ProtocolError(CloseCode.DECODE_ERROR, _first_problem(error)) from None


def heartbeat_sequence(data: Any) -> int | None:
    """`d` of a Heartbeat or Heartbeat ACK: the last `s` seen, or null; anything else is 4002."""
    try:
        return _HEARTBEAT_SEQUENCE.validate_python(data)
    except ValidationError as error:
        raise ProtocolError(CloseCode.DECODE_ERROR, _first_problem(error)) from None


def event_name(frame: ClientFrame) -> str:
    """The `t` of an op 6 frame: required, and not one of the server's own names (4010)."""
    if frame.t is None:
        raise ProtocolError(CloseCode.DECODE_ERROR, "op 6 needs t")
    if frame.t in RESERVED_EVENT_NAMES:
        raise ProtocolError(CloseCode.NOT_AUTHORIZED, f"{frame.t} is a server event")
    return frame.t


def _first_problem(error: ValidationError) -> str:
    detail = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in detail["loc"])
    text = f"{where}: {detail['msg']}" if where else detail["msg"]
    return text[:100]


def dumps(value: Any) -> bytes:
    """The one JSON encoder of the hot path."""
    return orjson.dumps(value)
