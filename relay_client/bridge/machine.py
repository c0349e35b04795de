"""What the bridge talks to: a `Machine` reads status and executes commands.

Every machine understands the same commands, parsed and checked in one place
(`parse_command`): `{"action": "start", "rpm"?: n}`, `{"action": "stop"}` and
`{"action": "set_speed", "rpm": n}` (0 to 24,000 rpm; `set_speed` needs a running spindle).

`SimulatedMachine` stands in for a PLC: a spindle that spins up toward its target speed
and a temperature that follows the load, with a little noise. `ModbusMachine`
(`relay_client.bridge.modbus`, needs the `modbus` extra) talks to a real one.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

MAX_RPM = 24_000
DEFAULT_RPM = 1_200
AMBIENT_C = 22.0
SPIN_UP_SECONDS = 2.0
HEAT_UP_SECONDS = 20.0

IDLE = "idle"
RUNNING = "running"


class CommandRejectedError(Exception):
    """The machine will not do this command; the message says why."""


class MachineUnavailableError(Exception):
    """The machine cannot be read right now (a PLC unreachable or in error); try later."""


class Machine(Protocol):
    async def status(self) -> dict[str, Any]:
        """The machine's current status, as a JSON object; raises MachineUnavailableError."""
        ...

    async def execute(self, command: Any) -> dict[str, Any]:
        """Do a command; returns its result, or raises CommandRejectedError."""
        ...


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    SET_SPEED = "set_speed"


@dataclass(frozen=True)
class Order:
    """A valid command: what it does, and the state and target speed it leaves."""

    action: Action
    state: str
    target_rpm: int

    @property
    def needs_running_spindle(self) -> bool:
        return self.action is Action.SET_SPEED

    def check_allowed(self, current_state: str) -> None:
        """Raise CommandRejectedError if the machine, in this state, may not do it."""
        if self.needs_running_spindle and current_state != RUNNING:
            raise CommandRejectedError("the spindle is not running")

    def result(self) -> dict[str, Any]:
        return {"state": self.state, "target_rpm": self.target_rpm}


def parse_command(command: Any) -> Order:
    """Check a command's shape and values; raises CommandRejectedError saying what is wrong."""
    action = command.get("action") if isinstance(command, dict) else None
    if action == Action.START:
        return Order(Action.START, RUNNING, _rpm(command.get("rpm", DEFAULT_RPM)))
    if action == Action.STOP:
        return Order(Action.STOP, IDLE, 0)
    if action == Action.SET_SPEED:
        return Order(Action.SET_SPEED, RUNNING, _rpm(command.get("rpm")))
    raise CommandRejectedError(f"unknown action {action!r}")


class SimulatedMachine:
    """A spindle in memory; see the module for its commands."""

    def __init__(self) -> None:
        self.state = IDLE
        self.target_rpm = 0
        self._rpm = 0.0
        self._temperature = AMBIENT_C
        self._updated = time.monotonic()

    async def status(self) -> dict[str, Any]:
        self._advance()
        return {
            "state": self.state,
            "spindle_rpm": round(self._rpm),
            "target_rpm": self.target_rpm,
            "temperature_c": round(self._temperature + random.gauss(0, 0.05), 2),
        }

    async def execute(self, command: Any) -> dict[str, Any]:
        order = parse_command(command)
        order.check_allowed(self.state)
        self.state, self.target_rpm = order.state, order.target_rpm
        return order.result()

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
