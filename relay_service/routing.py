"""Who may send what, and to which channel it goes: the delivery table in one place.

| sent | by                 | goes to                                        |
|------|--------------------|------------------------------------------------|
| op 4 | operator, admin    | every factory, or the factory named in `target` |
| op 5 | factory            | every admin, operator and viewer               |
| op 6 | factory            | every admin, operator and viewer (no `target`) |
| op 6 | operator, admin    | every factory, or the factory named in `target` |

Anything else closes the session: 4010 for an op (or a reserved event name) the user type
may not send, 4002 for a `d` of the wrong shape. Pure: no I/O, no state.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay_service.channels import Channels
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
    channel: str
    data: StatusData | TargetedData

    @property
    def target(self) -> str | None:
        return getattr(self.data, "target", None)


def route(frame: ClientFrame, user_type: UserType, channels: Channels) -> Route:
    """The channel a dispatch frame (op 4, 5 or 6) from this user type is published on."""
    op = Op(frame.op)
    if op == Op.STATUS:
        if user_type is not UserType.FACTORY:
            raise ProtocolError(CloseCode.NOT_AUTHORIZED, "only factories send statuses")
        return Route(op, channels.observers, parse_data(StatusData, frame.d))
    if op == Op.COMMAND and not user_type.is_controller:
        raise ProtocolError(CloseCode.NOT_AUTHORIZED, "only operators and admins send commands")
    if op == Op.EVENT:
        if user_type is UserType.VIEWER:
            raise ProtocolError(CloseCode.NOT_AUTHORIZED, "viewers do not send events")
        event_name(frame)
    data = parse_data(TargetedData, frame.d)
    if user_type is UserType.FACTORY:
        if data.target is not None:
            raise ProtocolError(CloseCode.DECODE_ERROR, "a factory's events go to every observer")
        return Route(op, channels.observers, data)
    if data.target is None:
        return Route(op, channels.factories, data)
    return Route(op, channels.factory(data.target), data)
