"""A factory bridge: report the machine's state, obey start, stop and set_speed, reject the rest."""

import asyncio
import os
from typing import Any

from relay_client import Message, RelayClient

env = os.environ
MAX_RPM = 24_000


class CommandRejectedError(Exception):
    """A command the machine will not carry out; the message says why."""


def execute(machine: dict[str, Any], command: Any) -> dict[str, Any]:
    """Carry out one command on `machine`, or refuse it before changing anything."""
    action = command.get("action") if isinstance(command, dict) else None
    if action not in ("start", "stop", "set_speed"):
        raise CommandRejectedError(f"unknown action {action!r}")
    rpm = command.get("rpm", 1200) if action == "start" else command.get("rpm")
    if action != "stop" and (type(rpm) is not int or not 0 <= rpm <= MAX_RPM):
        raise CommandRejectedError(f"rpm must be an integer from 0 to {MAX_RPM}")
    if action == "set_speed" and not machine["running"]:
        raise CommandRejectedError("the spindle is not running")
    machine.update(running=action != "stop", rpm=0 if action == "stop" else rpm)
    return dict(machine)


async def answer(client: RelayClient, machine: dict[str, Any], command: Message) -> None:
    """Every command gets an answer the operator sees: COMMAND_ACK or COMMAND_REJECTED."""
    try:
        if client.expired(command):  # it waited past its expires_at: never act on it
            raise CommandRejectedError("expired")
        result = execute(machine, command.payload)
    except CommandRejectedError as rejection:
        reply = {"command_id": command.id, "reason": str(rejection)}
        await client.commit(command)  # done with it: saved before the answer goes out
        await client.send_event("COMMAND_REJECTED", reply)
    else:
        await client.commit(command)
        await client.send_event("COMMAND_ACK", {"command_id": command.id, "result": result})


async def report(client: RelayClient, machine: dict[str, Any]) -> None:
    while True:
        await client.send_status(machine)
        await asyncio.sleep(1)


async def main() -> None:
    machine: dict[str, Any] = {"running": False, "rpm": 0}
    client = RelayClient(
        env["RELAY_URL"],
        auth_url=env["AUTH_URL"],
        username=env["FACTORY_USERNAME"],
        password=env["FACTORY_PASSWORD"],
        state_file=env.get("STATE_FILE"),  # where it is in the command streams, across restarts
        deliver_expired=True,  # expired commands too, so that each gets its answer
    )
    async with client, asyncio.TaskGroup() as tasks:
        tasks.create_task(report(client, machine))
        async for message in client:
            if message.op == 4:  # a command
                await answer(client, machine, message)


asyncio.run(main())
