"""The relay's settings: the common ones plus the protocol's timings and limits."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class RelaySettings(CommonSettings):
    port: int = Field(default=8001, ge=1, le=65535)
    heartbeat_interval_ms: int = Field(default=30_000, ge=100, le=600_000)
    identify_timeout_ms: int = Field(default=10_000, ge=100, le=600_000)
    max_message_bytes: int = Field(default=65_536, ge=256, le=16 * 1024 * 1024)
    rate_limit_per_second: float = Field(default=100, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    send_queue_limit: int = Field(default=1024, ge=1)
    shutdown_timeout_seconds: float = Field(default=10, gt=0, le=300)
    broker_reconnect_max_seconds: float = Field(default=10, gt=0, le=300)
    broker_publish_queue_limit: int = Field(default=100_000, ge=1)
    redis_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """Bound on every Redis call (revocation lookup, publish, subscribe, health PING); the
    auth service reads the same setting."""
    broker_publish_queue_limit_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    broker_publish_max_age_ms: int = Field(default=5_000, ge=10, le=600_000)
    """A message still waiting for Redis this long is dropped, never published late."""

    @property
    def liveness_timeout_seconds(self) -> float:
        """No frame for 1.5 heartbeat intervals closes the session (4009)."""
        return 1.5 * self.heartbeat_interval_ms / 1000
