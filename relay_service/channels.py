"""Broker channel and key names: a fixed set of channels, every replica hearing all of them.

Every replica subscribes to every audience channel once, at start: an Identify costs no
SUBSCRIBE, and a reconnect or a failover re-subscribes a fixed list. Messages for one
factory, and one factory's statuses, travel on one of `SHARDS` channels chosen by its name,
so on Redis Cluster the load spreads over the masters; each replica filters what it hears
by the name in the message's header (`relay_service.frames`).

Names live under the `REDIS_PREFIX` setting. The part in braces is Redis Cluster's hash
tag: a stream's keys and the channel its messages are published on share one slot, so one
Lua script appends to the history and publishes atomically.

| channel / key                        | what                                               |
|--------------------------------------|----------------------------------------------------|
| `<p>:relay:{fall}`                   | messages to every factory (stream `all`)           |
| `<p>:relay:{fall}:log` / `:meta`     | stream `all`: kept messages / epoch and head        |
| `<p>:relay:{fown:N}`                 | messages to one factory of shard N (stream `own`)  |
| `<p>:relay:{fown:N}:log:<k>` / `:meta:<k>` | stream `own` of factory `<k>`                |
| `<p>:relay:{obs:N}`                  | statuses, factories' events and presence of shard N |
| `<p>:revocations`                    | the auth service's revocation events               |

`<k>` is the username's case-insensitive key (`shared.identity.username_key`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import StrEnum

from shared.identity import username_key
from shared.revocation import revocation_channel

SHARDS = 16
"""Channels per audience that is split by factory. Part of the deployment's wire format:
every replica of a deployment must use the same number."""


class Stream(StrEnum):
    """A factory's two command streams (SPEC 5.2)."""

    ALL = "all"
    OWN = "own"


def shard_of(username: str) -> int:
    return zlib.crc32(username_key(username).encode()) % SHARDS


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The Redis keys of one stream and the channel its messages are published on."""

    log: str
    meta: str
    channel: str


@dataclass(frozen=True, slots=True)
class Channels:
    prefix: str

    @property
    def factories(self) -> str:
        return f"{self.prefix}:relay:{{fall}}"

    def factory_shard(self, username: str) -> str:
        return f"{self.prefix}:relay:{{fown:{shard_of(username)}}}"

    def observer_shard(self, username: str) -> str:
        return f"{self.prefix}:relay:{{obs:{shard_of(username)}}}"

    @property
    def revocations(self) -> str:
        return revocation_channel(self.prefix)

    @property
    def audiences(self) -> tuple[str, ...]:
        """Every audience channel: each replica hears all of them."""
        return (
            self.factories,
            *(f"{self.prefix}:relay:{{fown:{n}}}" for n in range(SHARDS)),
            *(f"{self.prefix}:relay:{{obs:{n}}}" for n in range(SHARDS)),
        )

    def stream(self, stream: Stream, factory: str | None = None) -> StreamKeys:
        """The keys of stream `all`, or of stream `own` of `factory`."""
        if stream is Stream.ALL:
            channel = self.factories
            return StreamKeys(f"{channel}:log", f"{channel}:meta", channel)
        assert factory is not None
        channel, key = self.factory_shard(factory), username_key(factory)
        return StreamKeys(f"{channel}:log:{key}", f"{channel}:meta:{key}", channel)
