"""`factory-bridge`: a factory's connection to the relay, built on `relay_client`.

It publishes the machine's status at a set rate and executes the commands it
understands, answering each with a `COMMAND_ACK` or `COMMAND_REJECTED` event that
carries the command's `id` as `command_id`. The machine is `SimulatedMachine`, or
`relay_client.bridge.modbus.ModbusMachine` for a PLC over Modbus TCP (the `modbus` extra).
"""

from relay_client.bridge.bridge import Bridge
from relay_client.bridge.machine import (
    CommandRejectedError,
    Machine,
    MachineUnavailableError,
    SimulatedMachine,
)

__all__ = [
    "Bridge",
    "CommandRejectedError",
    "Machine",
    "MachineUnavailableError",
    "SimulatedMachine",
]
