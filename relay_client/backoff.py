"""Exponential backoff with full jitter: about 1 s doubling to 60 s (SPEC section 1).

Full jitter (a uniform draw below the current ceiling) spreads the reconnects of many
clients dropped at once, so a restart of many replicas is not a reconnect storm.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first: float = 1.0, ceiling: float = 60.0) -> None:
        self._first = first
        self._ceiling = ceiling
        self._attempt = 0

    def next_delay(self, *, at_once: bool = False) -> float:
        """The wait before the next attempt; each call doubles the ceiling up to the cap.

        `at_once` (a replica shutting down, 1012) waits under a second: the load balancer
        has other replicas, and the jitter still spreads the clients it drops.
        """
        if at_once:
            return random.uniform(0, 1)  # noqa: S311 — jitter, not cryptography
        ceiling = min(self._ceiling, self._first * 2**self._attempt)
        self._attempt += 1
        return random.uniform(0, ceiling)  # noqa: S311 — jitter, not cryptography

    def reset(self) -> None:
        """After a session that reached READY, start again from the first delay."""
        self._attempt = 0
