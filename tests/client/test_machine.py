"""The simulated machine behind `factory-bridge`."""

from __future__ import annotations

import pytest

from relay_client.bridge import CommandRejectedError, SimulatedMachine


def test_a_new_machine_is_idle_and_still() -> None:
    status = SimulatedMachine().status()
    assert status["state"] == "idle"
    assert status["spindle_rpm"] == 0
    assert set(status) == {"state", "spindle_rpm", "target_rpm", "temperature_c"}


def test_start_runs_the_spindle_at_the_asked_speed() -> None:
    machine = SimulatedMachine()
    assert machine.execute({"action": "start", "rpm": 3000}) == {
        "state": "running",
        "target_rpm": 3000,
    }
    assert machine.status()["target_rpm"] == 3000


def test_stop_idles_the_machine() -> None:
    machine = SimulatedMachine()
    machine.execute({"action": "start"})
    assert machine.execute({"action": "stop"}) == {"state": "idle", "target_rpm": 0}


def test_set_speed_needs_a_running_spindle() -> None:
    with pytest.raises(CommandRejectedError, match="not running"):
        SimulatedMachine().execute({"action": "set_speed", "rpm": 100})


@pytest.mark.parametrize("rpm", [-1, 24_001, 1.5, "fast", True, None])
def test_an_impossible_speed_is_rejected(rpm: object) -> None:
    with pytest.raises(CommandRejectedError, match="rpm"):
        SimulatedMachine().execute({"action": "start", "rpm": rpm})


@pytest.mark.parametrize("command", [{"action": "explode"}, "start", 42, None, {}])
def test_an_unknown_command_is_rejected(command: object) -> None:
    with pytest.raises(CommandRejectedError, match="unknown action"):
        SimulatedMachine().execute(command)
