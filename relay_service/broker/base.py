"""The broker contract (after encode/broadcaster): connect, subscribe, publish, one listener."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

MessageHandler = Callable[[str, bytes], None]
"""Called with `(channel, message)` for every message on a subscribed channel, in order."""


class Broker(ABC):
    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def disconnect(self) -> None: ...

    @abstractmethod
    async def subscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    @abstractmethod
    def publish(self, channel: str, message: bytes) -> None:
        """Queue `message` for every replica; never blocks, keeps the caller's order."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """Whether messages published now reach the other replicas."""
