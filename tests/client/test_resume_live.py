"""State across reconnects, with the real auth service and relays sharing Redis.

The client resumes its command streams after a replica drains (1012) and after its own
restart (its state file), drops what expired while it stalled, and an observer's client
follows the factories' presence. `factory-bridge` executes a command at most once across
its own restart, and answers an expired one with `COMMAND_REJECTED`, reason `expired`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from relay_client import Message, RelayClient
from relay_client.presence import FactoryPresence
from shared.identity import UserType
from tests.client.conftest import (
    JWT_SECRET,
    PASSWORD,
    WAIT,
    Stack,
    client_for,
    next_message,
    running_stack,
)
from tests.processes import RelayProcess, ServiceProcess, console_script

PRESENCE_GRACE_MS = 300
RESTART_WAIT = 30.0
"""A drained relay restarted: the client's backoff may wait a few seconds before retrying."""
STALL_SECONDS = 0.6
SHORT_TTL_MS = 100
T = TypeVar("T")


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = {"PRESENCE_GRACE_MS": str(PRESENCE_GRACE_MS)}
    workdir = tmp_path_factory.mktemp("resume-stack")
    yield from running_stack(redis_url, workdir, relay_settings=settings)


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 — the client's state changes in its own task
            await asyncio.sleep(0.05)


async def commands(client: RelayClient, count: int) -> list[Message]:
    """The next `count` commands the application gets, each committed once taken."""
    taken: list[Message] = []
    while len(taken) < count:
        message = await next_message(client, 4)
        await client.commit(message)
        taken.append(message)
    return taken


def ids(messages: list[Message], stream: str | None = None) -> list[str]:
    return [m.id for m in messages if stream is None or m.stream == stream]


async def replica_of(stack: Stack, workdir: Path) -> RelayProcess:
    """Another relay on the stack's Redis and prefix, on a port it keeps across restarts."""
    relay = RelayProcess(workdir, jwt_secret=JWT_SECRET, settings=stack.relay.settings)
    relay.settings["PORT"] = str(relay.port)
    return await in_thread(relay.start)


async def in_thread(call: Callable[[], T]) -> T:
    """Start or stop a process without stalling the clients' heartbeats meanwhile."""
    return await asyncio.to_thread(call)


async def test_a_factory_resumes_after_a_drain_with_exactly_the_commands_it_missed(
    stack: Stack, operator: RelayClient, tmp_path: Path
) -> None:
    relay = await replica_of(stack, tmp_path)
    factory_name = stack.create_user(UserType.FACTORY)
    try:
        async with client_for(stack, factory_name, relay) as factory:
            await operator.send_command({"n": 0}, target=factory_name, id="before")
            assert ids(await commands(factory, 1)) == ["before"]
            assert await in_thread(relay.stop) == 0  # the relay drains: 1012 to every session
            for n in range(1, 4):
                await operator.send_command({"n": n}, target=factory_name, id=f"missed-{n}")
            await operator.send_command({"n": 4}, id="missed-broadcast")
            await in_thread(relay.start)
            missed = await asyncio.wait_for(commands(factory, 4), RESTART_WAIT)
            assert ids(missed, "own") == ["missed-1", "missed-2", "missed-3"]
            assert ids(missed, "all") == ["missed-broadcast"]
            await operator.send_command({"n": 5}, target=factory_name, id="after")
            assert ids(await commands(factory, 1)) == ["after"]  # nothing came twice
            assert factory.sessions_opened == 2
    finally:
        relay.kill()


async def test_the_cursors_survive_a_restart_of_the_client_in_its_state_file(
    stack: Stack, operator: RelayClient, tmp_path: Path
) -> None:
    factory_name = stack.create_user(UserType.FACTORY)
    state_file = tmp_path / "factory-state.json"

    def factory() -> RelayClient:
        return RelayClient(
            stack.relay.ws_url,
            auth_url=stack.auth.http_url,
            username=factory_name,
            password=PASSWORD,
            state_file=state_file,
        )

    async with factory() as first_run:
        await operator.send_command({"n": 1}, target=factory_name, id="done")
        assert ids(await commands(first_run, 1)) == ["done"]
    await operator.send_command({"n": 2}, target=factory_name, id="while-down-1")
    await operator.send_command({"n": 3}, target=factory_name, id="while-down-2")
    async with factory() as second_run:
        assert ids(await commands(second_run, 2)) == ["while-down-1", "while-down-2"]
        await operator.send_command({"n": 4}, target=factory_name, id="live")
        assert ids(await commands(second_run, 1)) == ["live"]
    saved = json.loads(state_file.read_text())
    assert saved["username"] == factory_name
    assert saved["cursors"]["own"]["offset"] == 4


async def test_a_command_that_expired_while_the_factory_stalled_is_dropped(
    stack: Stack, operator: RelayClient
) -> None:
    factory_name = stack.create_user(UserType.FACTORY)
    async with RelayClient(
        stack.relay.ws_url,
        auth_url=stack.auth.http_url,
        username=factory_name,
        password=PASSWORD,
        clock_skew_ms=0,
    ) as factory:
        await factory.send_status({"alive": True})  # liveness, so the stall costs no 4009
        await operator.send_command(
            {"stale": True}, target=factory_name, id="stale", ttl_ms=SHORT_TTL_MS
        )
        with capture_logs() as logs:
            time.sleep(STALL_SECONDS)  # noqa: ASYNC251 — the factory's loop stalls on purpose
            await operator.send_command({"stale": False}, target=factory_name, id="fresh")
            [command] = await commands(factory, 1)
        assert command.id == "fresh"
    [dropped] = [line for line in logs if line["event"] == "relay_expired_dispatch"]
    assert (dropped["id"], dropped["dropped"]) == ("stale", True)


async def test_the_presence_dict_follows_a_factory_going_online_and_offline(
    stack: Stack,
) -> None:
    factory_name = stack.create_user(UserType.FACTORY)
    heard: list[FactoryPresence] = []
    viewer = RelayClient(
        stack.relay.ws_url,
        auth_url=stack.auth.http_url,
        username=stack.create_user(UserType.VIEWER),
        password=PASSWORD,
        on_presence=lambda entry: heard.append(entry) if entry.username == factory_name else None,
    )
    async with viewer:
        assert factory_name not in viewer.factories
        async with client_for(stack, factory_name) as factory:
            await wait_until(lambda: factory_name in viewer.factories)
            online = viewer.factories[factory_name]
            assert online.online
            await factory.send_status({"state": "idle"})
            await wait_until(lambda: viewer.factories[factory_name].status is not None)
        await wait_until(lambda: not viewer.factories[factory_name].online)
        offline = viewer.factories[factory_name]
        assert offline.since >= online.since
        assert offline.status is not None
        assert offline.status["payload"] == {"state": "idle"}
    assert (heard[0].online, heard[-1].online) == (True, False)


# -- factory-bridge ------------------------------------------------------------------


def log_events(process: ServiceProcess) -> list[dict[str, Any]]:
    lines = process.stdout_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def bridge_process(
    stack: Stack, workdir: Path, factory_name: str, relay: RelayProcess | None = None
) -> ServiceProcess:
    settings = {
        "BRIDGE_RELAY_URL": (relay or stack.relay).ws_url,
        "BRIDGE_AUTH_URL": stack.auth.http_url,
        "BRIDGE_USERNAME": factory_name,
        "BRIDGE_PASSWORD": PASSWORD,
        "BRIDGE_STATUS_INTERVAL_SECONDS": "0.2",
        "BRIDGE_STATE_FILE": str(workdir / "bridge-state.json"),
        "BRIDGE_CLOCK_SKEW_MS": "0",
    }
    command = [console_script("factory-bridge")]
    return ServiceProcess(command, workdir, name="bridge", settings=settings, http=False)


async def answers(operator: RelayClient, count: int) -> list[tuple[str | None, str]]:
    """The next `count` answers of bridges: (event name, command id)."""
    found: list[tuple[str | None, str]] = []
    async with asyncio.timeout(RESTART_WAIT):
        async for message in operator:
            if message.op == 6 and message.name in ("COMMAND_ACK", "COMMAND_REJECTED"):
                found.append((message.name, message.payload["command_id"]))
                if len(found) == count:
                    return found
    raise AssertionError("the operator's client stopped")


@pytest.fixture(params=["redis", "in-process"])
async def broker_relay(
    request: pytest.FixtureRequest, stack: Stack, tmp_path: Path
) -> AsyncIterator[RelayProcess]:
    """The stack's relay (Redis), or a relay of its own on the in-process broker."""
    if request.param == "redis":
        yield stack.relay
        return
    relay = RelayProcess(
        tmp_path / "in-process", jwt_secret=JWT_SECRET, settings={"HEARTBEAT_INTERVAL_MS": "1000"}
    )
    await in_thread(relay.start)
    try:
        yield relay
    finally:
        relay.kill()


async def test_the_bridge_executes_a_command_once_across_its_own_restart(
    stack: Stack, broker_relay: RelayProcess, tmp_path: Path
) -> None:
    factory_name = stack.create_user(UserType.FACTORY)
    bridge = bridge_process(stack, tmp_path, factory_name, broker_relay).start()
    operator = client_for(stack, stack.create_user(UserType.OPERATOR), broker_relay)
    try:
        async with operator:
            await next_message(operator, 5)  # the bridge is online
            await operator.send_command({"action": "start"}, target=factory_name, id="cmd-1")
            assert await answers(operator, 1) == [("COMMAND_ACK", "cmd-1")]
            assert await in_thread(bridge.stop) == 0
            await operator.send_command({"action": "stop"}, target=factory_name, id="cmd-2")
            await in_thread(bridge.start)
            assert await answers(operator, 1) == [("COMMAND_ACK", "cmd-2")]  # missed, replayed
            await operator.send_command({"action": "start"}, target=factory_name, id="cmd-1")
            await operator.send_command({"action": "stop"}, target=factory_name, id="cmd-3")
            assert await answers(operator, 1) == [("COMMAND_ACK", "cmd-3")]  # cmd-1: not again
    finally:
        bridge.kill()
    events = log_events(bridge)
    assert [e["command_id"] for e in events if e["event"] == "command_done"] == [
        "cmd-1",
        "cmd-2",
        "cmd-3",
    ]
    assert [e["command_id"] for e in events if e["event"] == "command_duplicate"] == ["cmd-1"]
    resumed = [e for e in events if e["event"] == "relay_stream_resumed"]
    assert {e["stream"] for e in resumed} == {"all", "own"}
    [replayed] = [e for e in events if e["event"] == "relay_replayed"]
    assert (replayed["all"], replayed["own"]) == (0, 1)


async def test_the_bridge_rejects_a_command_that_expired_before_it_could_act(
    stack: Stack, operator: RelayClient, tmp_path: Path
) -> None:
    factory_name = stack.create_user(UserType.FACTORY)
    bridge = bridge_process(stack, tmp_path, factory_name).start()
    try:
        await next_message(operator, 5)  # the bridge is online
        os.kill(bridge.process.pid, signal.SIGSTOP)  # the factory's host stalls
        try:
            await operator.send_command(
                {"action": "start"}, target=factory_name, id="late", ttl_ms=SHORT_TTL_MS
            )
            await asyncio.sleep(STALL_SECONDS)
        finally:
            os.kill(bridge.process.pid, signal.SIGCONT)
        async with asyncio.timeout(WAIT):
            answer = await next_message(operator, 6, "COMMAND_REJECTED")
        assert answer.payload == {"command_id": "late", "reason": "expired"}
    finally:
        bridge.kill()
    assert not any(e["event"] == "command_done" for e in log_events(bridge))
