"""Broker channels: one per audience, so a replica only receives what it has sockets for.

Channel names live under the `REDIS_PREFIX` setting:
`<prefix>:relay:factories` (every factory), `<prefix>:relay:factory:<username, lower case>`
(one factory's sessions), `<prefix>:relay:observers` (admins, operators, viewers), and the
auth service's `<prefix>:revocations` (see `shared.revocation`).

A message on an audience channel is `<op digit><ts, 13 digits of ms><body>`, where `body`
is the serialized dispatch without its opening `{"op":N,"s":M,` — each session prepends
that, so the message is serialized once per replica, however many sockets receive it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.identity import UserType
from shared.revocation import revocation_channel

HEADER_BYTES = 14


@dataclass(frozen=True, slots=True)
class Channels:
    prefix: str

    @property
    def factories(self) -> str:
        return f"{self.prefix}:relay:factories"

    @property
    def observers(self) -> str:
        return f"{self.prefix}:relay:observers"

    @property
    def revocations(self) -> str:
        return revocation_channel(self.prefix)

    def factory(self, username: str) -> str:
        return f"{self.prefix}:relay:factory:{username.lower()}"

    def audience_of(self, user_type: UserType, username: str) -> tuple[str, ...]:
        """The channels a session of this user listens to."""
        if user_type is UserType.FACTORY:
            return (self.factories, self.factory(username))
        return (self.observers,)


def pack(op: int, ts_ms: int, body: bytes) -> bytes:
    return b"%d%013d%b" % (op, ts_ms, body)


def unpack(message: bytes) -> tuple[int, int, bytes]:
    """`(op, ts_ms, body)` of an audience channel's message."""
    return message[0] - 48, int(message[1:HEADER_BYTES]), message[HEADER_BYTES:]
