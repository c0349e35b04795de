"""What became of each command the console sent: sent → acknowledged / rejected / expired /
delivery failed, and the warning before sending to an offline factory. Against a stand-in
relay (tests/console/stand_in.py) that plays the factory's answers."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pytest

from tests.console.conftest import FACTORY, OPERATOR, Console, Stack
from tests.console.pages import Page, expect, factory_row, log_in, send_command
from tests.console.stand_in import StandInRelay, entry, now_ms

if TYPE_CHECKING:
    from playwright.sync_api import Locator

pytestmark = pytest.mark.redis

PRESS = "press-offline"
"""A factory the snapshot lists as offline."""
MINUTE_MS = 60_000
DEFAULT_TTL_MS = 30_000
SHORT_TTL_SECONDS = 2
ANSWER_GRACE_SECONDS = 1
"""The console declares "expired" this long after `expires_at`."""


def open_console(console: Console, stack: Stack) -> StandInRelay:
    start = now_ms()
    relay = StandInRelay(
        console.page,
        [
            entry(FACTORY, online=True, since=start - MINUTE_MS, status={"state": "idle"}),
            entry(PRESS, online=False, since=start - 3 * MINUTE_MS, status={"state": "idle"}),
        ],
    )
    log_in(console.page, stack, OPERATOR)
    return relay


def tracked(page: Page, command_id: str) -> Locator:
    return page.locator(f'#commands li[data-command-id="{command_id}"]')


def state_of(page: Page, command_id: str) -> Locator:
    return page.locator(f'#commands li[data-command-id="{command_id}"] [data-key="state"]')


def test_a_command_carries_its_id_and_ttl_and_shows_when_it_expires(
    console: Console, stack: Stack
) -> None:
    page = console.page
    relay = open_console(console, stack)
    command_id = send_command(page, "start", rpm=900)
    expect(tracked(page, command_id)).to_have_attribute("data-state", "sent")
    expect(state_of(page, command_id)).to_have_text("Sent, waiting for the answer")
    expiry = tracked(page, command_id).locator('[data-key="expiry"]')
    expect(expiry).to_have_text(
        re.compile(r"^sent [\d:]{8}, expires after 30 s at [\d:]{8} \(in (30|29) s\)$")
    )
    sent = relay.wait_for_commands(page, 1)
    assert sent == [
        {
            "payload": {"action": "start", "rpm": 900},
            "target": FACTORY,
            "id": command_id,
            "ttl_ms": DEFAULT_TTL_MS,
        }
    ]


def test_an_acknowledged_command_is_shown_as_acknowledged(console: Console, stack: Stack) -> None:
    page = console.page
    relay = open_console(console, stack)
    command_id = send_command(page, "stop")
    relay.factory_event(FACTORY, "COMMAND_ACK", {"command_id": command_id, "result": {}})
    expect(tracked(page, command_id)).to_have_attribute("data-state", "acknowledged")
    expect(state_of(page, command_id)).to_have_text(f"Acknowledged by {FACTORY}")
    expect(page.locator("#command-outcome")).to_have_attribute("data-kind", "ack")
    expect(tracked(page, command_id).locator('[data-key="expiry"]')).not_to_contain_text("(in ")


def test_a_rejected_command_shows_the_reason(console: Console, stack: Stack) -> None:
    page = console.page
    relay = open_console(console, stack)
    command_id = send_command(page, "stop")
    relay.factory_event(
        FACTORY, "COMMAND_REJECTED", {"command_id": command_id, "reason": "expired"}
    )
    expect(tracked(page, command_id)).to_have_attribute("data-state", "rejected")
    expect(state_of(page, command_id)).to_have_text(f"Rejected by {FACTORY}: expired")
    expect(page.locator("#command-outcome")).to_contain_text(f"{FACTORY} rejected stop")


def test_a_command_nobody_answers_expires_at_its_expires_at(console: Console, stack: Stack) -> None:
    page = console.page
    open_console(console, stack)
    page.fill("#command-ttl", str(SHORT_TTL_SECONDS))
    sent_at = time.time()
    command_id = send_command(page, "stop")
    expect(tracked(page, command_id)).to_contain_text(f"expires after {SHORT_TTL_SECONDS} s")
    expect(tracked(page, command_id)).to_have_attribute("data-state", "expired")
    assert time.time() - sent_at >= SHORT_TTL_SECONDS  # not before its expires_at
    expect(state_of(page, command_id)).to_have_text(
        re.compile(r"^Expired: no answer by \d{1,2}:\d{2}:\d{2}$")
    )
    line = page.locator(f'#event-log li[data-kind="expired"][data-command-id="{command_id}"]')
    expect(line).to_contain_text(f"expired: no answer from {FACTORY} by ")
    expect(page.locator("#command-outcome")).to_have_attribute("data-kind", "expired")
    console.screenshot("32-command-expired")


def test_an_answer_after_the_expiry_replaces_expired(console: Console, stack: Stack) -> None:
    """The factory acted just before `expires_at`; its answer arrived after the console gave up."""
    page = console.page
    relay = open_console(console, stack)
    page.fill("#command-ttl", "1")
    command_id = send_command(page, "stop")
    expect(tracked(page, command_id)).to_have_attribute("data-state", "expired")
    relay.factory_event(FACTORY, "COMMAND_ACK", {"command_id": command_id})
    expect(tracked(page, command_id)).to_have_attribute("data-state", "acknowledged")


@pytest.mark.parametrize(
    ("reason", "meaning"),
    [
        ("unreachable", "executed nowhere"),
        ("local_only", "reached only factories on this relay replica, if any"),
        ("publish_failed", "it may not have reached the factory"),
    ],
)
def test_delivery_failed_ends_the_command_and_says_what_the_reason_means(
    console: Console, stack: Stack, reason: str, meaning: str
) -> None:
    page = console.page
    relay = open_console(console, stack)
    command_id = send_command(page, "stop")
    relay.send(6, {"id": command_id, "reason": reason}, "DELIVERY_FAILED")
    expect(tracked(page, command_id)).to_have_attribute("data-state", "delivery-failed")
    expect(state_of(page, command_id)).to_have_text(f"Delivery failed ({reason}): {meaning}")


def test_an_offline_target_is_warned_about_before_sending(console: Console, stack: Stack) -> None:
    page = console.page
    relay = open_console(console, stack)
    warning = page.locator("#command-warning")
    page.select_option("#command-target", FACTORY)
    expect(warning).to_be_hidden()
    expect(page.locator("#command-send")).to_have_text("Send")
    page.select_option("#command-target", PRESS)
    expect(warning).to_be_visible()
    expect(warning).to_contain_text(f"{PRESS} is offline since ")
    expect(warning).to_contain_text(
        f"The relay keeps the command for 30 s and delivers it if {PRESS} comes back by then"
    )
    expect(page.locator("#command-send")).to_have_text("Send anyway")
    page.fill("#command-ttl", "90")
    expect(warning).to_contain_text("for 1 min and delivers it")
    console.screenshot("33-offline-target-warning", full_page=False)

    page.select_option("#command-target", "")
    expect(warning).to_have_text(re.compile(r"^\d+ of \d+ factories are offline\."))

    page.select_option("#command-target", FACTORY)
    relay.presence(FACTORY, online=False, since=now_ms())
    expect(warning).to_contain_text(f"{FACTORY} is offline")  # it went offline meanwhile


def test_a_command_to_an_offline_factory_can_still_be_sent(console: Console, stack: Stack) -> None:
    page = console.page
    relay = open_console(console, stack)
    command_id = send_command(page, "stop", target=PRESS)
    expect(state_of(page, command_id)).to_have_text(
        re.compile(
            rf"^Waiting: {PRESS} was offline when sent; it gets the command if it is back by "
        )
    )
    expect(page.locator("#command-outcome")).to_contain_text(f"{PRESS} is offline")
    assert [command["target"] for command in relay.wait_for_commands(page, 1)] == [PRESS]
    relay.presence(PRESS, online=True, since=now_ms())
    relay.factory_event(PRESS, "COMMAND_ACK", {"command_id": command_id})
    expect(tracked(page, command_id)).to_have_attribute("data-state", "acknowledged")


def test_answers_missed_during_a_reconnect_are_said_so(console: Console, stack: Stack) -> None:
    page = console.page
    relay = open_console(console, stack)
    page.fill("#command-ttl", str(SHORT_TTL_SECONDS))
    command_id = send_command(page, "stop")
    relay.restart()
    expect(page.locator("#connection")).to_have_attribute("data-sessions", "2")
    expect(state_of(page, command_id)).to_contain_text(
        "the console was reconnecting meanwhile: an answer may have been missed"
    )


def test_a_broadcast_collects_the_answers_of_every_factory(console: Console, stack: Stack) -> None:
    page = console.page
    relay = open_console(console, stack)
    command_id = send_command(page, "stop", target="")
    expect(state_of(page, command_id)).to_have_text("Sent to every factory, waiting for answers")
    relay.factory_event(FACTORY, "COMMAND_ACK", {"command_id": command_id})
    relay.factory_event(PRESS, "COMMAND_REJECTED", {"command_id": command_id, "reason": "busy"})
    expect(state_of(page, command_id)).to_have_text(
        f"Acknowledged by {FACTORY}; Rejected by {PRESS}: busy"
    )
    expect(tracked(page, command_id)).to_have_attribute("data-state", "acknowledged")


def test_an_expiry_out_of_range_is_not_sent(console: Console, stack: Stack) -> None:
    page = console.page
    relay = open_console(console, stack)
    for seconds in ("0", "3601", "1.5"):
        page.fill("#command-ttl", seconds)
        page.click("#command-send")
        assert page.eval_on_selector("#command-ttl", "input => input.validity.valid") is False
    page.fill("#command-ttl", "3600")
    command_id = send_command(page, "stop")
    sent = relay.wait_for_commands(page, 1)
    assert [(command["id"], command["ttl_ms"]) for command in sent] == [(command_id, 3_600_000)]


def test_a_viewer_is_not_warned_about_what_it_cannot_send(console: Console, stack: Stack) -> None:
    viewer = "viewer-9"
    stack.create_user(viewer, "viewer")
    page = console.page
    start = now_ms()
    StandInRelay(
        page,
        [entry(PRESS, online=False, since=start - MINUTE_MS)],
        user={"id": "9", "username": viewer, "type": "viewer"},
    )
    log_in(page, stack, viewer)
    expect(factory_row(page, PRESS)).to_have_attribute("data-presence", "offline")
    page.select_option("#command-target", PRESS)
    expect(page.locator("#command-send")).to_be_disabled()
    expect(page.locator("#command-warning")).to_be_hidden()
