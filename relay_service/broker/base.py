"""The broker contract (after encode/broadcaster): connect, subscribe, publish, one listener.

A broker carries each published message once to every replica subscribed to its channel,
this one included. Delivery is at most once: a message published while the broker is
unreachable, that does not fit its publish queue, that waited too long in it, or whose
publish failed, is dropped and counted (`relay_broker_dropped_messages_total{reason}`),
never delivered late. Its publisher may ask to hear of the drop (`on_dropped`), to tell
the sender.

Messages to factories are appended to a command stream (`relay_service.streams`) which
numbers them and keeps them, and publishes them on the stream's channel, in one step
(`append`); `read_streams` reads the kept ones back for a resume. After every reconnect,
once subscribed again and before any further message is handled, the listener awaits
`on_resubscribed` (set by the relay): there the relay fills its sessions' gap from the
streams, so a message missed while disconnected arrives before anything newer.

The handler is registered once, at construction. It is synchronous and called from the
broker's own listener (never from the publisher's call stack), once per message, in the
order of the channel. It must not raise: a message it cannot use it rejects with
`BadMessageError`; whatever it raises is caught here, counted
(`relay_broker_bad_messages_total{reason}`) and logged, and the listener goes on with the
next message.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from relay_service import metrics
from shared.logging import get_logger

if TYPE_CHECKING:
    from relay_service.channels import StreamKeys
    from relay_service.frames import StreamMessage
    from relay_service.streams import Kept

log = get_logger(__name__)

MessageHandler = Callable[[str, bytes], None]
"""Called with `(channel, message)` for every message on a subscribed channel, in order."""

DropCallback = Callable[[str], None]
"""Called once with the reason when a published message is dropped instead of published:
`queue_full`, `too_old`, `publish_failed` or `unreachable`. Called from `publish` itself
or from the broker's publisher task; it must not raise (what it raises is logged)."""

BAD_MESSAGE_LOG_SECONDS = 10.0
"""At most one log line per reason and channel this often: a replica of another version
during a rolling upgrade must not flood the log with one line per message."""


class BadMessageError(Exception):
    """A message its handler cannot use (malformed, or of an unknown format version)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Broker(ABC):
    def __init__(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        self._bad_logged_at: dict[tuple[str, str], float] = {}
        self.on_resubscribed: Callable[[], Awaitable[None]] | None = None

    @abstractmethod
    async def connect(self) -> None:
        """Start the listener (and publisher); returns at once, connecting in the background."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Stop the listener and publisher; messages still queued are dropped."""

    @abstractmethod
    async def subscribe(self, channel: str, *, control: bool = False) -> None:
        """Hear `channel`: when this returns (the broker confirmed, or after a bounded wait
        while it is unreachable), every message published to it afterwards is handled.
        While disconnected, the subscription is remembered and made on reconnect.

        `control`: a channel others publish to with plain PUBLISH (the auth service's
        revocation events), never a shard channel on Redis Cluster."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop hearing `channel` (remembered across reconnects too)."""

    @abstractmethod
    def publish(self, channel: str, message: bytes, on_dropped: DropCallback | None = None) -> None:
        """Queue `message` for every replica; never blocks, keeps the caller's order.

        A message that cannot be published (see the module's docstring) is dropped and
        counted, and `on_dropped` is called once with the reason."""

    keeps_statuses = False
    """Whether `publish_status` also keeps each status as its factory's latest (SPEC 5.1)."""

    def publish_status(
        self, channel: str, message: bytes, factory: str, on_dropped: DropCallback | None = None
    ) -> None:
        """Queue `factory`'s status like `publish`; a broker that `keeps_statuses` also keeps
        it as the factory's latest, in the same step as the publish."""
        self.publish(channel, message, on_dropped)

    @abstractmethod
    def append(
        self, keys: StreamKeys, message: StreamMessage, on_dropped: DropCallback | None = None
    ) -> None:
        """Queue `message` for its stream: numbered, kept and published at once, in the
        caller's order with its other publishes; dropped like `publish`'s."""

    @abstractmethod
    async def read_streams(self, reads: Sequence[tuple[StreamKeys, int]]) -> list[Kept]:
        """Each stream's position and its kept messages after the given offset (`NO_READ`:
        the position only); raises when the broker cannot answer within its timeout."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """Whether messages published now reach the other replicas."""

    def _hand_over(self, channel: str, message: bytes) -> None:
        """Give one message to the handler; nothing it raises reaches the listener."""
        try:
            self._on_message(channel, message)
        except BadMessageError as rejected:
            self._count_bad(channel, rejected.reason, str(rejected))
        except Exception as error:
            self._count_bad(channel, "handler_error", repr(error))

    def _count_bad(self, channel: str, reason: str, detail: str) -> None:
        metrics.BROKER_BAD_MESSAGES.labels(reason=reason).inc()
        now = time.monotonic()
        key = (channel, reason)
        if now - self._bad_logged_at.get(key, -BAD_MESSAGE_LOG_SECONDS) >= BAD_MESSAGE_LOG_SECONDS:
            self._bad_logged_at[key] = now
            log.error("broker_message_skipped", channel=channel, reason=reason, error=detail)
