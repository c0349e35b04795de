"""`factory-bridge`: a factory's connection to the relay, built on `relay_client`.

It publishes the machine's status at a set rate and executes the commands it
understands, answering each with a `COMMAND_ACK` or `COMMAND_REJECTED` event that
carries the command's `id` as `command_id`.
"""

from relay_client.bridge.bridge import Bridge
from relay_client.bridge.machine import CommandRejectedError, Machine, SimulatedMachine

__all__ = ["Bridge", "CommandRejectedError", "Machine", "SimulatedMachine"]
