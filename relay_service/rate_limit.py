"""A token bucket per session: `RATE_LIMIT_PER_SECOND` frames, bursts up to `RATE_LIMIT_BURST`."""

from __future__ import annotations

import time


class TokenBucket:
    __slots__ = ("_capacity", "_rate", "_tokens", "_updated")

    def __init__(self, rate_per_second: float, burst: int) -> None:
        self._rate = rate_per_second
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._updated = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty."""
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
