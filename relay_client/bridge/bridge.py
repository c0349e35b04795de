"""The bridge's two jobs on one client: publish status, and answer commands."""

from __future__ import annotations

import asyncio

from relay_client.bridge.machine import CommandRejectedError, Machine, MachineUnavailableError
from relay_client.client import Message, RelayClient
from shared.logging import get_logger
from shared.protocol import Op

log = get_logger(__name__)

ACK = "COMMAND_ACK"
REJECTED = "COMMAND_REJECTED"


class Bridge:
    def __init__(self, client: RelayClient, machine: Machine, status_interval: float) -> None:
        self._client = client
        self._machine = machine
        self._status_interval = status_interval

    async def run(self) -> None:
        """Until cancelled, or until the client stops for good."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._publish_status())
            tasks.create_task(self._answer_commands())

    async def _publish_status(self) -> None:
        """Every interval; a machine that cannot be read skips its turn (logged once)."""
        available = True
        while True:
            try:
                status = await self._machine.status()
            except MachineUnavailableError as error:
                if available:
                    log.warning("machine_unavailable", reason=str(error))
                available = False
            else:
                if not available:
                    log.info("machine_available")
                available = True
                await self._client.send_status(status)
            await asyncio.sleep(self._status_interval)

    async def _answer_commands(self) -> None:
        async for message in self._client:
            if message.op == Op.COMMAND:
                await self._answer(message)

    async def _answer(self, command: Message) -> None:
        try:
            result = await self._machine.execute(command.payload)
        except CommandRejectedError as rejection:
            log.info("command_rejected", command_id=command.id, reason=str(rejection))
            answer = {"command_id": command.id, "reason": str(rejection)}
            await self._client.send_event(REJECTED, answer)
            return
        log.info("command_done", command_id=command.id)
        await self._client.send_event(ACK, {"command_id": command.id, "result": result})
