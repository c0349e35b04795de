"""Broker channel names: one per audience, so a replica only hears what it has sockets for.

Channel names live under the `REDIS_PREFIX` setting:
`<prefix>:relay:factories` (every factory), `<prefix>:relay:factory:<username key>`
(one factory's sessions), `<prefix>:relay:observers` (admins, operators, viewers), and the
auth service's `<prefix>:revocations` (see `shared.revocation`). What travels on them is
`relay_service.frames`' business.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.identity import UserType, username_key
from shared.revocation import revocation_channel


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
        return f"{self.prefix}:relay:factory:{username_key(username)}"

    def audience_of(self, user_type: UserType, username: str) -> tuple[str, ...]:
        """The channels a session of this user listens to."""
        if user_type is UserType.FACTORY:
            return (self.factories, self.factory(username))
        return (self.observers,)
