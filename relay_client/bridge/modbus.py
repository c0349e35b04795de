"""`ModbusMachine`: a PLC spoken to over Modbus TCP (needs the `modbus` extra: pymodbus).

Register map (addresses from 0, as on the wire; one device id, `BRIDGE_MODBUS_DEVICE_ID`):

| table            | address | meaning                                 | bridge      |
|------------------|---------|-----------------------------------------|-------------|
| holding register | 0       | run state: 0 idle, 1 running            | read, write |
| holding register | 1       | target spindle speed, rpm (0 to 24,000) | read, write |
| input register   | 0       | measured spindle speed, rpm             | read        |
| input register   | 1       | temperature, centi-°C, signed 16-bit    | read        |

Writes use function 16 (write multiple registers). `start` writes holding registers 0
and 1 in one request (1, rpm); `stop` writes them (0, 0); `set_speed` reads holding
register 0 and, if the spindle runs, writes only holding register 1, so it can never
restart a spindle the PLC has stopped. A run state other than 0 or 1 is reported as
`unknown`.

The connection is opened on first use and reopened on the next call after a failure:
`status()` raises `MachineUnavailableError` while the PLC is unreachable or answers with
a Modbus exception, and `execute()` raises `CommandRejectedError` saying which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Literal, Self

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from relay_client.bridge.machine import (
    IDLE,
    RUNNING,
    CommandRejectedError,
    MachineUnavailableError,
    parse_command,
)

HR_RUN_STATE = 0
HR_TARGET_RPM = 1
IR_SPINDLE_RPM = 0
IR_TEMPERATURE = 1

RUN_STATE_CODES = {IDLE: 0, RUNNING: 1}
RUN_STATE_NAMES = {code: name for name, code in RUN_STATE_CODES.items()}
UNKNOWN = "unknown"

DEFAULT_PORT = 502
DEFAULT_DEVICE_ID = 1
DEFAULT_TIMEOUT_SECONDS = 2.0


class ModbusMachine:
    """One PLC at `host:port`, device `device_id`; see the module for its registers."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        device_id: int = DEFAULT_DEVICE_ID,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.host, self.port, self.device_id = host, port, device_id
        self._timeout = timeout
        # No background reconnect and no resend: each call connects if it must, and a
        # failure is reported at once (the status loop is the retry).
        self._client = AsyncModbusTcpClient(
            host, port=port, timeout=timeout, retries=0, reconnect_delay=0
        )
        # One request sequence at a time: set_speed's read-check-write must not interleave.
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    async def status(self) -> dict[str, Any]:
        async with self._lock:
            run_state, target_rpm = await self._read("holding", HR_RUN_STATE, 2)
            spindle_rpm, temperature = await self._read("input", IR_SPINDLE_RPM, 2)
        return {
            "state": RUN_STATE_NAMES.get(run_state, UNKNOWN),
            "spindle_rpm": spindle_rpm,
            "target_rpm": target_rpm,
            "temperature_c": _signed(temperature) / 100,
        }

    async def execute(self, command: Any) -> dict[str, Any]:
        order = parse_command(command)
        async with self._lock:
            try:
                if order.needs_running_spindle:
                    (run_state,) = await self._read("holding", HR_RUN_STATE, 1)
                    order.check_allowed(RUN_STATE_NAMES.get(run_state, UNKNOWN))
                    await self._write(HR_TARGET_RPM, [order.target_rpm])
                else:
                    await self._write(
                        HR_RUN_STATE, [RUN_STATE_CODES[order.state], order.target_rpm]
                    )
            except MachineUnavailableError as error:
                raise CommandRejectedError(str(error)) from error
        return order.result()

    async def _read(
        self, table: Literal["holding", "input"], address: int, count: int
    ) -> list[int]:
        await self._connect()
        if table == "holding":
            request = self._client.read_holding_registers
        else:
            request = self._client.read_input_registers
        response = await self._answer(request(address, count=count, device_id=self.device_id))
        return list(response.registers)

    async def _write(self, address: int, values: list[int]) -> None:
        """Write holding registers with one request (function 16, for one register too)."""
        await self._connect()
        await self._answer(self._client.write_registers(address, values, device_id=self.device_id))

    async def _connect(self) -> None:
        if not self._client.connected and not await self._client.connect():
            raise MachineUnavailableError(f"the PLC at {self._address} is unreachable")

    async def _answer(self, request: Awaitable[ModbusPDU]) -> ModbusPDU:
        """The PLC's answer to a request, or MachineUnavailableError saying why not."""
        try:
            response = await request
        except ModbusException as error:
            self._client.close()  # a fresh connection next time, not a half-read stream
            if isinstance(error, ModbusIOException):
                reason = f"did not answer within {self._timeout} s"
            elif isinstance(error, ConnectionException):
                reason = "dropped the connection"
            else:
                reason = f"failed: {error}"
            raise MachineUnavailableError(f"the PLC at {self._address} {reason}") from None
        if isinstance(response, ExceptionResponse):
            raise MachineUnavailableError(
                f"the PLC at {self._address} answered {_describe(response)}"
            )
        return response

    @property
    def _address(self) -> str:
        return f"{self.host}:{self.port} (device {self.device_id})"


def _describe(response: ExceptionResponse) -> str:
    code = response.exception_code
    try:
        name = ExcCodes(code).name
    except ValueError:
        name = "unknown"
    return f"Modbus exception {code} ({name})"


def _signed(register: int) -> int:
    """A 16-bit register read as two's complement."""
    return register - 0x1_0000 if register & 0x8000 else register
