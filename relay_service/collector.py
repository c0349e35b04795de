"""The garbage collector, kept off the sessions' objects.

CPython's full collection walks every object it tracks: about 55 per idle session, a
million at 20,000 sessions, over a second of one core during which the loop answers
nothing (`python -m bench scale`). CPython runs one whenever the objects that survived
its young collections since the last one reach a quarter of the old ones: with 20,000
sessions, every 25 to 60 s, because each heartbeat leaves a few objects (websockets'
receiving coroutines and their future) that live until the session's next frame.

So every `FREEZE_EVERY_SECONDS` the relay moves what survived out of the collector's
reach (`gc.freeze()`, a list splice): CPython's own collections, young and full, then
walk only what appeared since. A frozen object freed by its reference count is freed as
any other; only a cycle that was alive at a freeze and died since (a closed session's
connection and its task) waits for a full collection. The relay runs that one itself
(unfreeze, collect, freeze) once the connections closed since the last one reach a
quarter of those open (CPython's ratio, counted in sessions) and `FULL_MIN_CLOSED`, and
at least every `FULL_EVERY_SECONDS` for cycles of anything else: the pause a full
collection costs comes with churn, not with every heartbeat.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

from shared.logging import get_logger

log = get_logger(__name__)

FREEZE_EVERY_SECONDS = 1.0
FULL_SHARE = 4
"""A full collection once the connections closed since the last one reach 1/4 of those open."""
FULL_MIN_CLOSED = 1_000
"""… and at least this many (their cycles: about 10 MiB): a small replica does not walk
everything for every few closes."""
FULL_EVERY_SECONDS = 3_600.0


class Collector:
    """`open_connections()` and `closed_connections()` (a running total) say how much
    garbage the frozen objects may hold."""

    def __init__(
        self, open_connections: Callable[[], int], closed_connections: Callable[[], int]
    ) -> None:
        self._open = open_connections
        self._closed = closed_connections
        self._closed_at_full = closed_connections()
        self._full_at = time.monotonic()

    def full_collection_due(self) -> bool:
        closed = self._closed() - self._closed_at_full
        if closed >= max(FULL_MIN_CLOSED, self._open() // FULL_SHARE):
            return True
        return time.monotonic() - self._full_at >= FULL_EVERY_SECONDS

    def step(self) -> None:
        """Freeze what survived so far, after a full collection when one is due."""
        if self.full_collection_due():
            self.collect_all()
        gc.freeze()

    def collect_all(self) -> None:
        started = time.perf_counter()
        self._closed_at_full = self._closed()
        self._full_at = time.monotonic()
        gc.unfreeze()
        collected = gc.collect()
        log.info(
            "gc_full_collection",
            collected=collected,
            seconds=round(time.perf_counter() - started, 3),
        )

    async def run(self) -> None:
        """Step every `FREEZE_EVERY_SECONDS`, from now until cancelled."""
        while True:
            await asyncio.sleep(FREEZE_EVERY_SECONDS)
            self.step()


def freeze_start_up_objects() -> None:
    """Move what start-up made (modules, classes, settings: objects that live as long as
    the process) out of the collector's reach."""
    gc.collect()
    gc.freeze()
