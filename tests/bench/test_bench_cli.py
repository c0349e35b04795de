"""`make bench` runs every benchmark, or those named; it measures nothing in the test suite."""

from __future__ import annotations

import importlib

import pytest

from bench.__main__ import BENCHMARKS, chosen


def test_no_name_runs_every_benchmark() -> None:
    assert chosen([]) == list(BENCHMARKS)


def test_named_benchmarks_run_in_the_order_given() -> None:
    assert chosen(["relay", "tokens"]) == ["relay", "tokens"]


def test_an_unknown_benchmark_is_refused() -> None:
    with pytest.raises(SystemExit):
        chosen(["nothing"])


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_module_has_a_run(name: str) -> None:
    assert callable(importlib.import_module(f"bench.{name}").run)
