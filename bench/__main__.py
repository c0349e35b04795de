"""Run the benchmarks named on the command line (all by default) and print their figures.

`--quick` runs every scenario at a tiny size: a smoke test that each still runs end to end
(`tests/bench`), whose figures mean nothing."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from bench import sizes
from bench.machine import describe_machine

BENCHMARKS = ("tokens", "login", "relay", "scale", "drain", "streams", "presence", "pubsub")
ON_REQUEST = ("instructions",)
"""Run only when named: needs valgrind, and takes minutes."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHMARKS + ON_REQUEST))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    return parser


def chosen(argv: Sequence[str] | None = None) -> list[str]:
    """The benchmarks named on the command line, in the order given; all when none is."""
    parser = _parser()
    names: list[str] = parser.parse_args(argv).names
    unknown = sorted(set(names) - set(BENCHMARKS) - set(ON_REQUEST))
    if unknown:
        known = ", ".join(BENCHMARKS + ON_REQUEST)
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {known}")
    return names or list(BENCHMARKS)


def main(argv: Sequence[str] | None = None) -> None:
    names = chosen(argv)
    sizes.QUICK = _parser().parse_args(argv).quick
    print(describe_machine(), flush=True)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        for line in module.run():
            print(line, flush=True)


if __name__ == "__main__":
    main()
