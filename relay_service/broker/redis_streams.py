"""The command streams in Redis: one Lua script appends and publishes, another reads.

A stream is a sorted set of broker messages scored by offset (`<stream>:log`) and a hash
(`<stream>:meta`: `epoch`, `head`, `lost_upto`, `lost_until`), both under the hash tag of
the channel its messages are published on (`relay_service.channels`), so each script
touches one Redis Cluster slot. Appending and publishing happen in one script: a message
is never kept without being published, nor published without being kept.

Bounds: each log keeps `COMMAND_HISTORY_SIZE` messages and expires `COMMAND_TTL_MAX_MS`
after its last append (every message in it has expired by then); the meta hash, which
holds the epoch, expires after `META_RETENTION_SECONDS` without use. When the meta is gone
(Redis emptied, or it expired) the next use makes a new epoch and drops any log left.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import NoScriptError

from relay_service.channels import StreamKeys
from relay_service.frames import StreamMessage
from relay_service.streams import Kept
from shared.redis_connect import RedisClient, script_sha1

META_RETENTION_SECONDS = 7 * 86_400
# The settings are written into the scripts' text (each configuration has scripts, and
# SHA1s, of its own), so that an append carries only what differs per message: every
# argument costs the publisher an encoding step in redis-py.
_SETTINGS = """
local META_TTL_MS = {meta_ttl_ms}
local HISTORY_SIZE = {history_size}
local LOG_TTL_MS = {log_ttl_ms}
local PUBLISH = '{publish_command}'
"""

# Shared by both scripts: make the epoch on first use from Redis's clock (a stream's next
# epoch is always another), dropping a log that outlived its meta (its offsets belong to a
# lost epoch), and keep the meta alive.
_OPEN = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  local now = redis.call('TIME')
  local epoch = string.format('%08x%08x', tonumber(now[1]), tonumber(now[2]))
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'head', 0, 'lost_upto', 0, 'lost_until', 0)
  redis.call('DEL', KEYS[1])
end
redis.call('PEXPIRE', KEYS[2], META_TTL_MS)
"""

_APPEND = """-- KEYS: log, meta. ARGV: channel, head, then the name and the body up to the epoch.
local epoch = redis.call('HGET', KEYS[2], 'epoch')
local offset = redis.call('HINCRBY', KEYS[2], 'head', 1)
local message = ARGV[2] .. epoch .. string.format('%012d', offset) .. ARGV[3]
  .. epoch .. '","offset":' .. offset .. '}}}'
redis.call('ZADD', KEYS[1], offset, message)
local excess = redis.call('ZCARD', KEYS[1]) - HISTORY_SIZE
if excess > 0 then
  local lost_until = tonumber(redis.call('HGET', KEYS[2], 'lost_until'))
  local trimmed = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
  for _, old in ipairs(trimmed) do
    lost_until = math.max(lost_until, tonumber(string.sub(old, 16, 28)))
  end
  redis.call('HSET', KEYS[2], 'lost_upto', tonumber(string.sub(trimmed[#trimmed], 46, 57)),
    'lost_until', string.format('%d', lost_until))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
end
redis.call('PEXPIRE', KEYS[1], LOG_TTL_MS)
redis.call(PUBLISH, ARGV[1], message)
return offset
"""

_READ = """-- KEYS: log, meta. ARGV: after (-1: position only).
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'head', 'lost_upto', 'lost_until')
local kept = {}
if tonumber(ARGV[1]) >= 0 then
  kept = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, HISTORY_SIZE)
end
return {meta[1], meta[2], meta[3], meta[4], kept}
"""


def scripts(*, history_size: int, log_ttl_ms: int, publish_command: str) -> tuple[str, str]:
    """The append and read scripts for these settings."""
    settings = _SETTINGS.format(
        meta_ttl_ms=META_RETENTION_SECONDS * 1000,
        history_size=history_size,
        log_ttl_ms=log_ttl_ms,
        publish_command=publish_command,
    )
    return settings + _OPEN + _APPEND, settings + _OPEN + _READ


class RedisStreams:
    """Both scripts run by their SHA1 (`EVALSHA`, sent as a raw command: a cluster pipeline
    refuses redis-py's `evalsha` method but routes the command by its keys' slot)."""

    def __init__(
        self, client: RedisClient, *, history_size: int, log_ttl_ms: int, publish_command: str
    ) -> None:
        self._client = client
        self._scripts = scripts(
            history_size=history_size, log_ttl_ms=log_ttl_ms, publish_command=publish_command
        )
        self._append_sha, self._read_sha = map(script_sha1, self._scripts)

    async def load(self) -> None:
        """Make sure Redis knows both scripts (after a connect, or a NOSCRIPT answer); on a
        cluster, every master."""
        for script in self._scripts:
            await self._client.script_load(script)

    def append_command(
        self, keys: StreamKeys, message: StreamMessage
    ) -> tuple[str | bytes | int, ...]:
        """The append script's command, for the publisher (EVALSHA: a Redis that lost its
        scripts answers NOSCRIPT, and the publisher loads them and runs it again)."""
        head, name, body_head = message
        return (
            "EVALSHA",
            self._append_sha,
            2,
            keys.log,
            keys.meta,
            keys.channel,
            head,
            name + body_head,
        )

    async def read(self, reads: Sequence[tuple[StreamKeys, int]]) -> list[Kept]:
        """Each stream's position and its messages after `after`, in one round trip (two
        when Redis lost the scripts). The caller bounds the call with its timeout."""
        try:
            replies = await self._read(reads)
        except NoScriptError:
            await self.load()
            replies = await self._read(reads)
        return [_kept(reply) for reply in replies]

    async def _read(self, reads: Sequence[tuple[StreamKeys, int]]) -> list[list[object]]:
        async with self._client.pipeline(transaction=False) as pipe:
            for keys, after in reads:
                pipe.execute_command("EVALSHA", self._read_sha, 2, keys.log, keys.meta, after)
            replies: list[list[object]] = await pipe.execute()
        return replies


def _kept(reply: list[object]) -> Kept:
    epoch, head, lost_upto, lost_until, messages = reply
    assert isinstance(epoch, bytes)
    assert isinstance(messages, list)
    return Kept(
        epoch.decode(),
        int(head),  # type: ignore[call-overload]
        int(lost_upto),  # type: ignore[call-overload]
        int(lost_until),  # type: ignore[call-overload]
        messages,
    )
