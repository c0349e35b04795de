"""Identifies served at once, bounded (`MAX_CONCURRENT_IDENTIFIES`).

A reconnect storm (a replica's 1012 sends its sessions to the survivors) brings thousands
of Identifies in the same second. Each wakes the loop several times (the token, the
revocation lookup in Redis, joining, READY); thousands at once fill every turn of the
loop with their continuations, and the heartbeats of the sessions already here wait
behind them. Past the bound an Identify waits for a slot, in arrival order, until its
session's identify deadline; one still waiting then is refused with 4000 (retry), as an
Identify that Redis held up is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from relay_service import metrics
from shared.protocol import CloseCode, ProtocolError


class IdentifySlots:
    """The bound, and how many Identifies hold a slot or wait for one (plain integers,
    read by the gauges at each scrape: no gauge update on every Identify)."""

    def __init__(self, limit: int) -> None:
        self._free = asyncio.Semaphore(limit)
        self.in_flight = 0
        self.waiting = 0
        metrics.IDENTIFIES_IN_FLIGHT.set_function(lambda: self.in_flight)
        metrics.IDENTIFIES_WAITING.set_function(lambda: self.waiting)

    @asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        """Hold one of the slots, waiting for it until `deadline` (loop time) at most."""
        if self._free.locked():
            await self._wait(deadline)
        else:
            await self._free.acquire()  # free: taken at once
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._free.release()

    async def _wait(self, deadline: float) -> None:
        self.waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._free.acquire()
        except TimeoutError:
            raise ProtocolError(CloseCode.UNKNOWN_ERROR, "relay busy, retry") from None
        finally:
            self.waiting -= 1
