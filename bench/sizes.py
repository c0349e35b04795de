"""How big the benchmarks run: full size for figures, `--quick` for a smoke test that only
shows every scenario still runs end to end (its figures mean nothing)."""

from __future__ import annotations

QUICK = False


def size(full: int, quick: int) -> int:
    return quick if QUICK else full


def seconds(full: float, quick: float) -> float:
    return quick if QUICK else full
