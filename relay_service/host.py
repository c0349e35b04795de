"""What a session needs of the relay that serves it, so `session.py` depends on this small
contract rather than on `Relay` (which implements it, `relay_service.relay`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from relay_service.broker.base import DropCallback
from relay_service.channels import Stream
from relay_service.config import RelaySettings
from relay_service.frames import Dispatch, StreamMessage
from shared.protocol import ResumeData
from shared.tokens import TokenClaims

if TYPE_CHECKING:
    from relay_service.session import Session


@dataclass(frozen=True, slots=True)
class Welcome:
    """What a session sends right after it identified."""

    fields: dict[str, Any] = field(default_factory=dict)
    """READY's fields for this user type (a factory's `cursors` and `resumed`, an
    observer's `factories`)."""
    replay: Sequence[Dispatch] = ()
    """A resume's messages, in each stream's order, to send right after READY."""
    cursors: Mapping[bytes, tuple[str, int]] = field(default_factory=dict)
    """Per stream: the last message the session has (its resume cursor, or the head)."""
    log: dict[str, Any] = field(default_factory=dict)
    """What the session's `session_identified` log line should say."""


class SessionHost(Protocol):
    """What a session needs of the relay that serves it."""

    settings: RelaySettings

    def identify_slot(self, deadline: float) -> AbstractAsyncContextManager[None]:
        """One of the Identifies served at once, waited for until `deadline` (loop time)
        at most, then `ProtocolError` 4000."""

    async def authenticate(self, token: str) -> TokenClaims:
        """The token's claims, or `ProtocolError` 4004."""

    async def join(self, session: Session, claims: TokenClaims) -> None:
        """Make the session a listener of its audiences."""

    async def welcome(self, claims: TokenClaims, resume: ResumeData | None) -> Welcome:
        """READY's fields and a resume's replay, read once the session listens."""

    async def leave(self, session: Session, claims: TokenClaims) -> None: ...

    def publish_to_observers(self, dispatch: Dispatch, on_dropped: DropCallback) -> None:
        """A factory's status or event, to every admin, operator and viewer."""

    def publish_to_factories(
        self, stream: Stream, target: str | None, message: StreamMessage, on_dropped: DropCallback
    ) -> None:
        """An operator's command or event, kept in its stream for factories that resume."""
