"""SPEC 1, "What the server delivers": the delivery table, the stamps, `s`, and order.

Senders sit on replica A, receivers on B (and on A, to show every replica delivers);
under the in-process broker A and B are one process.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from shared.identity import UserType
from shared.protocol import MESSAGE_ID_PATTERN, Op
from tests.relay.harness import Client, Connector, Relays, Tokens

CONTROLLERS = [UserType.OPERATOR, UserType.ADMIN]
OBSERVERS = [UserType.ADMIN, UserType.OPERATOR, UserType.VIEWER]


def _unique(stem: str) -> str:
    return f"{stem}-{time.monotonic_ns() % 10**9}"


async def _observers_on_both(relays: Relays, connect: Connector) -> list[Client]:
    return [await connect(relay, user_type) for relay in relays.both for user_type in OBSERVERS]


async def _factories_on_both(relays: Relays, connect: Connector) -> list[Client]:
    return [await connect(relay, UserType.FACTORY) for relay in relays.both]


# -- the delivery table ---------------------------------------------------------------


@pytest.mark.parametrize("sender_type", CONTROLLERS)
async def test_command_reaches_every_factory_on_both_replicas(
    relays: Relays, connect: Connector, sender_type: UserType
) -> None:
    factories = await _factories_on_both(relays, connect)
    sender = await connect(relays.a, sender_type)

    await sender.command({"speed": 3})

    for factory in factories:
        frame = await factory.recv_dispatch()
        assert frame["op"] == Op.COMMAND
        assert frame["d"]["payload"] == {"speed": 3}
        assert frame["d"]["target"] is None


@pytest.mark.parametrize("sender_type", CONTROLLERS)
async def test_command_does_not_reach_admins_operators_or_viewers(
    relays: Relays, connect: Connector, sender_type: UserType
) -> None:
    observers = await _observers_on_both(relays, connect)
    sender = await connect(relays.a, sender_type)

    await sender.command({"speed": 3})

    await connect.assert_nothing_relayed(relays.a, *observers, sender)


async def test_targeted_command_reaches_only_that_factorys_sessions_on_both_replicas(
    relays: Relays, connect: Connector
) -> None:
    name = _unique("press")
    targets = [await connect(relay, UserType.FACTORY, username=name) for relay in relays.both]
    others = await _factories_on_both(relays, connect)
    operator = await connect(relays.a, UserType.OPERATOR)

    await operator.command("stop", target=name)

    for target in targets:
        frame = await target.recv_dispatch()
        assert (frame["op"], frame["d"]["payload"], frame["d"]["target"]) == (4, "stop", name)
    await connect.assert_nothing_relayed(relays.a, *others)


async def test_target_matches_the_factory_username_case_insensitively(
    relays: Relays, connect: Connector
) -> None:
    name = _unique("Press")
    target = await connect(relays.b, UserType.FACTORY, username=name)
    operator = await connect(relays.a, UserType.ADMIN)

    await operator.command("stop", target=name.upper())
    await operator.command("go", target=name.lower())

    assert (await target.recv_dispatch())["d"]["payload"] == "stop"
    assert (await target.recv_dispatch())["d"]["payload"] == "go"


async def test_command_to_a_factory_with_no_session_is_dropped_quietly(
    relays: Relays, connect: Connector
) -> None:
    operator = await connect(relays.a, UserType.OPERATOR)

    await operator.command("stop", target=_unique("nobody"))

    await operator.send({"op": Op.HEARTBEAT, "d": None})
    assert await operator.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}


async def test_factory_status_reaches_every_admin_operator_and_viewer_on_both_replicas(
    relays: Relays, connect: Connector
) -> None:
    observers = await _observers_on_both(relays, connect)
    factory = await connect(relays.a, UserType.FACTORY)

    await factory.status({"temperature": 71.5})

    for observer in observers:
        frame = await observer.recv_dispatch()
        assert frame["op"] == Op.STATUS
        assert frame["d"]["payload"] == {"temperature": 71.5}


async def test_factory_status_does_not_reach_other_factories(
    relays: Relays, connect: Connector
) -> None:
    others = await _factories_on_both(relays, connect)
    factory = await connect(relays.a, UserType.FACTORY)

    await factory.status({"temperature": 71.5})

    await connect.assert_nothing_relayed(relays.a, *others, factory)


async def test_factory_event_reaches_every_observer_and_no_factory(
    relays: Relays, connect: Connector
) -> None:
    observers = await _observers_on_both(relays, connect)
    others = await _factories_on_both(relays, connect)
    factory = await connect(relays.a, UserType.FACTORY)

    await factory.event("ALARM", {"level": "high"})

    for observer in observers:
        frame = await observer.recv_dispatch()
        assert (frame["op"], frame["t"], frame["d"]["payload"]) == (6, "ALARM", {"level": "high"})
    await connect.assert_nothing_relayed(relays.a, *others, factory)


@pytest.mark.parametrize("sender_type", CONTROLLERS)
async def test_controller_event_reaches_every_factory_and_no_observer(
    relays: Relays, connect: Connector, sender_type: UserType
) -> None:
    factories = await _factories_on_both(relays, connect)
    observers = await _observers_on_both(relays, connect)
    sender = await connect(relays.a, sender_type)

    await sender.event("RECIPE_CHANGED", {"recipe": 12})

    for factory in factories:
        frame = await factory.recv_dispatch()
        assert (frame["op"], frame["t"], frame["d"]["payload"]) == (
            6,
            "RECIPE_CHANGED",
            {"recipe": 12},
        )
    await connect.assert_nothing_relayed(relays.a, *observers, sender)


async def test_targeted_controller_event_reaches_only_that_factory(
    relays: Relays, connect: Connector
) -> None:
    name = _unique("oven")
    target = await connect(relays.b, UserType.FACTORY, username=name)
    others = await _factories_on_both(relays, connect)
    admin = await connect(relays.a, UserType.ADMIN)

    await admin.event("RECIPE_CHANGED", 12, target=name)

    frame = await target.recv_dispatch()
    assert (frame["t"], frame["d"]["target"], frame["d"]["payload"]) == ("RECIPE_CHANGED", name, 12)
    await connect.assert_nothing_relayed(relays.a, *others)


DEFAULT_COMMAND_TTL_MS = 30_000


# -- stamps ---------------------------------------------------------------------------


async def test_delivered_command_has_exactly_the_documented_shape(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator_user = tokens.user(UserType.OPERATOR)
    operator = await connect(relays.a, operator_user)
    before = int(time.time() * 1000)

    await operator.command({"speed": 3}, id="cmd-1")

    frame = await factory.recv_dispatch()
    after = int(time.time() * 1000)
    assert factory.ready is not None
    head = factory.ready["d"]["cursors"]["all"]
    assert frame == {
        "op": Op.COMMAND,
        "s": 2,
        "d": {
            "id": "cmd-1",
            "from": operator_user.stamp,
            "target": None,
            "payload": {"speed": 3},
            "ts": frame["d"]["ts"],
            "expires_at": frame["d"]["ts"] + DEFAULT_COMMAND_TTL_MS,
            "cursor": {"stream": "all", "epoch": head["epoch"], "offset": head["offset"] + 1},
        },
    }
    assert before <= frame["d"]["ts"] <= after


async def test_delivered_event_carries_t(relays: Relays, connect: Connector) -> None:
    viewer = await connect(relays.b, UserType.VIEWER)
    factory = await connect(relays.a, UserType.FACTORY)

    await factory.event("DOOR_OPEN", None, id="e.1")

    frame = await viewer.recv_dispatch()
    assert frame["t"] == "DOOR_OPEN"
    assert frame["d"]["id"] == "e.1"
    assert frame["d"]["payload"] is None


async def test_the_server_assigns_a_unique_valid_id_when_the_client_gives_none(
    relays: Relays, connect: Connector
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)

    await operator.command(1)
    await operator.command(2)

    ids = [(await factory.recv_dispatch())["d"]["id"] for _ in range(2)]
    assert ids[0] != ids[1]
    assert all(re.fullmatch(MESSAGE_ID_PATTERN, value) for value in ids)


@pytest.mark.parametrize("message_id", ["a", "A-z_0.9:x", "x" * 64])
async def test_a_valid_client_id_is_kept(
    relays: Relays, connect: Connector, message_id: str
) -> None:
    viewer = await connect(relays.b, UserType.VIEWER)
    factory = await connect(relays.a, UserType.FACTORY)

    await factory.status("ok", id=message_id)

    assert (await viewer.recv_dispatch())["d"]["id"] == message_id


async def test_forged_from_ts_and_s_are_replaced_by_the_servers_stamps(
    relays: Relays, connect: Connector, tokens: Tokens
) -> None:
    operator = await connect(relays.b, UserType.OPERATOR)
    factory_user = tokens.user(UserType.FACTORY)
    factory = await connect(relays.a, factory_user)
    forged_from = {"id": "1", "username": "admin", "type": "admin"}

    await factory.send(
        {
            "op": Op.STATUS,
            "s": 999,
            "d": {"payload": "ok", "from": forged_from, "ts": 1, "id": "st-1"},
        }
    )

    frame = await operator.recv_dispatch()
    assert frame["s"] == 2 + len(operator.presence)  # after READY and PRESENCE_UPDATEs
    assert frame["d"]["from"] == factory_user.stamp
    assert frame["d"]["ts"] > 1_600_000_000_000
    assert frame["d"]["id"] == "st-1"


PAYLOADS: list[Any] = [
    None,
    0,
    -1.5,
    2**63 - 1,
    "",
    "žluťoučký kůň 🐎 \u0000",
    [1, [2, [3]]],
    {"nested": {"list": [True, False, None], "empty": {}}},
    {"from": "x", "ts": 1, "s": 2},
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=[f"payload{i}" for i in range(len(PAYLOADS))])
async def test_payload_arrives_exactly_as_sent(
    relays: Relays, connect: Connector, payload: Any
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)

    await operator.command(payload)

    assert (await factory.recv_dispatch())["d"]["payload"] == payload


# -- s and order ----------------------------------------------------------------------


async def test_s_counts_dispatches_from_1_with_ready(relays: Relays, connect: Connector) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)
    admin = await connect(relays.a, UserType.ADMIN)
    assert factory.ready is not None
    assert factory.ready["s"] == 1

    await operator.command(1)
    assert (await factory.recv_dispatch())["s"] == 2
    await factory.send({"op": Op.HEARTBEAT, "d": 2})
    assert await factory.recv() == {"op": Op.HEARTBEAT_ACK, "d": None}
    await admin.event("PING", 2)
    assert (await factory.recv_dispatch())["s"] == 3
    await operator.command(3)
    assert (await factory.recv_dispatch())["s"] == 4


async def test_s_is_counted_per_session(relays: Relays, connect: Connector) -> None:
    early = await connect(relays.b, UserType.VIEWER)
    factory = await connect(relays.a, UserType.FACTORY)
    await factory.status(1)
    # PRESENCE_UPDATE events (this factory's, other tests' factories') are dispatches too.
    assert (await early.recv_dispatch())["s"] == 2 + len(early.presence)
    late = await connect(relays.b, UserType.VIEWER)

    await factory.status(2)

    assert (await early.recv_dispatch())["s"] == 3 + len(early.presence)
    assert (await late.recv_dispatch())["s"] == 2 + len(late.presence)


async def test_one_senders_commands_arrive_in_order_on_the_other_replica(
    relays: Relays, connect: Connector
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)

    for number in range(200):
        await operator.command(number, id=f"n{number}")

    frames = [await factory.recv_dispatch() for _ in range(200)]
    assert [frame["d"]["payload"] for frame in frames] == list(range(200))
    assert [frame["s"] for frame in frames] == list(range(2, 202))


async def test_a_flood_from_several_senders_loses_nothing_and_keeps_each_senders_order(
    relays: Relays, connect: Connector
) -> None:
    count = 250
    senders = [
        await connect(relay, user_type) for relay in relays.both for user_type in CONTROLLERS
    ]
    factories = await _factories_on_both(relays, connect)

    async def send_all(index: int, sender: Client) -> None:
        for number in range(count):
            await sender.command([index, number])

    async def receive_all(factory: Client) -> list[list[int]]:
        return [(await factory.recv_dispatch(10))["d"]["payload"] for _ in range(count * 4)]

    receiving = [asyncio.create_task(receive_all(factory)) for factory in factories]
    await asyncio.gather(*(send_all(index, sender) for index, sender in enumerate(senders)))
    received = await asyncio.gather(*receiving)

    for payloads in received:
        for index in range(len(senders)):
            assert [n for i, n in payloads if i == index] == list(range(count))
    for factory in factories:
        await factory.expect_nothing(0.1)
