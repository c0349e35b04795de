"""The client's place in the command streams, against a scripted relay (`stand_in`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from relay_client import RelayClient
from relay_client.presence import FactoryPresence
from tests.client.conftest import WAIT
from tests.client.stand_in import (
    EPOCH,
    FACTORY,
    Script,
    command,
    cursors,
    factory_token,
    stand_in_relay,
)

NEW_EPOCH = "77aa00bb11cc22dd"
SERVICE_RESTART = 1012


async def received_ids(client: RelayClient, count: int) -> list[str]:
    """The ids of the next `count` messages the application gets."""
    ids: list[str] = []
    async with asyncio.timeout(WAIT):
        async for message in client:
            ids.append(message.id)
            if len(ids) == count:
                return ids
    raise AssertionError("the client stopped")


async def wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 — the client's state changes in its own task
            await asyncio.sleep(0.02)


async def test_a_reconnect_resumes_from_the_last_cursor_received() -> None:
    first = Script(
        ready={"cursors": cursors()},
        frames=[command("c-1", 1), command("c-2", 2), command("b-1", 1, stream="all")],
        close_code=SERVICE_RESTART,
    )
    second = Script(ready={"cursors": cursors(1, 2), "resumed": {"all": True, "own": True}})
    async with (
        stand_in_relay(first, second) as relay,
        RelayClient(relay.url, token=factory_token()) as client,
    ):
        assert await received_ids(client, 3) == ["c-1", "c-2", "b-1"]
        await wait_for(lambda: len(relay.identifies) == 2)
    assert "resume" not in relay.identifies[0]
    assert relay.identifies[1]["resume"] == {
        "all": {"epoch": EPOCH, "offset": 1},
        "own": {"epoch": EPOCH, "offset": 2},
    }


async def test_a_client_that_is_not_a_factory_never_sends_resume() -> None:
    first = Script(ready={"cursors": cursors(4, 4)}, close_code=SERVICE_RESTART)
    async with stand_in_relay(first, Script()) as relay:
        token = factory_token("operator-1", "operator")
        async with RelayClient(relay.url, token=token):
            await wait_for(lambda: len(relay.identifies) == 2)
    assert "resume" not in relay.identifies[1]


async def test_a_duplicate_dispatch_is_dropped() -> None:
    script = Script(
        ready={"cursors": cursors()},
        frames=[command("c-1", 1), command("c-1", 1), command("c-2", 2)],
    )
    async with (
        stand_in_relay(script) as relay,
        RelayClient(relay.url, token=factory_token()) as client,
    ):
        assert await received_ids(client, 2) == ["c-1", "c-2"]


async def test_an_expired_dispatch_is_dropped() -> None:
    script = Script(
        ready={"cursors": cursors()},
        frames=[command("c-1", 1, ttl_ms=-60_000), command("c-2", 2)],
    )
    async with (
        stand_in_relay(script) as relay,
        RelayClient(relay.url, token=factory_token()) as client,
    ):
        assert await received_ids(client, 1) == ["c-2"]
        assert client.cursors["own"].offset == 2


async def test_a_dispatch_within_the_clock_skew_is_taken() -> None:
    script = Script(ready={"cursors": cursors()}, frames=[command("c-1", 1, ttl_ms=-500)])
    async with (
        stand_in_relay(script) as relay,
        RelayClient(relay.url, token=factory_token(), clock_skew_ms=5_000) as client,
    ):
        assert await received_ids(client, 1) == ["c-1"]


async def test_an_expired_dispatch_is_handed_over_when_asked_for() -> None:
    script = Script(ready={"cursors": cursors()}, frames=[command("c-1", 1, ttl_ms=-60_000)])
    async with stand_in_relay(script) as relay:
        client = RelayClient(relay.url, token=factory_token(), deliver_expired=True)
        async with client:
            async with asyncio.timeout(WAIT):
                message = await anext(aiter(client))
            assert client.expired(message)


async def test_an_application_that_falls_behind_loses_nothing() -> None:
    first = Script(ready={"cursors": cursors()}, frames=[command("c-1", 1), command("c-2", 2)])
    second = Script(
        ready={"cursors": cursors(0, 1), "resumed": {"all": True, "own": True}},
        frames=[command("c-2", 2)],
    )
    async with (
        stand_in_relay(first, second) as relay,
        RelayClient(relay.url, token=factory_token(), queue_size=1) as client,
    ):
        assert await received_ids(client, 2) == ["c-1", "c-2"]
    # c-2 found the queue full: the session ended, and the next resumed before it
    assert relay.identifies[1]["resume"]["own"] == {"epoch": EPOCH, "offset": 1}


async def test_a_restart_resumes_after_the_last_message_the_application_finished(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "state.json"
    first = Script(ready={"cursors": cursors()}, frames=[command("c-1", 1), command("c-2", 2)])
    second = Script(ready={"cursors": cursors(0, 1), "resumed": {"all": True, "own": True}})
    async with (
        stand_in_relay(first, second) as relay,
        RelayClient(relay.url, token=factory_token(), state_file=state_file) as client,
    ):
        # c-1 is finished when the next is asked for; c-2 arrives but is never acted on
        assert await received_ids(client, 2) == ["c-1", "c-2"]
        async with RelayClient(relay.url, token=factory_token(), state_file=state_file):
            pass
    assert relay.identifies[1]["resume"] == {
        "all": {"epoch": EPOCH, "offset": 0},
        "own": {"epoch": EPOCH, "offset": 1},
    }


async def test_a_stream_that_starts_afresh_is_saved_at_its_new_start(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    first = Script(ready={"cursors": cursors(3, 3)})
    afresh = Script(
        ready={
            "cursors": {
                "all": {"epoch": EPOCH, "offset": 3},
                "own": {"epoch": NEW_EPOCH, "offset": 0},
            },
            "resumed": {"all": True, "own": False},
        }
    )
    async with (
        stand_in_relay(first, afresh) as relay,
        RelayClient(relay.url, token=factory_token(), state_file=state_file),
    ):
        pass
        async with RelayClient(relay.url, token=factory_token(), state_file=state_file):
            pass
    saved = json.loads(state_file.read_text())
    assert saved["username"] == FACTORY
    assert saved["cursors"]["own"] == {"epoch": NEW_EPOCH, "offset": 0}


async def test_presence_follows_the_snapshot_then_the_updates() -> None:
    snapshot = [{"username": FACTORY, "online": True, "since": 100, "status": None}]
    update = {"username": FACTORY, "online": False, "since": 200}
    script = Script(
        ready={"factories": snapshot},
        frames=[{"op": 6, "t": "PRESENCE_UPDATE", "d": update}],
        user={"id": "2", "username": "viewer-1", "type": "viewer"},
    )
    heard: list[FactoryPresence] = []
    async with stand_in_relay(script) as relay:
        client = RelayClient(
            relay.url, token=factory_token("viewer-1", "viewer"), on_presence=heard.append
        )
        async with client:
            await wait_for(lambda: len(heard) == 2)
            assert client.factories == {FACTORY: FactoryPresence(FACTORY, False, 200)}
    assert [entry.online for entry in heard] == [True, False]


async def test_a_corrupt_state_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text('{"format": "something else", "cursors": ')
    async with (
        stand_in_relay(Script(ready={"cursors": cursors(5, 7)})) as relay,
        RelayClient(relay.url, token=factory_token(), state_file=state_file),
    ):
        pass
    assert "resume" not in relay.identifies[0]
    assert json.loads(state_file.read_text())["cursors"]["own"] == {"epoch": EPOCH, "offset": 7}
