"""The simulated machine behind `factory-bridge`, and the command parsing all machines share."""

from __future__ import annotations

import pytest

from relay_client.bridge import CommandRejectedError, SimulatedMachine
from relay_client.bridge.machine import Action, Order, parse_command


async def test_a_new_machine_is_idle_and_still() -> None:
    status = await SimulatedMachine().status()
    assert status["state"] == "idle"
    assert status["spindle_rpm"] == 0
    assert set(status) == {"state", "spindle_rpm", "target_rpm", "temperature_c"}


async def test_start_runs_the_spindle_at_the_asked_speed() -> None:
    machine = SimulatedMachine()
    assert await machine.execute({"action": "start", "rpm": 3000}) == {
        "state": "running",
        "target_rpm": 3000,
    }
    assert (await machine.status())["target_rpm"] == 3000


async def test_stop_idles_the_machine() -> None:
    machine = SimulatedMachine()
    await machine.execute({"action": "start"})
    assert await machine.execute({"action": "stop"}) == {"state": "idle", "target_rpm": 0}


async def test_set_speed_changes_a_running_spindle() -> None:
    machine = SimulatedMachine()
    await machine.execute({"action": "start"})
    result = await machine.execute({"action": "set_speed", "rpm": 500})
    assert result == {"state": "running", "target_rpm": 500}


async def test_set_speed_needs_a_running_spindle() -> None:
    with pytest.raises(CommandRejectedError, match="not running"):
        await SimulatedMachine().execute({"action": "set_speed", "rpm": 100})


@pytest.mark.parametrize("rpm", [-1, 24_001, 1.5, "fast", True, None])
async def test_an_impossible_speed_is_rejected(rpm: object) -> None:
    with pytest.raises(CommandRejectedError, match="rpm"):
        await SimulatedMachine().execute({"action": "start", "rpm": rpm})


@pytest.mark.parametrize("command", [{"action": "explode"}, "start", 42, None, {}])
async def test_an_unknown_command_is_rejected(command: object) -> None:
    with pytest.raises(CommandRejectedError, match="unknown action"):
        await SimulatedMachine().execute(command)


@pytest.mark.parametrize(
    ("command", "order"),
    [
        ({"action": "start"}, Order(Action.START, "running", 1200)),
        ({"action": "start", "rpm": 0}, Order(Action.START, "running", 0)),
        ({"action": "stop", "rpm": 99}, Order(Action.STOP, "idle", 0)),
        ({"action": "set_speed", "rpm": 24_000}, Order(Action.SET_SPEED, "running", 24_000)),
    ],
)
def test_a_command_parses_to_the_state_and_speed_it_leaves(
    command: dict[str, object], order: Order
) -> None:
    assert parse_command(command) == order


def test_set_speed_without_a_speed_is_rejected() -> None:
    with pytest.raises(CommandRejectedError, match="rpm"):
        parse_command({"action": "set_speed"})
