"""The wire format of everything the relay sends, and of its messages between replicas.

A relayed message is serialized once, where it enters the relay, as the dispatch's
`body`: the JSON object without its opening `{"op":N,"s":M,` — the one part that differs
per session. Every replica hands the same `body` to each of its listening sessions, which
prepend the op's prefix and their own `s` (`NUMBERED`), so fan-out is a concatenation per
socket, never a serialization.

Between replicas a message travels in broker format 2, a fixed header then `body`:

    b"2" op(1) ts(13) expires_at(13) stream(1) epoch(16) offset(12) name-length(2) name body

`ts` and `expires_at` are milliseconds since the epoch (`expires_at` zeros: never expires);
`stream` is `a` (stream `all`), `o` (stream `own`) or `-` (not kept: statuses and events to
observers); `epoch` and `offset` are the message's place in its stream (dashes and zeros
when not kept); `name` is the target factory (stream `own`), the sending factory (messages
to observers) or empty. A replica reads the header without parsing JSON, and rejects a
version it does not know (a replica of another release during a rolling upgrade) instead
of misreading it.

A message kept in a stream is completed by the stream itself, which alone knows its epoch
and offset (`StreamMessage`): the relay serializes everything else once, up to the cursor's
epoch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from relay_service.broker.base import BadMessageError
from relay_service.channels import Stream
from shared.protocol import DISPATCH_OPS, CloseCode, Op, ProtocolError, dumps

BROKER_FORMAT = ord("2")
"""The format version of broker messages this release writes and reads."""
HEADER_BYTES = 59
"""Up to and including the name's length; the name and the body follow."""
EPOCH_BYTES = 16
NO_EPOCH = "-" * EPOCH_BYTES
ALL, OWN, NOT_KEPT = b"a", b"o", b"-"
"""The header's stream byte."""
STREAM_NAMES = {ALL: "all", OWN: "own"}
STREAM_BYTES = {Stream.ALL: ALL, Stream.OWN: OWN}
PREFIXES: dict[int, bytes] = {op: b'{"op":%d,"s":' % op for op in DISPATCH_OPS}
NUMBERED = b"%b%d,%b"
"""A session's frame: `NUMBERED % (prefix, s, body)`, the op's prefix, its own `s`, then
the shared body (formatted where it is sent: the fan-out's hot path)."""
_DISPATCH_OPS_BY_DIGIT = {ord(str(int(op))): op for op in DISPATCH_OPS}
HEARTBEAT_ACK = dumps({"op": Op.HEARTBEAT_ACK, "d": None})


class Dispatch(NamedTuple):
    """A relayed message as replicas exchange it (a tuple: one is made per message heard)."""

    op: Op
    ts_ms: int
    body: bytes
    name: str = ""
    """The target factory (stream `own`), the sending factory (to observers), or empty."""
    stream: bytes = NOT_KEPT
    epoch: str = NO_EPOCH
    offset: int = 0
    expires_at: int = 0
    """Ms since the epoch after which the message is never delivered; 0: never expires."""

    @property
    def prefix(self) -> bytes:
        return PREFIXES[self.op]


class StreamMessage(NamedTuple):
    """A message to factories before its stream numbered it; `complete` finishes it once
    the stream gave it an epoch and an offset (the Redis stream does the same in Lua)."""

    head: bytes
    """`b"2"`, op, ts, expires_at and the stream byte."""
    name: bytes
    """The name's length and the name."""
    body_head: bytes
    """The body up to and including the cursor's `"epoch":"`."""


def dispatch_body(op: Op, t: str | None, stamped: dict[str, Any]) -> bytes:
    """Serialize a stamped message once, as `body`; a value JSON cannot carry is 4002."""
    message: dict[str, Any] = {"t": t, "d": stamped} if op == Op.EVENT else {"d": stamped}
    try:
        return dumps(message)[1:]
    except TypeError as error:  # orjson: an integer beyond 64 bits, say
        raise ProtocolError(CloseCode.DECODE_ERROR, f"payload cannot be relayed: {error}") from None


def stream_message(
    op: Op, t: str | None, stamped: dict[str, Any], *, stream: bytes, target: str | None
) -> StreamMessage:
    """A message to factories, serialized once but for its cursor's epoch and offset."""
    body = dispatch_body(op, t, stamped)  # ends with the `}}` closing d and the frame
    name = (target or "").encode()
    return StreamMessage(
        b"%c%d%013d%013d%b" % (BROKER_FORMAT, op, stamped["ts"], stamped["expires_at"], stream),
        b"%02d%b" % (len(name), name),
        b'%b,"cursor":{"stream":"%b","epoch":"' % (body[:-2], STREAM_NAMES[stream].encode()),
    )


def complete(message: StreamMessage, epoch: str, offset: int) -> bytes:
    """The broker message of a stream's message, numbered `offset` in `epoch`."""
    head, name, body_head = message
    mark = epoch.encode()
    return b'%b%b%012d%b%b%b","offset":%d}}}' % (head, mark, offset, name, body_head, mark, offset)


def unkept(message: StreamMessage) -> bytes:
    """The broker message of a message to factories that no stream kept (the broker was
    unreachable): no epoch, no offset, and no `cursor` in its body."""
    head, name, body_head = message
    body = body_head[: body_head.rindex(b',"cursor":')] + b"}}"
    return b"%b%b%b%012d%b%b" % (head[:-1], NOT_KEPT, NO_EPOCH.encode(), 0, name, body)


def pack(dispatch: Dispatch) -> bytes:
    name = dispatch.name.encode()
    return b"%c%d%013d%013d%b%b%012d%02d%b%b" % (
        BROKER_FORMAT,
        dispatch.op,
        dispatch.ts_ms,
        dispatch.expires_at,
        dispatch.stream,
        dispatch.epoch.encode(),
        dispatch.offset,
        len(name),
        name,
        dispatch.body,
    )


def unpack(message: bytes) -> Dispatch:
    """Read a broker message; anything this release did not write is `BadMessageError`."""
    if len(message) < HEADER_BYTES + 2 or message[-1:] != b"}":
        raise BadMessageError("malformed", f"not a dispatch ({len(message)} bytes)")
    if message[0] != BROKER_FORMAT:
        raise BadMessageError("unknown_version", f"format version {message[0:1]!r}")
    op = _DISPATCH_OPS_BY_DIGIT.get(message[1])
    try:
        if op is None:
            raise ValueError("op")
        name_end = HEADER_BYTES + int(message[57:59])
        if len(message) < name_end + 2:
            raise ValueError("name")
        return Dispatch(
            op,
            int(message[2:15]),
            message[name_end:],
            message[HEADER_BYTES:name_end].decode(),
            message[28:29],
            message[29:45].decode(),
            int(message[45:57]),
            int(message[15:28]),
        )
    except (ValueError, UnicodeDecodeError):
        raise BadMessageError("malformed", f"bad header {message[:HEADER_BYTES]!r}") from None


def hello(heartbeat_interval_ms: int, session_id: str) -> bytes:
    data = {"heartbeat_interval": heartbeat_interval_ms, "session_id": session_id}
    return dumps({"op": Op.HELLO, "d": data})


def ready(session_id: str, user: dict[str, str], fields: dict[str, Any]) -> bytes:
    """READY is always the session's first dispatch: `s` 1. `fields` are the relay's
    additions for this user type (a factory's `cursors`, an observer's `factories`)."""
    return server_event("READY", 1, {"session_id": session_id, "user": user, **fields})


def server_event(name: str, sequence: int, data: dict[str, Any]) -> bytes:
    """An event of the server's own (READY, REFRESHED, DELIVERY_FAILED), numbered `s`."""
    return dumps({"op": Op.EVENT, "t": name, "s": sequence, "d": data})
