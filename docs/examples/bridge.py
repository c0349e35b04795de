"""A factory bridge: report whether the machine runs, obey start and stop."""

import asyncio
import os

from relay_client import RelayClient

env = os.environ


async def report(client: RelayClient, machine: dict[str, bool]) -> None:
    while True:
        await client.send_status(machine)
        await asyncio.sleep(1)


async def main() -> None:
    machine = {"running": False}
    client = RelayClient(
        env["RELAY_URL"],
        auth_url=env["AUTH_URL"],
        username=env["FACTORY_USERNAME"],
        password=env["FACTORY_PASSWORD"],
    )
    async with client, asyncio.TaskGroup() as tasks:
        tasks.create_task(report(client, machine))
        async for message in client:
            if message.op == 4:  # a command
                machine["running"] = message.payload.get("action") == "start"
                await client.send_event("COMMAND_ACK", {"command_id": message.id})


asyncio.run(main())
