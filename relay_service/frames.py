"""The wire format of everything the relay sends, and of its messages between replicas.

A relayed message is serialized once, where it enters the relay, as the dispatch's
`body`: the JSON object without its opening `{"op":N,"s":M,` — the one part that differs
per session. Every replica hands the same `body` to each of its listening sessions, which
prepend the op's prefix and their own `s` (`NUMBERED`), so fan-out is a concatenation per
socket, never a serialization.

Between replicas a message travels as `<version><op><ts><body>`: one byte of format
version (`BROKER_FORMAT`), the op digit, the server's stamp `ts` in 13 digits of
milliseconds, then `body`. A replica rejects a version it does not know (a replica of
another release during a rolling upgrade) instead of misreading it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from relay_service.broker.base import BadMessageError
from shared.protocol import DISPATCH_OPS, CloseCode, Op, ProtocolError, dumps

BROKER_FORMAT = ord("1")
"""The format version of broker messages this release writes and reads."""
HEADER_BYTES = 15
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

    @property
    def prefix(self) -> bytes:
        return PREFIXES[self.op]


def dispatch_body(op: Op, t: str | None, stamped: dict[str, Any]) -> bytes:
    """Serialize a stamped message once, as `body`; a value JSON cannot carry is 4002."""
    message: dict[str, Any] = {"t": t, "d": stamped} if op == Op.EVENT else {"d": stamped}
    try:
        return dumps(message)[1:]
    except TypeError as error:  # orjson: an integer beyond 64 bits, say
        raise ProtocolError(CloseCode.DECODE_ERROR, f"payload cannot be relayed: {error}") from None


def pack(dispatch: Dispatch) -> bytes:
    return b"%c%d%013d%b" % (BROKER_FORMAT, dispatch.op, dispatch.ts_ms, dispatch.body)


def unpack(message: bytes) -> Dispatch:
    """Read a broker message; anything this release did not write is `BadMessageError`."""
    if len(message) < HEADER_BYTES + 2 or message[-1:] != b"}":
        raise BadMessageError("malformed", f"not a dispatch ({len(message)} bytes)")
    if message[0] != BROKER_FORMAT:
        raise BadMessageError("unknown_version", f"format version {message[0:1]!r}")
    op, ts_digits = _DISPATCH_OPS_BY_DIGIT.get(message[1]), message[2:HEADER_BYTES]
    if op is None or not ts_digits.isdigit():
        raise BadMessageError("malformed", f"bad header {message[:HEADER_BYTES]!r}")
    return Dispatch(op, int(ts_digits), message[HEADER_BYTES:])


def hello(heartbeat_interval_ms: int, session_id: str) -> bytes:
    data = {"heartbeat_interval": heartbeat_interval_ms, "session_id": session_id}
    return dumps({"op": Op.HELLO, "d": data})


def ready(session_id: str, user: dict[str, str]) -> bytes:
    """READY is always the session's first dispatch: `s` 1."""
    return server_event("READY", 1, {"session_id": session_id, "user": user})


def server_event(name: str, sequence: int, data: dict[str, Any]) -> bytes:
    """An event of the server's own (READY, REFRESHED, DELIVERY_FAILED), numbered `s`."""
    return dumps({"op": Op.EVENT, "t": name, "s": sequence, "d": data})
