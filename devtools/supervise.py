"""Run a few commands as one, for `make run`: Ctrl-C stops them all, cleanly.

    python -m devtools.supervise "auth=auth-service serve" "relay=relay-service"

Each child runs in a process group of its own, so a Ctrl-C in the terminal reaches only
the supervisor, which forwards it (or SIGTERM) once to each child's group, waits for each,
and exits 0. A child that has not stopped after `--stop-timeout` seconds is killed, and the
supervisor exits 1. If a child ends by itself, the supervisor stops the others and exits
1, naming it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFAULT_STOP_TIMEOUT_SECONDS = 20.0
"""Longer than the relay's drain (`SHUTDOWN_TIMEOUT_SECONDS`, 10 s by default)."""
POLL_SECONDS = 0.1


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    signalled: bool = False

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - the developer's own command line
            self.command, stdin=subprocess.DEVNULL, process_group=0
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """To the child's whole process group (a shell's own children too)."""
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)
            self.signalled = True


class Supervisor:
    def __init__(self, children: Sequence[Child], stop_timeout: float) -> None:
        self.children = list(children)
        self.stop_timeout = stop_timeout
        self.stop_signal: int | None = None

    def run(self) -> int:
        """Start every child; return the exit code once they have all ended."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._forward)
        for child in self.children:
            if self.stop_signal is not None:
                break
            child.start()
        if self.stop_signal is not None:  # asked to stop while a child was being started
            for child in self.children:
                if not child.signalled:
                    child.signal(self.stop_signal)
        failed = self._wait_for_a_stop()
        if failed is not None:
            report(f"{failed.name} {ending(failed)}; stopping the others")
            for child in self.children:
                child.signal(signal.SIGTERM)
        return 1 if self._wait_for_all() or failed is not None else 0

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        """Each SIGINT/SIGTERM goes to every child still running (a second one too)."""
        self.stop_signal = signum
        for child in self.children:
            child.signal(signum)

    def _wait_for_a_stop(self) -> Child | None:
        """Until a stop is asked for (None) or a child ends by itself (that child)."""
        while self.stop_signal is None:
            for child in self.children:
                if not child.running:
                    return None if self.stop_signal is not None else child
            time.sleep(POLL_SECONDS)
        return None

    def _wait_for_all(self) -> bool:
        """Wait for every child; kill those still running at the deadline (True if any)."""
        deadline = time.monotonic() + self.stop_timeout
        killed = False
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                seconds = f"{self.stop_timeout:g} s"
                report(f"{child.name} still running {seconds} after the signal: killed")
                child.signal(signal.SIGKILL)
                child.process.wait()
                killed = True
        return killed


def ending(child: Child) -> str:
    assert child.process is not None
    code = child.process.returncode
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with {code}"


def report(line: str) -> None:
    print(f"supervise: {line}", file=sys.stderr, flush=True)


def parse_child(argument: str) -> Child:
    name, separator, command = argument.partition("=")
    if not separator or not name or not command.strip():
        raise argparse.ArgumentTypeError(f"{argument!r} is not NAME=COMMAND")
    return Child(name, shlex.split(command))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.supervise",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "children", nargs="+", type=parse_child, metavar="NAME=COMMAND", help="a child to run"
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT_SECONDS,
        help="seconds each child has to stop before it is killed (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    names = [child.name for child in args.children]
    if len(set(names)) != len(names):
        parser.error("each child needs a name of its own")
    raise SystemExit(Supervisor(args.children, args.stop_timeout).run())


if __name__ == "__main__":
    main()
