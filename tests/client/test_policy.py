"""The client follows the SPEC's close-code table."""

from __future__ import annotations

import pytest

from relay_client import Reconnect, RelayClient, reconnect_policy


@pytest.mark.parametrize("code", [4001, 4002, 4005, 4010, 1009])
def test_codes_that_mean_fix_the_client_stop_reconnecting(code: int) -> None:
    assert reconnect_policy(code) is Reconnect.NEVER


@pytest.mark.parametrize("code", [4000, 4003, 4008, 4009, 4013])
def test_transient_codes_reconnect_with_backoff(code: int) -> None:
    assert reconnect_policy(code) is Reconnect.WITH_BACKOFF


def test_authentication_failed_gets_a_new_token() -> None:
    assert reconnect_policy(4004) is Reconnect.WITH_NEW_TOKEN


def test_replica_shutting_down_reconnects_at_once() -> None:
    assert reconnect_policy(1012) is Reconnect.AT_ONCE


@pytest.mark.parametrize("code", [None, 1006, 1011, 4999])
def test_network_failures_and_unknown_codes_reconnect_with_backoff(code: int | None) -> None:
    assert reconnect_policy(code) is Reconnect.WITH_BACKOFF


@pytest.mark.parametrize("name", ["DELIVERY_FAILED", "PRESENCE_UPDATE", "REFRESHED"])
def test_the_servers_own_events_are_not_yielded_as_messages(name: str) -> None:
    client = RelayClient("ws://127.0.0.1:1/ws", token="unused")
    frame = {"op": 6, "t": name, "s": 2, "d": {"id": "cmd-1", "reason": "unreachable"}}

    client._on_frame(frame)

    assert client._messages.empty()
