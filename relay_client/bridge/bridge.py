"""The bridge's two jobs on one client: publish status, and answer commands.

Its client delivers expired commands too (`deliver_expired`), so that each gets its
`COMMAND_REJECTED` with reason `expired` instead of silence, and keeps the ids of the
commands executed recently in its state file, so that none is executed twice.
"""

from __future__ import annotations

import asyncio

from relay_client.bridge.machine import CommandRejectedError, Machine, MachineUnavailableError
from relay_client.client import RelayClient
from relay_client.messages import Message
from shared.logging import get_logger
from shared.protocol import Op

log = get_logger(__name__)

ACK = "COMMAND_ACK"
REJECTED = "COMMAND_REJECTED"
EXPIRED = "expired"
"""The reason of a `COMMAND_REJECTED` for a command that arrived after its `expires_at`."""


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
        """Execute a command at most once, and never after its `expires_at`.

        Its id is saved as executed before the machine is touched, so not even a crash
        mid-command makes a second delivery execute it again (such a command gets no
        second answer: the operator sees the first). The cursor is committed after
        acting and before answering.
        """
        if command.id in self._client.state.executed:
            log.info("command_duplicate", command_id=command.id)
            await self._client.commit(command)
            return
        if self._client.expired(command):
            log.warning("command_expired", command_id=command.id, expires_at=command.expires_at)
            await self._reject(command, EXPIRED)
            return
        await self._client.remember_executed(command.id)
        try:
            result = await self._machine.execute(command.payload)
        except CommandRejectedError as rejection:
            await self._reject(command, str(rejection))
            return
        await self._client.commit(command)
        log.info("command_done", command_id=command.id)
        await self._client.send_event(ACK, {"command_id": command.id, "result": result})

    async def _reject(self, command: Message, reason: str) -> None:
        log.info("command_rejected", command_id=command.id, reason=reason)
        await self._client.commit(command)
        await self._client.send_event(REJECTED, {"command_id": command.id, "reason": reason})
