"""Failed-login throttling: fixed windows per username and per client address.

One small interface (`FailureCounter`) with two implementations: in-process for a
single replica, Redis (INCR + EXPIRE under `REDIS_PREFIX`) shared by every replica.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

MEMORY_SWEEP_THRESHOLD = 10_000


class FailureCounter(Protocol):
    async def read(self, key: str) -> tuple[int, float]:
        """The failures counted under `key` and the seconds left in its window."""
        ...

    async def increment(self, key: str, window_seconds: int) -> None:
        """Count one failure; the first one opens a window of `window_seconds`."""
        ...


class MemoryFailureCounter:
    """Counters in this process, for a single replica."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}

    async def read(self, key: str) -> tuple[int, float]:
        count, ends = self._windows.get(key, (0, 0.0))
        left = ends - time.monotonic()
        return (count, left) if left > 0 else (0, 0.0)

    async def increment(self, key: str, window_seconds: int) -> None:
        now = time.monotonic()
        if len(self._windows) > MEMORY_SWEEP_THRESHOLD:
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        count, ends = self._windows.get(key, (0, 0.0))
        if ends <= now:
            count, ends = 0, now + window_seconds
        self._windows[key] = (count + 1, ends)


class RedisFailureCounter:
    """Counters in Redis, shared by every replica."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self._prefix}:login-failures:{key}"

    async def read(self, key: str) -> tuple[int, float]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._key(key))
            pipe.pttl(self._key(key))
            count, pttl = await pipe.execute()
        if count is None or pttl <= 0:
            return 0, 0.0
        return int(count), pttl / 1000

    async def increment(self, key: str, window_seconds: int) -> None:
        # SET NX EX opens the window with its expiry in one step, so a counter can never
        # be left without one; INCR then counts within it.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(key), 0, ex=window_seconds, nx=True)
            pipe.incr(self._key(key))
            await pipe.execute()


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    counter: FailureCounter
    max_per_username: int
    max_per_address: int
    window_seconds: int

    def _limits(self, username: str, address: str) -> list[tuple[str, int]]:
        # Usernames longer than 64 characters cannot exist; truncating bounds the key size.
        return [
            (f"username:{username.lower()[:64]}", self.max_per_username),
            (f"address:{address}", self.max_per_address),
        ]

    async def retry_after(self, username: str, address: str) -> int | None:
        """Seconds until a blocked login may be tried again, or None if it is not blocked."""
        waits = []
        for key, limit in self._limits(username, address):
            count, left = await self.counter.read(key)
            if count >= limit:
                waits.append(max(1, math.ceil(left)))
        return max(waits) if waits else None

    async def record_failure(self, username: str, address: str) -> None:
        for key, _limit in self._limits(username, address):
            await self.counter.increment(key, self.window_seconds)
