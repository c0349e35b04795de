"""`make bench` runs every benchmark, or those named; it measures nothing in the test suite."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS, ON_REQUEST, chosen
from bench.relay import ROWS

ROOT = Path(__file__).resolve().parents[2]
QUICK_RUN_TIMEOUT_SECONDS = 600


def test_no_name_runs_every_benchmark() -> None:
    assert chosen([]) == list(BENCHMARKS)


def test_named_benchmarks_run_in_the_order_given() -> None:
    assert chosen(["relay", "tokens"]) == ["relay", "tokens"]


def test_an_unknown_benchmark_is_refused() -> None:
    with pytest.raises(SystemExit):
        chosen(["nothing"])


def test_a_benchmark_run_on_request_only_is_named_to_run() -> None:
    assert chosen(["instructions"]) == ["instructions"]
    assert "instructions" not in chosen([])


@pytest.mark.parametrize("name", BENCHMARKS + ON_REQUEST)
def test_every_benchmark_module_has_a_run(name: str) -> None:
    assert callable(importlib.import_module(f"bench.{name}").run)


def test_a_quick_run_of_the_relay_benchmarks_prints_the_machine_and_every_figure() -> None:
    """The smoke test of `make bench`'s relay scenarios (real relays, the lean floor and
    Redis, tiny sizes): each runs end to end. Its figures mean nothing and are not read."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "relay", "scale"],
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_TIMEOUT_SECONDS,
        cwd=ROOT,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("machine: ")
    for row in ROWS.values():
        assert row.name in result.stdout
    assert "hold: " in result.stdout
    assert "storm: " in result.stdout
