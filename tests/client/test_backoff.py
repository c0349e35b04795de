"""Exponential backoff with full jitter: about 1 s doubling to 60 s."""

from __future__ import annotations

from relay_client import Backoff


def test_each_delay_stays_under_a_ceiling_that_doubles_up_to_the_cap() -> None:
    backoff = Backoff(first=1.0, ceiling=60.0)
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    for ceiling in ceilings:
        assert 0 <= backoff.next_delay() <= ceiling


def test_delays_are_spread_not_synchronized() -> None:
    delays = {round(Backoff().next_delay(), 6) for _ in range(50)}
    assert len(delays) > 40


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(first=1.0, ceiling=60.0)
    for _ in range(8):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_at_once_waits_under_a_second_whatever_the_attempt() -> None:
    backoff = Backoff()
    for _ in range(10):
        backoff.next_delay()
    assert all(backoff.next_delay(at_once=True) < 1.0 for _ in range(20))
