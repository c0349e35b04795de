"""Revocation as both services see it in Redis.

The auth service's database is the truth; with `REDIS_URL` set it also writes these
keys so that relays refuse revoked tokens at Identify, and publishes an event so that
relays close live sessions at once.

Keys, under the `REDIS_PREFIX` setting (default `factory-relay`), each expiring when the
tokens it concerns would have expired anyway:

- `<prefix>:revoked:token:<jti>` — value `1`; set by `POST /auth/logout`.
- `<prefix>:revoked:user:<user id>` — value: the cutoff, seconds since the epoch (a
  whole second, written as a float); every token of that user with `iat` before it is
  revoked (password, type or `disabled` changed, or the user deleted).

Channel `<prefix>:revocations` carries one JSON object per revocation:
`{"user_id": "<id>", "token_id": "<jti>" | null, "revoked_before": <float> | null}` —
a `token_id` closes the sessions opened with that token, a `revoked_before` closes the
user's sessions whose token was issued before it.

Exact to the token with whole-second `iat`: a change at time t gets the cutoff
`floor(t) + 1`, the next whole second, and is committed only once the clock has reached
it (`wait_for_cutoff`, under a second). So every token minted before the change, even in
the same second, has `iat` < cutoff and is revoked, and every token minted with the new
password, type or state (which needs the commit) has `iat` ≥ cutoff and is accepted.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass

import orjson
from redis.asyncio.cluster import RedisCluster

from shared.redis_connect import RedisClient
from shared.tokens import TokenClaims

WAKE_MARGIN_SECONDS = 0.005
"""Added to the wait for the cutoff: an event loop may wake a timer a tick early."""


def revoked_token_key(prefix: str, token_id: str) -> str:
    return f"{prefix}:revoked:token:{token_id}"


def revoked_user_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:revoked:user:{user_id}"


def revocation_channel(prefix: str) -> str:
    return f"{prefix}:revocations"


def issued_before(claims: TokenClaims, cutoff: float | None) -> bool:
    """Whether a user's revocation with this cutoff covers the token: the one rule."""
    return cutoff is not None and claims.issued_at < cutoff


def revocation_cutoff(now: float) -> int:
    """The cutoff of a change made at `now`: the next whole second (see the module docstring)."""
    return math.floor(now) + 1


async def wait_for_cutoff(cutoff: float) -> None:
    """Return once the clock has reached `cutoff`; commit the change after this."""
    delay = cutoff - time.time()
    if delay > 0:
        await asyncio.sleep(delay + WAKE_MARGIN_SECONDS)


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    user_id: str
    token_id: str | None = None
    revoked_before: float | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> RevocationEvent:
        fields = orjson.loads(data)
        return cls(
            user_id=str(fields["user_id"]),
            token_id=fields.get("token_id"),
            revoked_before=fields.get("revoked_before"),
        )

    def revokes(self, claims: TokenClaims) -> bool:
        if claims.user_id != self.user_id:
            return False
        if self.token_id is not None and claims.token_id == self.token_id:
            return True
        return issued_before(claims, self.revoked_before)


class RedisRevocations:
    """Writes (auth service) and reads (relay) the revocation keys and channel."""

    def __init__(self, redis: RedisClient, *, prefix: str, token_ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._channel = revocation_channel(prefix)
        self._token_ttl_seconds = token_ttl_seconds

    async def revoke_token(self, claims: TokenClaims) -> None:
        """The key, then the event (a relay that hears the event finds the key)."""
        ttl = max(1, math.ceil(claims.expires_at - time.time()))
        event = RevocationEvent(user_id=claims.user_id, token_id=claims.token_id)
        await self._redis.set(revoked_token_key(self._prefix, claims.token_id), 1, ex=ttl)
        await self._redis.publish(self._channel, event.to_json())

    async def revoke_user(self, user_id: str, revoked_before: float) -> None:
        event = RevocationEvent(user_id=user_id, revoked_before=revoked_before)
        await self._redis.set(
            revoked_user_key(self._prefix, user_id),
            repr(revoked_before),
            ex=self._token_ttl_seconds,
        )
        await self._redis.publish(self._channel, event.to_json())

    async def is_revoked(self, claims: TokenClaims) -> bool:
        token_key = revoked_token_key(self._prefix, claims.token_id)
        user_key = revoked_user_key(self._prefix, claims.user_id)
        if isinstance(self._redis, RedisCluster):
            # The keys are in different slots, which one MGET cannot span: a pipeline of two
            # GETs asks each node its own.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(token_key)
                pipe.get(user_key)
                token_flag, user_cutoff = await pipe.execute()
        else:  # one command: a pipeline object costs more than the lookup itself
            token_flag, user_cutoff = await self._redis.mget(token_key, user_key)
        if token_flag is not None:
            return True
        return issued_before(claims, None if user_cutoff is None else float(user_cutoff))


# -- Restoring the relays' copy from the auth service's database -----------------------
#
# `<prefix>:revocations:restored` marks a Redis that holds the copy; its absence (a Redis
# restarted without data, FLUSHALL, a failover to an empty replica) tells the auth
# service to write every revocation still in force again. It expires after a token
# lifetime, so the copy is also rewritten once per token lifetime whatever happened.

RESTORE_BATCH = 500
"""Keys written per round trip when restoring."""

# KEYS: user keys. ARGV: per key its cutoff and its lifetime in seconds. A cutoff only
# ever moves forward: a restore from an older snapshot never undoes a newer revocation.
_RESTORE_USERS = """
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if not current or tonumber(current) < tonumber(ARGV[2 * i - 1]) then
    redis.call('SET', key, ARGV[2 * i - 1], 'EX', ARGV[2 * i])
  end
end
return #KEYS
"""


def restored_marker_key(prefix: str) -> str:
    return f"{prefix}:revocations:restored"


@dataclass(frozen=True, slots=True)
class UserCutoff:
    """Every token of `user_id` issued before `revoked_before` is revoked, for `ttl_seconds`."""

    user_id: str
    revoked_before: float
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class TokenRevocation:
    token_id: str
    ttl_seconds: int


class RevocationCopy:
    """The auth service's side of the relays' copy: restoring it and noticing its loss."""

    def __init__(self, redis: RedisClient, *, prefix: str, marker_ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._channel = revocation_channel(prefix)
        self._marker_ttl_seconds = marker_ttl_seconds
        self._restore_users = redis.register_script(_RESTORE_USERS)

    async def is_missing(self, last_write: UserCutoff | TokenRevocation | None) -> bool:
        """The marker is gone, or Redis lost the last revocation written (a lagging
        failover keeps the marker but loses the latest writes)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(restored_marker_key(self._prefix))
            if isinstance(last_write, UserCutoff):
                pipe.get(revoked_user_key(self._prefix, last_write.user_id))
            elif isinstance(last_write, TokenRevocation):
                pipe.get(revoked_token_key(self._prefix, last_write.token_id))
            replies = await pipe.execute()
        if not replies[0]:
            return True
        if last_write is None:
            return False
        stored = replies[1]
        if stored is None:
            return True
        return isinstance(last_write, UserCutoff) and float(stored) < last_write.revoked_before

    async def restore(self, users: list[UserCutoff], tokens: list[TokenRevocation]) -> None:
        """Write every revocation given (idempotent), then the marker."""
        # A cluster runs a script on one slot's keys: one user per call there.
        batch_size = 1 if isinstance(self._redis, RedisCluster) else RESTORE_BATCH
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            args: list[str | int] = []
            for cutoff in batch:
                args += [repr(cutoff.revoked_before), cutoff.ttl_seconds]
            keys = [revoked_user_key(self._prefix, cutoff.user_id) for cutoff in batch]
            await self._restore_users(keys=keys, args=args)
        for start in range(0, len(tokens), RESTORE_BATCH):
            async with self._redis.pipeline(transaction=False) as pipe:
                for token in tokens[start : start + RESTORE_BATCH]:
                    pipe.set(
                        revoked_token_key(self._prefix, token.token_id), 1, ex=token.ttl_seconds
                    )
                await pipe.execute()
        marker = restored_marker_key(self._prefix)
        await self._redis.set(marker, repr(time.time()), ex=self._marker_ttl_seconds)

    async def publish(self, events: list[RevocationEvent]) -> None:
        """Tell live relays about revocations they missed (their events could not be sent)."""
        if not events:
            return
        if isinstance(self._redis, RedisCluster):  # a cluster pipeline refuses PUBLISH
            for event in events:
                await self._redis.publish(self._channel, event.to_json())
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(self._channel, event.to_json())
            await pipe.execute()
