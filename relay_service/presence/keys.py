"""Where presence lives in Redis.

A factory's presence is one hash beside its observer channel, under the `{obs:N}` hash tag
of its shard, so the script that changes it also publishes the change (one cluster slot).
The bookkeeping that spans factories lives under the `{presence}` tag:

- `P:relay:{obs:N}:presence:<username key>` (hash): `username`, `online` (`1`/`0`),
  `since`, `status` (the latest status's `d`, raw JSON), `status_ts`, `r:<replica>` (set
  while that replica has sessions of it), `due` (when its grace ends, while it runs);
  expires `PRESENCE_RETENTION_SECONDS` after it went offline.
- `P:relay:{presence}:index` (zset): every factory kept, scored `since` when offline and
  `ONLINE_SCORE` while online; trimmed past the retention.
- `P:relay:{presence}:pending` (zset): factories whose grace runs, scored their due time.
- `P:relay:{presence}:replicas` (zset): live replicas, scored their last heartbeat.
- `P:relay:{presence}:replica:<id>` (set): the factories that replica has sessions of.
- `P:relay:{obs:N}:presence-replicas` (zset, one per shard): live replicas, scored their
  last heartbeat, beside the shard's factories: on Redis Cluster one master can lose its
  data alone, and a replica missing from a shard's set finds it (see `RedisStore`).
"""

from __future__ import annotations

from dataclasses import dataclass

from relay_service.channels import SHARDS, shard_of
from shared.identity import username_key

ONLINE_SCORE = 2**53 - 1
"""A factory's score in the index while online: above any time, so never trimmed."""


@dataclass(frozen=True, slots=True)
class PresenceKeys:
    prefix: str

    def factory(self, username: str) -> str:
        return f"{self.prefix}:relay:{{obs:{shard_of(username)}}}:presence:{username_key(username)}"

    @property
    def index(self) -> str:
        return f"{self.prefix}:relay:{{presence}}:index"

    @property
    def pending(self) -> str:
        return f"{self.prefix}:relay:{{presence}}:pending"

    @property
    def replicas(self) -> str:
        return f"{self.prefix}:relay:{{presence}}:replicas"

    @property
    def shard_replicas(self) -> list[str]:
        return [f"{self.prefix}:relay:{{obs:{n}}}:presence-replicas" for n in range(SHARDS)]

    def replica(self, replica_id: str) -> str:
        return f"{self.prefix}:relay:{{presence}}:replica:{replica_id}"


def sessions_field(replica_id: str) -> str:
    """The hash field counting one replica's sessions of the factory."""
    return f"r:{replica_id}"
