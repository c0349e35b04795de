"""Operating a replica: health, readiness, metrics, settings errors, drain, Redis loss."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from shared.identity import UserType
from shared.protocol import CloseCode
from tests.processes import console_script, run_to_exit
from tests.redis_server import RedisServer
from tests.relay.conftest import StartRelay
from tests.relay.harness import (
    JWT_SECRET,
    Connector,
    Relays,
    free_port,
    http_get,
    metric_value,
    wait_for_status,
)

SHUTDOWN_TIMEOUT_SECONDS = 3


# -- HTTP endpoints -------------------------------------------------------------------


async def test_healthz_answers_200(relays: Relays) -> None:
    response = await http_get(relays.a, "/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_answers_200_when_the_broker_is_up(relays: Relays) -> None:
    for relay in relays.both:
        response = await http_get(relay, "/readyz")
        assert response.status_code == 200


async def test_an_unknown_path_answers_404_json(relays: Relays) -> None:
    response = await http_get(relays.a, "/nope")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "not found"}


async def test_metrics_exposes_connections_frames_closes_and_latency(
    relays: Relays, connect: Connector
) -> None:
    factory = await connect(relays.b, UserType.FACTORY)
    operator = await connect(relays.a, UserType.OPERATOR)
    await operator.command(1)
    await factory.recv_dispatch()
    refused = await connect.raw(relays.a)
    await refused.send({"op": 42})
    await refused.expect_close(CloseCode.UNKNOWN_OPCODE)

    text = (await http_get(relays.b, "/metrics")).text

    for family in (
        "relay_connections",
        "relay_frames_total",
        "relay_closes_total",
        "relay_delivery_latency_seconds",
    ):
        assert re.search(rf"^# TYPE {family.removesuffix('_total')}(_total)? ", text, re.M), family
    assert await metric_value(relays.b, 'relay_connections{type="factory"}') >= 1
    assert await metric_value(relays.b, 'relay_frames_total{direction="out",op="4"}') >= 1
    assert await metric_value(relays.b, "relay_delivery_latency_seconds_count") >= 1
    labels = set(re.findall(r"[{,](\w+)=", text))
    assert not labels & {"user", "user_id", "username", "session", "session_id"}, labels


async def test_frames_are_counted_by_op_and_direction(relays: Relays, connect: Connector) -> None:
    viewer = await connect(relays.a, UserType.VIEWER)
    heartbeats_in = 'relay_frames_total{direction="in",op="1"}'
    acks_out = 'relay_frames_total{direction="out",op="2"}'
    before = (await metric_value(relays.a, heartbeats_in), await metric_value(relays.a, acks_out))

    for sequence in range(3):
        await viewer.send({"op": 1, "d": sequence})
        assert (await viewer.recv())["op"] == 2

    after = (await metric_value(relays.a, heartbeats_in), await metric_value(relays.a, acks_out))
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)


async def test_a_server_close_is_counted_by_code(relays: Relays, connect: Connector) -> None:
    before = await metric_value(relays.a, 'relay_closes_total{code="4001"}')
    client = await connect.raw(relays.a)

    await client.send({"op": 42})
    await client.expect_close(CloseCode.UNKNOWN_OPCODE)

    deadline = asyncio.get_running_loop().time() + 2
    while await metric_value(relays.a, 'relay_closes_total{code="4001"}') != before + 1:
        assert asyncio.get_running_loop().time() < deadline, "close not counted"
        await asyncio.sleep(0.05)


# -- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"JWT_SECRET": "too-short"}, "JWT_SECRET"),
        ({}, "JWT_SECRET"),
        ({"JWT_SECRET": JWT_SECRET, "PORT": "not-a-port"}, "PORT"),
        ({"JWT_SECRET": JWT_SECRET, "CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
        ({"JWT_SECRET": JWT_SECRET, "HEARTBEAT_INTERVAL_MS": "0"}, "HEARTBEAT_INTERVAL_MS"),
        ({"JWT_SECRET": JWT_SECRET, "REDIS_URL": "http://x"}, "REDIS_URL"),
    ],
    ids=["short-secret", "no-secret", "bad-port", "wildcard-origin", "zero-heartbeat", "bad-redis"],
)
def test_a_bad_setting_stops_the_relay_with_one_line_naming_it(
    tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    result = run_to_exit(
        [console_script("relay-service")], tmp_path, {"PORT": str(free_port()), **settings}
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    if "JWT_SECRET" in settings:
        assert JWT_SECRET not in result.stderr


# -- drain (1012) ---------------------------------------------------------------------


async def test_sigterm_closes_every_session_with_1012_and_exits_0(
    start_relay: StartRelay, connect: Connector
) -> None:
    relay = start_relay({"SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS)})
    sessions = [await connect(relay, user_type) for user_type in UserType]
    sessions.append(await connect.raw(relay))
    loop = asyncio.get_running_loop()
    start = loop.time()

    relay.terminate()

    await asyncio.gather(*(session.expect_close(CloseCode.SERVICE_RESTART) for session in sessions))
    code = await asyncio.to_thread(relay.wait, SHUTDOWN_TIMEOUT_SECONDS + 5)
    assert code == 0
    assert loop.time() - start < SHUTDOWN_TIMEOUT_SECONDS + 2


async def test_sigterm_with_no_sessions_exits_0(start_relay: StartRelay) -> None:
    relay = start_relay()

    assert await asyncio.to_thread(relay.stop) == 0


# -- Redis loss -----------------------------------------------------------------------


async def test_a_redis_restart_keeps_sockets_open_and_delivery_resumes_on_both_replicas(
    private_redis: RedisServer, start_relay: StartRelay, connect: Connector
) -> None:
    settings = {"BROKER_RECONNECT_MAX_SECONDS": "0.5"}
    a, b = (
        start_relay(settings, redis_url=private_redis.url, redis_prefix="restart", wait=False)
        for _ in range(2)
    )
    a.wait_ready()
    b.wait_ready()
    factories = [await connect(relay, UserType.FACTORY) for relay in (a, b)]
    viewer = await connect(b, UserType.VIEWER)
    operator = await connect(a, UserType.OPERATOR)
    factory_sender = await connect(a, UserType.FACTORY)
    await operator.command("before")
    for factory in factories:
        assert (await factory.recv_dispatch())["d"]["payload"] == "before"
    reconnects = [await metric_value(relay, "relay_broker_reconnects_total") for relay in (a, b)]

    private_redis.kill()
    for relay in (a, b):
        await wait_for_status(relay, "/readyz", 503)
    for client in [*factories, viewer, operator]:  # sockets stay open and served
        await client.send({"op": 1, "d": None})
        assert await client.recv() == {"op": 2, "d": None}
    await asyncio.to_thread(private_redis.start)
    for relay in (a, b):
        await wait_for_status(relay, "/readyz", 200)

    await operator.command("after")
    await factory_sender.status("after")
    for factory in factories:
        assert (await factory.recv_dispatch())["d"]["payload"] == "after"
    assert (await viewer.recv_dispatch())["d"]["payload"] == "after"
    for relay, before in zip((a, b), reconnects, strict=True):
        assert await metric_value(relay, "relay_broker_reconnects_total") > before
