"""The login throttle: fixed-window counters, taken before a password is checked.

Every login attempt first *takes* one from each of its failure counters, atomically (one
Redis round trip, a Lua script): if any counter of the attempt is already at its limit
nothing is counted and the attempt is refused (429) without looking at the password.
A successful login gives its failure counts back and counts a success. So N parallel
guesses get at most the limit's evaluations, and only attempts that were evaluated (or
were bad input) count.

Failures are counted three ways (SPEC: guessing is stopped without letting anyone lock
a user out):

- per (username, client address): the strict limit;
- per client address across usernames: password spraying from one address;
- per username across addresses: a much higher limit, so a user logging in from an
  address that has not failed is not refused because someone else failed elsewhere.

Successes are counted per username and per client address (a generous bound on how fast
anyone can mint tokens). One interface (`CounterStore`), two implementations: in-process
for a single replica, Redis shared by every replica.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.identity import username_key
from shared.redis_connect import RedisClient

MEMORY_SWEEP_THRESHOLD = 10_000
"""In-process counters kept before expired ones are swept out."""
KEY_USERNAME_LENGTH = 64
"""Usernames longer than this cannot exist; truncating bounds the key size."""


@dataclass(frozen=True, slots=True)
class Counter:
    """One fixed window: at most `limit` events per `window_seconds` under `key`."""

    key: str
    limit: int
    window_seconds: int


class CounterStore(Protocol):
    async def take(self, counted: Sequence[Counter], checked: Sequence[Counter]) -> float | None:
        """If every counter is below its limit, add one to each of `counted` and return
        None; otherwise count nothing and return the seconds until the blocking window ends.
        Atomic: concurrent calls never both pass a counter's last unit."""
        ...

    async def settle(self, given_back: Sequence[Counter], added: Sequence[Counter]) -> None:
        """Subtract one from each of `given_back` that still exists; add one to `added`."""
        ...


class MemoryCounterStore:
    """Counters in this process, for a single replica (no await between check and count)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}

    def _current(self, key: str, now: float) -> tuple[int, float]:
        count, ends = self._windows.get(key, (0, 0.0))
        return (count, ends) if ends > now else (0, 0.0)

    def _add(self, counter: Counter, now: float, amount: int) -> None:
        count, ends = self._current(counter.key, now)
        if ends == 0.0:
            if amount < 0:
                return
            ends = now + counter.window_seconds
        self._windows[counter.key] = (max(0, count + amount), ends)

    def _sweep(self, now: float) -> None:
        if len(self._windows) > MEMORY_SWEEP_THRESHOLD:
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}

    async def take(self, counted: Sequence[Counter], checked: Sequence[Counter]) -> float | None:
        now = time.monotonic()
        self._sweep(now)
        waits = [
            ends - now
            for counter in (*counted, *checked)
            for count, ends in [self._current(counter.key, now)]
            if count >= counter.limit
        ]
        if waits:
            return max(waits)
        for counter in counted:
            self._add(counter, now, 1)
        return None

    async def settle(self, given_back: Sequence[Counter], added: Sequence[Counter]) -> None:
        now = time.monotonic()
        for counter in given_back:
            self._add(counter, now, -1)
        for counter in added:
            self._add(counter, now, 1)


# KEYS: the counted keys, then the checked ones. ARGV: the number counted, then per key
# its limit and window in milliseconds. Returns 0 (taken) or the blocking window's PTTL.
_TAKE = """
local counted = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[2 * i]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      ttl = tonumber(ARGV[2 * i + 1])
      redis.call('PEXPIRE', key, ttl)
    end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for i = 1, counted do
  if redis.call('INCR', KEYS[i]) == 1 or redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i + 1])
  end
end
return 0
"""

# KEYS: the keys given back, then the keys added. ARGV: the number given back, then the
# window in milliseconds of each added key.
_SETTLE = """
local given_back = tonumber(ARGV[1])
for i = 1, given_back do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count > 0 then redis.call('DECR', KEYS[i]) end
end
for i = given_back + 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 or redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[i - given_back + 1])
  end
end
return 0
"""


def _ms(seconds: int) -> int:
    return seconds * 1000


class RedisCounterStore:
    """Counters in Redis under `<prefix>:{login}:…`, shared by every replica."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self._prefix = prefix
        self._take = redis.register_script(_TAKE)
        self._settle = redis.register_script(_SETTLE)

    def key(self, key: str) -> str:
        """Every counter under one hash tag (`{login}`): a script touches one cluster slot."""
        return f"{self._prefix}:{{login}}:{key}"

    async def take(self, counted: Sequence[Counter], checked: Sequence[Counter]) -> float | None:
        counters = (*counted, *checked)
        args: list[int] = [len(counted)]
        for counter in counters:
            args += [counter.limit, _ms(counter.window_seconds)]
        wait_ms = await self._take(keys=[self.key(c.key) for c in counters], args=args)
        return None if int(wait_ms) == 0 else int(wait_ms) / 1000

    async def settle(self, given_back: Sequence[Counter], added: Sequence[Counter]) -> None:
        keys = [self.key(c.key) for c in (*given_back, *added)]
        args = [len(given_back), *(_ms(c.window_seconds) for c in added)]
        await self._settle(keys=keys, args=args)


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """The thresholds and windows, from the `LOGIN_*` settings."""

    failures_per_username_and_address: int
    failures_per_address: int
    failures_per_username: int
    failure_window_seconds: int
    successes_per_username: int
    successes_per_address: int
    success_window_seconds: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt that passed the throttle; settle it with `succeeded()` or not at all."""

    failures: tuple[Counter, ...]
    successes: tuple[Counter, ...]


class LoginThrottledError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    store: CounterStore
    limits: ThrottleLimits

    def _counters(self, username: str, address: str) -> Attempt:
        name = username_key(username[:KEY_USERNAME_LENGTH])
        limits = self.limits
        failures = limits.failure_window_seconds
        successes = limits.success_window_seconds
        return Attempt(
            failures=(
                Counter(
                    f"fail:pair:{name}|{address}",
                    limits.failures_per_username_and_address,
                    failures,
                ),
                Counter(f"fail:address:{address}", limits.failures_per_address, failures),
                Counter(f"fail:username:{name}", limits.failures_per_username, failures),
            ),
            successes=(
                Counter(f"ok:username:{name}", limits.successes_per_username, successes),
                Counter(f"ok:address:{address}", limits.successes_per_address, successes),
            ),
        )

    async def attempt(self, username: str, address: str) -> Attempt:
        """Count this attempt as a failure up front; `LoginThrottledError` at a limit."""
        attempt = self._counters(username, address)
        wait = await self.store.take(attempt.failures, attempt.successes)
        if wait is not None:
            raise LoginThrottledError(max(1, math.ceil(wait)))
        return attempt

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt was no failure, and it was one success."""
        await self.store.settle(attempt.failures, attempt.successes)
