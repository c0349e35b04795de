"""Brokers carry each message once to every replica: in process (one replica) or Redis pub/sub."""

from __future__ import annotations

from relay_service.broker.base import Broker, DropCallback, MessageHandler
from relay_service.config import RelaySettings
from shared.redis_connect import RedisClient


def broker_for(
    settings: RelaySettings, client: RedisClient | None, on_message: MessageHandler
) -> Broker:
    """The Redis broker when there is a Redis client, else the in-process one."""
    if client is None:
        from relay_service.broker.memory import MemoryBroker

        return MemoryBroker(
            on_message,
            history_size=settings.command_history_size,
            history_idle_seconds=settings.command_ttl_max_ms / 1000,
        )
    from relay_service.broker.links import publish_command
    from relay_service.broker.redis import RedisBroker
    from relay_service.presence.keys import PresenceKeys
    from relay_service.presence.redis import StatusKeeper

    statuses = StatusKeeper(
        client,
        PresenceKeys(settings.redis_prefix),
        publish_command=publish_command(client),
        retention_seconds=settings.presence_retention_seconds,
    )
    return RedisBroker(
        client,
        on_message,
        reconnect_max_seconds=settings.broker_reconnect_max_seconds,
        timeout_seconds=settings.redis_timeout_seconds,
        publish_queue_limit=settings.broker_publish_queue_limit,
        publish_queue_limit_bytes=settings.broker_publish_queue_limit_bytes,
        publish_max_age_seconds=settings.broker_publish_max_age_ms / 1000,
        history_size=settings.command_history_size,
        history_ttl_ms=settings.command_ttl_max_ms,
        statuses=statuses,
    )


__all__ = ["Broker", "DropCallback", "MessageHandler", "broker_for"]
