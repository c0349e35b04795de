"""A client's message as the relay passes it on: stamped once, serialized once.

The relay stamps every relayed message with `id` (the sender's or a new one), `from` (the
sender as its token names it) and `ts`; a message to factories also gets `expires_at`
(`ts` + `ttl_ms`, or `COMMAND_TTL_MS`) and, from its stream, a `cursor`.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from relay_service import frames
from relay_service.channels import Stream
from relay_service.frames import STREAM_BYTES, Dispatch, StreamMessage
from relay_service.routing import Route
from shared.clock import now_ms


class ToObservers(NamedTuple):
    message_id: str
    dispatch: Dispatch


class ToFactories(NamedTuple):
    message_id: str
    stream: Stream
    target: str | None
    message: StreamMessage


def stamp(
    routed: Route, t: str | None, sender: dict[str, str], *, default_ttl_ms: int
) -> ToObservers | ToFactories:
    """The message `routed` from `sender` (its `from` stamp), ready to publish."""
    ts_ms = now_ms()
    message_id = routed.data.id or uuid.uuid4().hex
    stamped = {
        "id": message_id,
        "from": sender,
        "target": routed.target,
        "payload": routed.data.payload,
        "ts": ts_ms,
    }
    if routed.stream is None:
        body = frames.dispatch_body(routed.op, t, stamped)
        return ToObservers(message_id, Dispatch(routed.op, ts_ms, body, sender["username"]))
    stamped["expires_at"] = ts_ms + (routed.ttl_ms or default_ttl_ms)
    stream_byte = STREAM_BYTES[routed.stream]
    message = frames.stream_message(routed.op, t, stamped, stream=stream_byte, target=routed.target)
    return ToFactories(message_id, routed.stream, routed.target, message)
