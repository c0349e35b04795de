"""The relay's garbage collection: survivors frozen each step, a full collection after churn.

These run the collector in the test process itself; each test unfreezes what it froze.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from relay_service.collector import FULL_MIN_CLOSED, FULL_SHARE, Collector


class Node:
    """A cycle's member that can be watched through a weak reference."""

    def __init__(self) -> None:
        self.partner: Node | None = None


class Connections:
    def __init__(self, open_now: int) -> None:
        self.open = open_now
        self.closed = 0

    def collector(self) -> Collector:
        return Collector(lambda: self.open, lambda: self.closed)


@pytest.fixture(autouse=True)
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.collect()


def a_cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    return weakref.ref(first)


def test_a_step_moves_what_survived_out_of_the_collectors_reach() -> None:
    kept = Node()
    Connections(open_now=10).collector().step()

    assert not any(tracked is kept for tracked in gc.get_objects())
    assert gc.get_freeze_count() > 0


def test_a_frozen_dead_cycle_waits_while_few_connections_closed() -> None:
    connections = Connections(open_now=40_000)
    collector = connections.collector()
    watched = a_cycle()
    collector.step()
    connections.closed = FULL_MIN_CLOSED  # under a quarter of 40,000

    collector.step()
    gc.collect()

    assert watched() is not None


def test_a_frozen_dead_cycle_is_collected_once_a_quarter_of_the_open_ones_closed() -> None:
    connections = Connections(open_now=40_000)
    collector = connections.collector()
    watched = a_cycle()
    collector.step()
    connections.closed = 40_000 // FULL_SHARE

    collector.step()

    assert watched() is None
