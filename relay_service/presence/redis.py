"""The presence store in Redis, shared by every replica (layout: `relay_service.presence.keys`).

Each step on a factory is one Lua script on its hash, which also publishes the change on
the factory's observer channel (same hash tag, so one cluster slot): the change and its
announcement never come apart, and when every replica sweeps the same due factory only
the first script finds it pending. The bookkeeping under `{presence}` (index, pending,
replicas) is written beside it in a second call; the hash is the truth and each reader
checks it, so an index entry left stale by a failure costs a wasted check, never a wrong
announcement. Every call is bounded by the Redis timeout with `asyncio.timeout`; redis-py
reloads a script that a restarted Redis forgot (EVALSHA, then SCRIPT LOAD on NOSCRIPT).

On Redis Cluster each script's keys share one hash tag (one slot, so one node), the
`{presence}` bookkeeping too (its transaction is on one node). On NOSCRIPT (a promoted
replica does not have its old master's scripts) SCRIPT LOAD goes to every master.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from relay_service.presence.keys import ONLINE_SCORE, PresenceKeys, sessions_field
from relay_service.presence.store import Stored
from shared.redis_connect import RedisClient, script_sha1

LOAD_BATCH = 500
"""Factories read per round trip when loading the snapshot."""

# KEYS: hash. ARGV: sessions field, count, now, username, publish command, channel, message.
JOIN = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'username', ARGV[4])
redis.call('HDEL', KEYS[1], 'due')
redis.call('PERSIST', KEYS[1])
if redis.call('HGET', KEYS[1], 'online') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'online', '1', 'since', ARGV[3])
redis.call(ARGV[5], ARGV[6], ARGV[7])
return 1
"""

# KEYS: hash. ARGV: sessions field, due. Returns the due time while the grace runs, else 0.
LEAVE = """
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[1], 'online') ~= '1' then return 0 end
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(name, 1, 2) == 'r:' then return 0 end
end
local due = redis.call('HGET', KEYS[1], 'due')
if due then return tonumber(due) end
redis.call('HSET', KEYS[1], 'due', ARGV[2])
return tonumber(ARGV[2])
"""

# KEYS: hash. ARGV: due, retention seconds, publish command, channel, message.
# `due` is set only while online with no session anywhere (JOIN clears it).
SETTLE = """
if redis.call('HGET', KEYS[1], 'due') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'due')
redis.call('HSET', KEYS[1], 'online', '0', 'since', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call(ARGV[3], ARGV[4], ARGV[5])
return 1
"""

# KEYS: pending, index. ARGV: username, due, index score ('' to leave the index alone).
# Removes the pending entry only if nobody re-armed it with another due time meanwhile.
SETTLED = """
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""

# KEYS: hash. ARGV: username, status, ts, retention seconds.
STATUS = """
if tonumber(ARGV[3]) < tonumber(redis.call('HGET', KEYS[1], 'status_ts') or '0') then
  return 0
end
redis.call('HSET', KEYS[1], 'username', ARGV[1], 'status', ARGV[2], 'status_ts', ARGV[3])
if redis.call('HGET', KEYS[1], 'online') ~= '1' then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# The settings, written into the script's text (one script per configuration), so that a
# status sends only its key, its channel and itself.
_PUBLISH_STATUS_SETTINGS = """
local PUBLISH = '{publish_command}'
local RETENTION_SECONDS = {retention_seconds}
"""

# KEYS: hash. ARGV: channel, broker message (format 2, a status: its header holds `ts` at
# bytes 3-15 and the name's length at 58-59, then the name; its body is `"d":<its d>}`).
# Publishes it, and keeps its `d` as the factory's latest status unless a later one is
# kept already (as STATUS).
_PUBLISH_STATUS = """
local message = ARGV[2]
redis.call(PUBLISH, ARGV[1], message)
local ts = string.sub(message, 3, 15)
if tonumber(ts) < tonumber(redis.call('HGET', KEYS[1], 'status_ts') or '0') then return 0 end
local name_end = 59 + tonumber(string.sub(message, 58, 59))
redis.call('HSET', KEYS[1], 'username', string.sub(message, 60, name_end),
  'status', string.sub(message, name_end + 5, -2), 'status_ts', ts)
if redis.call('HGET', KEYS[1], 'online') ~= '1' then
  redis.call('EXPIRE', KEYS[1], RETENTION_SECONDS)
end
return 1
"""


def publish_status_script(*, publish_command: str, retention_seconds: int) -> str:
    settings = _PUBLISH_STATUS_SETTINGS.format(
        publish_command=publish_command, retention_seconds=retention_seconds
    )
    return settings + _PUBLISH_STATUS


# KEYS: replicas, the replica's factory set. ARGV: replica, its last heartbeat seen.
FORGET = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
end
return 0
"""


class RedisStore:
    def __init__(
        self,
        client: RedisClient,
        keys: PresenceKeys,
        *,
        channel_of: Callable[[str], str],
        timeout_seconds: float,
        retention_seconds: int,
        ttl_seconds: int,
        publish_command: str = "PUBLISH",
    ) -> None:
        self._client = client
        self._keys = keys
        self._channel_of = channel_of
        self._timeout = timeout_seconds
        self._retention = retention_seconds
        self._ttl_ms = ttl_seconds * 1000
        self._publish = publish_command
        self._ordered_pipelines = not isinstance(client, RedisCluster)
        """One server runs a pipeline in order on one connection; a cluster does not."""
        self._join = client.register_script(JOIN)
        self._leave = client.register_script(LEAVE)
        self._settle = client.register_script(SETTLE)
        self._settled = client.register_script(SETTLED)
        self._status = client.register_script(STATUS)
        self._forget = client.register_script(FORGET)

    async def join(
        self, replica: str, username: str, sessions: int, now_ms: int, announcement: bytes
    ) -> bool:
        """The replica's set first, so a replica that dies after this is cleaned up after,
        then the factory's script: one round trip on one Redis (the first session of every
        factory of a drained replica comes at once), two on a cluster (the set and the hash
        are on different slots). Retried whole if Redis forgot the script."""
        args = (
            sessions_field(replica),
            sessions,
            now_ms,
            username,
            self._publish,
            self._channel_of(username),
            announcement,
        )
        async with asyncio.timeout(self._timeout):
            try:
                return await self._join_once(replica, username, args)
            except NoScriptError:  # a restarted or emptied Redis forgot the script
                await self._client.script_load(JOIN)
                return await self._join_once(replica, username, args)

    async def _join_once(
        self, replica: str, username: str, args: tuple[str | int | bytes, ...]
    ) -> bool:
        keys = self._keys
        script = ("EVALSHA", self._join.sha, 1, keys.factory(username), *args)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.replica(replica), username)
            pipe.zadd(keys.index, {username: ONLINE_SCORE})
            if self._ordered_pipelines:
                pipe.execute_command(*script)
                *_, went_online = await pipe.execute()
                return bool(went_online)
            await pipe.execute()
        # A cluster pipeline runs each node's share at once: the script waits for the set.
        return bool(await self._client.execute_command(*script))

    async def leave(self, replica: str, username: str, due_ms: int) -> int:
        keys = self._keys
        async with asyncio.timeout(self._timeout):
            due = int(
                await self._leave(
                    keys=[keys.factory(username)], args=[sessions_field(replica), due_ms]
                )
            )
            # The replica's set last: until this, a replica that dies is cleaned up after.
            async with self._client.pipeline(transaction=True) as pipe:
                if due:
                    pipe.zadd(keys.pending, {username: due})
                pipe.srem(keys.replica(replica), username)
                await pipe.execute()
        return due

    async def settle(self, username: str, due_ms: int, announcement: bytes) -> bool:
        keys = self._keys
        async with asyncio.timeout(self._timeout):
            went_offline = bool(
                await self._settle(
                    keys=[keys.factory(username)],
                    args=[
                        due_ms,
                        self._retention,
                        self._publish,
                        self._channel_of(username),
                        announcement,
                    ],
                )
            )
            await self._settled(
                keys=[keys.pending, keys.index],
                args=[username, due_ms, due_ms if went_offline else ""],
            )
        return went_offline

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        async with asyncio.timeout(self._timeout):
            rows = await self._client.zrangebyscore(
                self._keys.pending, "-inf", now_ms, start=0, num=limit, withscores=True
            )
        return _scored(rows)

    async def save_statuses(self, statuses: list[tuple[str, bytes, int]]) -> None:
        """One pipeline (not a transaction: each status is its own factory's)."""
        async with asyncio.timeout(self._timeout):
            try:
                await self._save_statuses(statuses)
            except NoScriptError:  # a restarted or emptied Redis forgot the script
                await self._client.script_load(STATUS)
                await self._save_statuses(statuses)

    async def _save_statuses(self, statuses: list[tuple[str, bytes, int]]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for username, status, ts_ms in statuses:
                key = self._keys.factory(username)
                args = (username, status, ts_ms, self._retention)
                pipe.execute_command("EVALSHA", self._status.sha, 1, key, *args)
            await pipe.execute()

    async def heartbeat(self, replica: str, now_ms: int) -> bool:
        """Also in every shard's set of replicas, so a cluster master that lost its data
        alone (its shards' factories with it) is found like a Redis that lost all of it.
        A shard's set forgets replicas silent for the TTL: a dead one is not kept, a live
        one taken for dead writes its state again (as after `forget_replica`)."""
        shards = self._keys.shard_replicas
        async with asyncio.timeout(self._timeout):
            async with self._client.pipeline(transaction=False) as pipe:
                for shard in shards:
                    pipe.zremrangebyscore(shard, "-inf", f"({now_ms - self._ttl_ms}")
                pipe.zadd(self._keys.replicas, {replica: now_ms})
                for shard in shards:
                    pipe.zadd(shard, {replica: now_ms})
                replies = await pipe.execute()
        return any(replies[len(shards) :])  # any set that did not know the replica

    async def stale_replicas(self, before_ms: int, limit: int) -> list[tuple[str, int]]:
        async with asyncio.timeout(self._timeout):
            rows = await self._client.zrangebyscore(
                self._keys.replicas, "-inf", f"({before_ms}", start=0, num=limit, withscores=True
            )
        return _scored(rows)

    async def factories_of(self, replica: str) -> list[str]:
        async with asyncio.timeout(self._timeout):
            members = await self._client.smembers(self._keys.replica(replica))
        return sorted(_text(member) for member in members)

    async def forget_replica(self, replica: str, heartbeat_ms: int) -> None:
        keys = self._keys
        async with asyncio.timeout(self._timeout):
            await self._forget(
                keys=[keys.replicas, keys.replica(replica)], args=[replica, heartbeat_ms]
            )

    async def trim(self, before_ms: int) -> None:
        async with asyncio.timeout(self._timeout):
            await self._client.zremrangebyscore(self._keys.index, "-inf", f"({before_ms}")

    async def load(self, after_ms: int) -> list[Stored]:
        """Read in batches, each bounded by the timeout (a large index is many round trips)."""
        loaded: list[Stored] = []
        start = 0
        while True:
            async with asyncio.timeout(self._timeout):
                names = await self._client.zrangebyscore(
                    self._keys.index, after_ms, "+inf", start=start, num=LOAD_BATCH
                )
                if not names:
                    return loaded
                async with self._client.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hmget(
                            self._keys.factory(_text(name)),
                            ["username", "online", "since", "status", "status_ts"],
                        )
                    rows = await pipe.execute()
            loaded.extend(stored for row in rows if (stored := _stored(row)) is not None)
            start += len(names)


class StatusKeeper:
    """Publishes a factory's status and keeps it as its latest, in one script on the
    factory's hash (`PUBLISH_STATUS`: the hash and the observer channel share one cluster
    slot). The broker's publisher runs it in place of the PUBLISH: a status costs the relay
    no round trip of its own, and what is kept is what was published, in the same order."""

    def __init__(
        self,
        client: RedisClient,
        keys: PresenceKeys,
        *,
        publish_command: str,
        retention_seconds: int,
    ) -> None:
        self._client = client
        self._keys = keys
        self._script = publish_status_script(
            publish_command=publish_command, retention_seconds=retention_seconds
        )
        self._sha = script_sha1(self._script)

    def command(self, factory: str, channel: str, message: bytes) -> tuple[str | bytes | int, ...]:
        """The command that publishes `message` (a status of `factory`) on `channel` and
        keeps it (EVALSHA: a Redis that forgot the script answers NOSCRIPT; `load`)."""
        key = self._keys.factory(factory)
        return ("EVALSHA", self._sha, 1, key, channel, message)

    async def load(self) -> None:
        """Make sure Redis knows the script (on a cluster, every master); the caller bounds
        the call."""
        await self._client.script_load(self._script)


def _text(value: object) -> str:
    """A name as Redis returns it (bytes: the client does not decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _scored(rows: Any) -> list[tuple[str, int]]:
    """ZRANGEBYSCORE … WITHSCORES as (member, integer score)."""
    return [(_text(name), int(score)) for name, score in rows]


def _stored(row: list[bytes | None]) -> Stored | None:
    """A hash as loaded; None for one gone meanwhile (expired, or Redis emptied)."""
    username, online, since, status, status_ts = row
    if username is None or since is None:
        return None
    return Stored(username.decode(), online == b"1", int(since), status, int(status_ts or 0))
