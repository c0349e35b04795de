"""The relay's settings: the common ones plus the protocol's timings and limits."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator, model_validator

from shared.settings import CommaSeparated, CommonSettings, split_commas

PRE_IDENTIFY_MAX_BYTES = 16 * 1024
"""The largest frame a client may send before READY (a larger one closes with 1009)."""


class RelaySettings(CommonSettings):
    port: int = Field(default=8001, ge=1, le=65535)
    heartbeat_interval_ms: int = Field(default=30_000, ge=100, le=600_000)
    identify_timeout_ms: int = Field(default=10_000, ge=100, le=600_000)
    max_concurrent_identifies: int = Field(default=32, ge=1, le=100_000)
    """Identifies served at once; more wait for a slot (`relay_service.identifies`)."""
    max_message_bytes: int = Field(default=65_536, ge=256, le=16 * 1024 * 1024)
    rate_limit_per_second: float = Field(default=100, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    send_queue_limit: int = Field(default=1024, ge=1)
    send_queue_limit_bytes: int = Field(default=1_048_576, ge=1024)
    max_connections_per_address: int = Field(default=1024, ge=1)
    max_sessions_per_user: int = Field(default=64, ge=1)
    max_connections: int = Field(default=50_000, ge=1)
    forwarded_allow_ips: CommaSeparated = Field(default_factory=list)
    listen_backlog: int = Field(default=4096, ge=16, le=65535)
    shutdown_timeout_seconds: float = Field(default=10, gt=0, le=300)
    drain_rate_per_second: float = Field(default=1000, gt=0)
    broker_reconnect_max_seconds: float = Field(default=10, gt=0, le=300)
    broker_publish_queue_limit: int = Field(default=100_000, ge=1)
    redis_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """Bound on every Redis call (revocation lookup, publish, subscribe, health PING); the
    auth service reads the same setting."""
    broker_publish_queue_limit_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    command_ttl_ms: int = Field(default=30_000, ge=1)
    command_ttl_max_ms: int = Field(default=3_600_000, ge=1, le=30 * 86_400_000)
    command_history_size: int = Field(default=1000, ge=1, le=100_000)
    """Messages each command stream keeps for factories that resume."""
    broker_publish_max_age_ms: int = Field(default=5_000, ge=10, le=600_000)
    """A message still waiting for Redis this long is dropped, never published late."""
    presence_grace_ms: int = Field(default=5_000, ge=0, le=3_600_000)
    """A factory whose last session closed goes offline when none of its sessions
    identifies within this grace (a 1012 drain or a network blip announces nothing)."""
    presence_ttl_seconds: int = Field(default=30, ge=1, le=3600)
    """A replica that stops heartbeating its liveness in Redis this long is taken for dead:
    its factories go offline (after the grace)."""
    presence_retention_seconds: int = Field(default=604_800, ge=1, le=31_536_000)
    """How long an offline factory stays in READY's snapshot (and in Redis)."""

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies_are_networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            if proxy != "*":
                ipaddress.ip_network(proxy, strict=False)  # ValueError names the entry
        return proxies

    @model_validator(mode="after")
    def _ttl_within_max(self) -> RelaySettings:
        if self.command_ttl_ms > self.command_ttl_max_ms:
            raise ValueError("COMMAND_TTL_MS must not exceed COMMAND_TTL_MAX_MS")
        return self

    @property
    def trusted_proxies(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """`FORWARDED_ALLOW_IPS` as networks; `*` trusts every peer."""
        if "*" in self.forwarded_allow_ips:
            return [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
        return [ipaddress.ip_network(proxy, strict=False) for proxy in self.forwarded_allow_ips]

    @property
    def liveness_timeout_seconds(self) -> float:
        """No frame for 1.5 heartbeat intervals closes the session (4009)."""
        return 1.5 * self.heartbeat_interval_ms / 1000

    @property
    def pre_identify_max_bytes(self) -> int:
        return min(PRE_IDENTIFY_MAX_BYTES, self.max_message_bytes)
