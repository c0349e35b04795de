"""The bridge's two jobs on one client: publish status, and answer commands."""

from __future__ import annotations

import asyncio

from relay_client.bridge.machine import CommandRejectedError, Machine
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
        while True:
            await self._client.send_status(self._machine.status())
            await asyncio.sleep(self._status_interval)

    async def _answer_commands(self) -> None:
        async for message in self._client:
            if message.op == Op.COMMAND:
                await self._answer(message)

    async def _answer(self, command: Message) -> None:
        try:
            result = self._machine.execute(command.payload)
        except CommandRejectedError as rejection:
            log.info("command_rejected", command_id=command.id, reason=str(rejection))
            answer = {"command_id": command.id, "reason": str(rejection)}
            await self._client.send_event(REJECTED, answer)
            return
        log.info("command_done", command_id=command.id)
        await self._client.send_event(ACK, {"command_id": command.id, "result": result})
