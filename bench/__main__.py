"""Run the benchmarks named on the command line (all by default) and print their figures."""

from __future__ import annotations

import argparse
import importlib

from bench.machine import describe_machine

BENCHMARKS = ("tokens", "login", "relay")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=list(BENCHMARKS))
    names = parser.parse_args().names or list(BENCHMARKS)
    print(describe_machine(), flush=True)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        for line in module.run():
            print(line, flush=True)


if __name__ == "__main__":
    main()
