"""What a session needs of the relay that serves it, so `session.py` depends on this small
contract rather than on `Relay` (which implements it, `relay_service.relay`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from relay_service.broker.base import DropCallback
from relay_service.channels import Channels
from relay_service.config import RelaySettings
from shared.tokens import TokenClaims

if TYPE_CHECKING:
    from relay_service.session import Session


class SessionHost(Protocol):
    """What a session needs of the relay that serves it."""

    settings: RelaySettings
    channels: Channels

    async def authenticate(self, token: str) -> TokenClaims:
        """The token's claims, or `ProtocolError` 4004."""

    async def join(self, session: Session, claims: TokenClaims) -> None:
        """Make the session a listener of its audiences, subscribed when this returns."""

    async def leave(self, session: Session, claims: TokenClaims) -> None: ...

    def publish(
        self, channel: str, message: bytes, on_dropped: DropCallback | None = None
    ) -> None: ...
