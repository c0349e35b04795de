"""`ModbusMachine` against pymodbus's own Modbus TCP server, in this process, on a free port.

The PLC is a pymodbus `SimDevice` (device id 3, not the default, so the id must travel):
two holding registers and two input registers. Tests seed and read them back through the
server's datastore, never through the client under test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from relay_client import Message, RelayClient
from relay_client.bridge import Bridge, CommandRejectedError, MachineUnavailableError
from relay_client.bridge.modbus import ModbusMachine
from shared.identity import UserType
from tests.client.conftest import PASSWORD, WAIT, Stack, next_message
from tests.processes import ServiceProcess, console_script, free_port, run_to_exit

DEVICE_ID = 3
READ_HOLDING, READ_INPUT = 3, 4  # Modbus function codes, which name the datastore's tables
TIMEOUT = 0.5  # the machine's per-request timeout: a local server answers in microseconds


class Plc:
    """A running pymodbus server; its registers are the datastore's, read directly."""

    def __init__(self, server: ModbusTcpServer, port: int) -> None:
        self.server, self.port = server, port

    async def holding(self) -> list[int]:
        return await self._get(READ_HOLDING)

    async def inputs(self) -> list[int]:
        return await self._get(READ_INPUT)

    async def seed(self, *, holding: Sequence[int] = (), inputs: Sequence[int] = ()) -> None:
        if holding:
            await self.server.async_setValues(DEVICE_ID, READ_HOLDING, 0, list(holding))
        if inputs:
            await self.server.async_setValues(DEVICE_ID, READ_INPUT, 0, list(inputs))

    def machine(self) -> ModbusMachine:
        return ModbusMachine("127.0.0.1", self.port, DEVICE_ID, timeout=TIMEOUT)

    async def _get(self, table: int) -> list[int]:
        return [int(value) for value in await self.server.async_getValues(DEVICE_ID, table, 0, 2)]


@contextlib.asynccontextmanager
async def running_plc(port: int = 0, *, read_only: bool = False) -> AsyncIterator[Plc]:
    """A PLC on `port` (0: any free one), stopped on the way out; `read_only` refuses writes."""

    def bits() -> list[SimData]:
        return [SimData(0, datatype=DataType.BITS)]

    def registers() -> list[SimData]:
        return [SimData(0, count=2, values=0, datatype=DataType.REGISTERS, readonly=read_only)]

    device = SimDevice(DEVICE_ID, simdata=(bits(), bits(), registers(), registers()))
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        listener = cast(asyncio.Server, server.transport)
        yield Plc(server, listener.sockets[0].getsockname()[1])
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it bare


@pytest.fixture
async def plc() -> AsyncIterator[Plc]:
    async with running_plc() as plc:
        yield plc


@pytest.fixture
async def machine(plc: Plc) -> AsyncIterator[ModbusMachine]:
    async with plc.machine() as machine:
        yield machine


@pytest.fixture
async def unreachable() -> AsyncIterator[ModbusMachine]:
    """A machine whose PLC's port has nothing listening."""
    async with ModbusMachine("127.0.0.1", free_port(), DEVICE_ID, timeout=TIMEOUT) as machine:
        yield machine


async def test_status_reads_the_registers(plc: Plc, machine: ModbusMachine) -> None:
    await plc.seed(holding=[1, 3000], inputs=[2987, 4125])
    assert await machine.status() == {
        "state": "running",
        "spindle_rpm": 2987,
        "target_rpm": 3000,
        "temperature_c": 41.25,
    }


async def test_a_negative_temperature_and_an_odd_run_state_read_as_such(
    plc: Plc, machine: ModbusMachine
) -> None:
    await plc.seed(holding=[7, 0], inputs=[0, 0x1_0000 - 550])
    status = await machine.status()
    assert (status["state"], status["temperature_c"]) == ("unknown", -5.5)


async def test_start_writes_the_run_state_and_the_speed(plc: Plc, machine: ModbusMachine) -> None:
    result = await machine.execute({"action": "start", "rpm": 3000})
    assert result == {"state": "running", "target_rpm": 3000}
    assert await plc.holding() == [1, 3000]


async def test_start_without_a_speed_uses_the_default(plc: Plc, machine: ModbusMachine) -> None:
    await machine.execute({"action": "start"})
    assert await plc.holding() == [1, 1200]


async def test_stop_writes_idle_and_no_speed(plc: Plc, machine: ModbusMachine) -> None:
    await plc.seed(holding=[1, 3000])
    assert await machine.execute({"action": "stop"}) == {"state": "idle", "target_rpm": 0}
    assert await plc.holding() == [0, 0]


async def test_set_speed_writes_only_the_speed(plc: Plc, machine: ModbusMachine) -> None:
    await plc.seed(holding=[1, 3000])
    result = await machine.execute({"action": "set_speed", "rpm": 4500})
    assert result == {"state": "running", "target_rpm": 4500}
    assert await plc.holding() == [1, 4500]


async def test_set_speed_on_an_idle_spindle_is_rejected_and_writes_nothing(
    plc: Plc, machine: ModbusMachine
) -> None:
    await plc.seed(holding=[0, 0])
    with pytest.raises(CommandRejectedError, match="not running"):
        await machine.execute({"action": "set_speed", "rpm": 4500})
    assert await plc.holding() == [0, 0]


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ({"action": "start", "rpm": 24_001}, "rpm must be"),
        ({"action": "start", "rpm": "fast"}, "rpm must be"),
        ({"action": "set_speed"}, "rpm must be"),
        ({"action": "explode"}, "unknown action"),
        ("stop", "unknown action"),
    ],
)
async def test_an_invalid_command_is_rejected_and_writes_nothing(
    plc: Plc, machine: ModbusMachine, command: Any, reason: str
) -> None:
    await plc.seed(holding=[1, 3000])
    with pytest.raises(CommandRejectedError, match=reason):
        await machine.execute(command)
    assert await plc.holding() == [1, 3000]


async def test_a_plc_refusing_a_write_rejects_the_command() -> None:
    async with running_plc(read_only=True) as plc, plc.machine() as machine:
        with pytest.raises(CommandRejectedError, match=r"Modbus exception 2 \(ILLEGAL_ADDRESS\)"):
            await machine.execute({"action": "start", "rpm": 3000})
        assert await plc.holding() == [0, 0]
        assert (await machine.status())["state"] == "idle"  # reads still work


async def test_an_unreachable_plc_rejects_commands(unreachable: ModbusMachine) -> None:
    with pytest.raises(CommandRejectedError, match="unreachable"):
        await unreachable.execute({"action": "start", "rpm": 3000})


async def test_an_invalid_command_is_rejected_for_itself_even_when_unreachable(
    unreachable: ModbusMachine,
) -> None:
    with pytest.raises(CommandRejectedError, match="unknown action"):
        await unreachable.execute({"action": "explode"})


async def test_an_unreachable_plc_makes_status_unavailable(unreachable: ModbusMachine) -> None:
    with pytest.raises(MachineUnavailableError, match="unreachable"):
        await unreachable.status()


async def test_a_plc_that_does_not_answer_times_out() -> None:
    # Accepts the connection, reads every request, never answers.
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ModbusMachine("127.0.0.1", port, DEVICE_ID, timeout=0.2) as machine:
            with pytest.raises(MachineUnavailableError, match=r"did not answer within 0\.2 s"):
                await machine.status()
            with pytest.raises(CommandRejectedError, match="did not answer"):
                await machine.execute({"action": "stop"})
    finally:
        server.close()
        await server.wait_closed()


async def test_the_machine_reconnects_when_the_plc_is_back() -> None:
    async with running_plc() as plc:
        port = plc.port
        machine = plc.machine()
        await plc.seed(holding=[1, 3000])
        assert (await machine.status())["target_rpm"] == 3000
    with pytest.raises(MachineUnavailableError):
        await machine.status()
    async with running_plc(port) as plc, machine:
        await plc.seed(holding=[1, 500])
        assert (await machine.status())["target_rpm"] == 500


class RecordingClient:
    """Stands in for the relay (not for the PLC): keeps what the bridge sends."""

    def __init__(self) -> None:
        self.statuses: asyncio.Queue[Any] = asyncio.Queue()

    async def send_status(self, payload: Any) -> None:
        await self.statuses.put(payload)

    async def send_event(self, name: str, payload: Any) -> None:
        raise AssertionError(f"no commands were sent, yet {name} {payload}")

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._no_commands()

    async def _no_commands(self) -> AsyncIterator[Message]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]  # never reached: makes this an async generator


async def test_the_bridge_skips_status_while_the_plc_is_down_and_resumes() -> None:
    port = free_port()
    client = RecordingClient()
    async with ModbusMachine("127.0.0.1", port, DEVICE_ID, timeout=TIMEOUT) as machine:
        bridge = Bridge(cast(RelayClient, client), machine, status_interval=0.02)
        running = asyncio.create_task(bridge.run())
        try:
            await asyncio.sleep(0.2)  # several intervals with no PLC
            assert client.statuses.empty()
            assert not running.done()
            async with running_plc(port) as plc:
                await plc.seed(holding=[1, 800], inputs=[790, 2500])
                async with asyncio.timeout(WAIT):
                    status = await client.statuses.get()
            assert status == {
                "state": "running",
                "spindle_rpm": 790,
                "target_rpm": 800,
                "temperature_c": 25.0,
            }
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


def test_the_modbus_machine_needs_a_host(tmp_path: Path) -> None:
    settings = {"BRIDGE_USERNAME": "factory-x", "BRIDGE_PASSWORD": "x", "BRIDGE_MACHINE": "modbus"}
    finished = run_to_exit([console_script("factory-bridge")], tmp_path, settings)
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        "error: invalid setting BRIDGE_MODBUS_HOST: required when BRIDGE_MACHINE is modbus"
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BRIDGE_MACHINE", "plc"),
        ("BRIDGE_MODBUS_PORT", "70000"),
        ("BRIDGE_MODBUS_DEVICE_ID", "256"),
    ],
)
def test_a_bad_modbus_setting_stops_the_bridge_naming_it(
    tmp_path: Path, name: str, value: str
) -> None:
    settings = {
        "BRIDGE_USERNAME": "factory-x",
        "BRIDGE_PASSWORD": "x",
        "BRIDGE_MACHINE": "modbus",
        "BRIDGE_MODBUS_HOST": "127.0.0.1",
        name: value,
    }
    finished = run_to_exit([console_script("factory-bridge")], tmp_path, settings)
    assert finished.returncode == 2
    [line] = finished.stderr.splitlines()
    assert line.startswith(f"error: invalid setting {name}: ")


async def test_factory_bridge_drives_a_modbus_plc(stack: Stack, plc: Plc, tmp_path: Path) -> None:
    factory_name = stack.create_user(UserType.FACTORY)
    operator_name = stack.create_user(UserType.OPERATOR)
    await plc.seed(holding=[0, 0], inputs=[0, 2150])
    settings = {
        "BRIDGE_RELAY_URL": stack.relay.ws_url,
        "BRIDGE_AUTH_URL": stack.auth.http_url,
        "BRIDGE_USERNAME": factory_name,
        "BRIDGE_PASSWORD": PASSWORD,
        "BRIDGE_STATUS_INTERVAL_SECONDS": "0.2",
        "BRIDGE_MACHINE": "modbus",
        "BRIDGE_MODBUS_HOST": "127.0.0.1",
        "BRIDGE_MODBUS_PORT": str(plc.port),
        "BRIDGE_MODBUS_DEVICE_ID": str(DEVICE_ID),
    }
    command = [console_script("factory-bridge")]
    bridge = ServiceProcess(command, tmp_path, name="bridge", settings=settings, http=False)
    async with RelayClient(
        stack.relay.ws_url, auth_url=stack.auth.http_url, username=operator_name, password=PASSWORD
    ) as operator:
        bridge.start()
        try:
            status = await next_message(operator, 5)
            assert status.sender.username == factory_name
            assert status.payload == {
                "state": "idle",
                "spindle_rpm": 0,
                "target_rpm": 0,
                "temperature_c": 21.5,
            }
            await operator.send_command(
                {"action": "start", "rpm": 3000}, target=factory_name, id="cmd-plc"
            )
            ack = await next_message(operator, 6, "COMMAND_ACK")
            assert ack.payload == {
                "command_id": "cmd-plc",
                "result": {"state": "running", "target_rpm": 3000},
            }
            assert await plc.holding() == [1, 3000]
        finally:
            bridge.kill()
