"""What the bridge talks to: a `Machine` reads status and executes commands.

`SimulatedMachine` stands in for a PLC: a spindle that spins up toward its target speed
and a temperature that follows the load, with a little noise.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, Protocol

MAX_RPM = 24_000
DEFAULT_RPM = 1_200
AMBIENT_C = 22.0
SPIN_UP_SECONDS = 2.0
HEAT_UP_SECONDS = 20.0


class CommandRejectedError(Exception):
    """The machine will not do this command; the message says why."""


class Machine(Protocol):
    def status(self) -> dict[str, Any]:
        """The machine's current status, as a JSON object."""
        ...

    def execute(self, command: Any) -> dict[str, Any]:
        """Do a command; returns its result, or raises CommandRejectedError."""
        ...


class SimulatedMachine:
    """Commands: `{"action": "start", "rpm"?: n}`, `{"action": "stop"}`,
    `{"action": "set_speed", "rpm": n}` (0 to 24,000)."""

    def __init__(self) -> None:
        self.state = "idle"
        self.target_rpm = 0
        self._rpm = 0.0
        self._temperature = AMBIENT_C
        self._updated = time.monotonic()

    def status(self) -> dict[str, Any]:
        self._advance()
        return {
            "state": self.state,
            "spindle_rpm": round(self._rpm),
            "target_rpm": self.target_rpm,
            "temperature_c": round(self._temperature + random.gauss(0, 0.05), 2),
        }

    def execute(self, command: Any) -> dict[str, Any]:
        action = command.get("action") if isinstance(command, dict) else None
        if action == "start":
            self.state = "running"
            self.target_rpm = _rpm(command.get("rpm", DEFAULT_RPM))
        elif action == "stop":
            self.state = "idle"
            self.target_rpm = 0
        elif action == "set_speed":
            if self.state != "running":
                raise CommandRejectedError("the spindle is not running")
            self.target_rpm = _rpm(command.get("rpm"))
        else:
            raise CommandRejectedError(f"unknown action {action!r}")
        return {"state": self.state, "target_rpm": self.target_rpm}

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._updated = now - self._updated, now
        self._rpm = _approach(self._rpm, self.target_rpm, elapsed, SPIN_UP_SECONDS)
        heat_target = AMBIENT_C + self._rpm / 400
        self._temperature = _approach(self._temperature, heat_target, elapsed, HEAT_UP_SECONDS)


def _rpm(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RPM:
        raise CommandRejectedError(f"rpm must be an integer from 0 to {MAX_RPM}")
    return value


def _approach(current: float, target: float, elapsed: float, time_constant: float) -> float:
    return target + (current - target) * math.exp(-elapsed / time_constant)
