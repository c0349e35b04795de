"""Who may send what, and to which channel it goes: the delivery table in one place.

| sent | by              | goes to                                                         |
|------|-----------------|-----------------------------------------------------------------|
| op 4 | operator, admin | every factory (stream `all`), or `target` (its stream `own`)    |
| op 5 | factory         | every admin, operator and viewer                                |
| op 6 | factory         | every admin, operator and viewer (no `target`, no `ttl_ms`)     |
| op 6 | operator, admin | every factory (stream `all`), or `target` (its stream `own`)    |

Anything else closes the session: 4010 for an op (or a reserved event name) the user type
may not send, 4002 for a `d` of the wrong shape. Pure: no I/O, no state.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay_service.channels import Stream
from shared.identity import UserType
from shared.protocol import (
    ClientFrame,
    CloseCode,
    Op,
    ProtocolError,
    StatusData,
    TargetedData,
    event_name,
    parse_data,
)


@dataclass(frozen=True, slots=True)
class Route:
    op: Op
    data: StatusData | TargetedData
    stream: Stream | None = None
    """The factories' stream that keeps the message; None for messages to observers."""

    @property
    def target(self) -> str | None:
        return getattr(self.data, "target", None)

    @property
    def ttl_ms(self) -> int | None:
        return getattr(self.data, "ttl_ms", None)


def route(frame: ClientFrame, user_type: UserType, *, ttl_max_ms: int) -> Route:
    """Where a dispatch frame (op 4, 5 or 6) from this user type goes: to observers, or to
    factories through stream `all` (no target) or `own` (the target's)."""
    op = Op(frame.op)
    if op == Op.STATUS:
        if user_type is not UserType.FACTORY:
            raise ProtocolError(CloseCode.NOT_AUTHORIZED, "only factories send statuses")
        return Route(op, parse_data(StatusData, frame.d))
    if op == Op.COMMAND and not user_type.is_controller:
        raise ProtocolError(CloseCode.NOT_AUTHORIZED, "only operators and admins send commands")
    if op == Op.EVENT:
        if user_type is UserType.VIEWER:
            raise ProtocolError(CloseCode.NOT_AUTHORIZED, "viewers do not send events")
        event_name(frame)
    data = parse_data(TargetedData, frame.d)
    if user_type is UserType.FACTORY:
        if data.target is not None or data.ttl_ms is not None:
            raise ProtocolError(
                CloseCode.DECODE_ERROR,
                "a factory's events go to every observer (no target, no ttl_ms)",
            )
        return Route(op, data)
    if data.ttl_ms is not None and data.ttl_ms > ttl_max_ms:
        raise ProtocolError(CloseCode.DECODE_ERROR, f"ttl_ms above the maximum {ttl_max_ms}")
    return Route(op, data, Stream.ALL if data.target is None else Stream.OWN)
