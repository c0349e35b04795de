"""The embedded default: one replica, messages handed straight to its own sessions."""

from __future__ import annotations

from relay_service.broker.base import Broker, MessageHandler


class MemoryBroker(Broker):
    def __init__(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        self._channels: set[str] = set()

    async def connect(self) -> None:
        return None

    async def disconnect(self) -> None:
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    def publish(self, channel: str, message: bytes) -> None:
        if channel in self._channels:
            self._on_message(channel, message)

    @property
    def ready(self) -> bool:
        return True
