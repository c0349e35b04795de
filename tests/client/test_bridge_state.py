"""The bridge's answers across expiry and its own restart, against a scripted relay.

A real relay never delivers an expired command nor (but rarely) one twice; the stand-in
does both on demand, so these behaviours are checked every run, over a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from relay_client import RelayClient
from relay_client.bridge import Bridge, SimulatedMachine
from tests.client.conftest import WAIT
from tests.client.stand_in import (
    Script,
    StandInRelay,
    command,
    cursors,
    factory_token,
    stand_in_relay,
)

START = {"action": "start"}
STOP = {"action": "stop"}


@contextlib.asynccontextmanager
async def running_bridge(relay: StandInRelay, state_file: Path) -> AsyncIterator[None]:
    client = RelayClient(
        relay.url,
        token=factory_token(),
        state_file=state_file,
        deliver_expired=True,
        clock_skew_ms=0,
    )
    async with client:
        bridge = asyncio.create_task(Bridge(client, SimulatedMachine(), 60).run())
        try:
            yield
        finally:
            bridge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bridge


async def answers(relay: StandInRelay, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The bridge's first `count` answers: (event name, payload)."""
    async with asyncio.timeout(WAIT):
        while len(found := [f for f in relay.received if f["op"] == 6]) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return [(frame["t"], frame["d"]["payload"]) for frame in found]


async def test_the_bridge_rejects_an_expired_command_as_expired(tmp_path: Path) -> None:
    script = Script(
        ready={"cursors": cursors()},
        frames=[
            command("late", 1, ttl_ms=-10_000, payload=START),
            command("fresh", 2, payload=START),
        ],
    )
    async with stand_in_relay(script) as relay, running_bridge(relay, tmp_path / "state.json"):
        late, fresh = await answers(relay, 2)
    assert late == ("COMMAND_REJECTED", {"command_id": "late", "reason": "expired"})
    assert fresh[0] == "COMMAND_ACK"
    assert fresh[1]["command_id"] == "fresh"


async def test_the_bridge_executes_a_command_once_across_its_own_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    first = Script(ready={"cursors": cursors()}, frames=[command("c-1", 1, payload=START)])
    again = Script(
        ready={"cursors": cursors(0, 1), "resumed": {"all": True, "own": True}},
        frames=[
            command("c-1", 1, payload=START),  # the same delivery again: same cursor
            command("c-1", 2, payload=START),  # the same command again: same id
            command("c-3", 3, payload=STOP),
        ],
    )
    async with stand_in_relay(first, again) as relay:
        async with running_bridge(relay, state_file):
            await answers(relay, 1)
        async with running_bridge(relay, state_file):
            found = await answers(relay, 2)
    # answered in order: a second answer to c-1 would have come before c-3's
    assert [(name, payload["command_id"]) for name, payload in found] == [
        ("COMMAND_ACK", "c-1"),
        ("COMMAND_ACK", "c-3"),
    ]
    assert relay.identifies[1]["resume"]["own"]["offset"] == 1
