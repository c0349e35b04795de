"""Run the benchmarks named on the command line (all by default) and print their figures."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from bench.machine import describe_machine

BENCHMARKS = ("tokens", "login", "relay", "drain", "streams", "presence", "pubsub")


def chosen(argv: Sequence[str] | None = None) -> list[str]:
    """The benchmarks named on the command line, in the order given; all when none is."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHMARKS))
    names: list[str] = parser.parse_args(argv).names
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return names or list(BENCHMARKS)


def main() -> None:
    names = chosen()
    print(describe_machine(), flush=True)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        for line in module.run():
            print(line, flush=True)


if __name__ == "__main__":
    main()
