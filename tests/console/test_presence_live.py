"""Presence and command outcomes end to end: the real relay, a real factory-bridge that
stops and starts, the console in headless Chromium.

A factory goes offline `PRESENCE_GRACE_MS` (5 s by default) after its last session
closes, so the waits below allow for the grace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.console.conftest import OPERATOR, Console, Stack, bridge_process
from tests.console.pages import Page, cell, expect, factory_row, log_in, send_command
from tests.processes import ServiceProcess

if TYPE_CHECKING:
    from playwright.sync_api import Locator

pytestmark = pytest.mark.redis

LATHE = "lathe-9"
"""A factory of its own, so stopping it leaves the stack's bridge alone."""
PRESENCE_TIMEOUT_MS = 30_000
"""Bounded wait for a presence change: the grace (5 s) and the bridge's restart, with room."""
SHORT_TTL_SECONDS = 2
LONG_TTL_SECONDS = 120
"""Long enough for the bridge to come back and resume."""
STATUSES_AFTER_RETURN = 3


@pytest.fixture(scope="module")
def lathe(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    stack.create_user(LATHE, "factory")
    bridge = bridge_process(tmp_path_factory.mktemp("lathe"), stack.relay, stack.auth, LATHE)
    bridge.start()
    try:
        yield bridge
    finally:
        bridge.kill()


@pytest.fixture
def online_lathe(lathe: ServiceProcess) -> ServiceProcess:
    """The lathe's bridge, running (a test may have stopped it)."""
    if not lathe.running:
        lathe.start()
    return lathe


def presence_log(page: Page) -> Locator:
    return page.locator(f'#event-log li[data-kind="presence"][data-factory="{LATHE}"]')


def wait_until_offline(page: Page, bridge: ServiceProcess) -> None:
    expect(factory_row(page, LATHE)).to_have_attribute("data-presence", "online")
    assert bridge.stop() == 0, bridge.logs()
    expect(factory_row(page, LATHE)).to_have_attribute(
        "data-presence", "offline", timeout=PRESENCE_TIMEOUT_MS
    )


def wait_for_statuses(page: Page, count: int) -> None:
    """`count` more statuses of the lathe (its messages arrive in the order it sent them)."""
    seen = int(factory_row(page, LATHE).get_attribute("data-updates") or 0)
    page.wait_for_function(
        f"""() => Number(document.querySelector('tr[data-factory="{LATHE}"]')
                 .dataset.updates) >= {seen + count}""",
        timeout=PRESENCE_TIMEOUT_MS,
    )


def test_a_factory_going_offline_and_coming_back_is_shown(
    console: Console, stack: Stack, online_lathe: ServiceProcess
) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    expect(cell(page, "presence", LATHE)).to_have_text("Online")
    expect(cell(page, "state", LATHE)).to_be_visible()
    lines = presence_log(page).count()  # "came online" if it connected after this READY

    wait_until_offline(page, online_lathe)
    expect(cell(page, "presence", LATHE)).to_have_text("Offline")
    expect(factory_row(page, LATHE)).to_have_attribute("data-stale", "true")
    expect(factory_row(page, LATHE).locator(".stale-tag")).to_be_visible()
    expect(cell(page, "state", LATHE)).to_be_visible()  # the last status stays, marked stale
    expect(presence_log(page)).to_have_count(lines + 1)
    expect(presence_log(page).first).to_contain_text(f"{LATHE} went offline")
    console.screenshot("40-live-factory-offline")

    online_lathe.start()
    expect(factory_row(page, LATHE)).to_have_attribute(
        "data-presence", "online", timeout=PRESENCE_TIMEOUT_MS
    )
    expect(factory_row(page, LATHE)).to_have_attribute("data-stale", "false")
    expect(presence_log(page).first).to_contain_text(f"{LATHE} is online again")
    expect(presence_log(page)).to_have_count(lines + 2)
    expect(cell(page, "since", LATHE)).to_have_text(re.compile(r"^for \d+ s$"))


def test_a_reload_shows_an_offline_factory_from_the_snapshot(
    console: Console, stack: Stack, online_lathe: ServiceProcess
) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    wait_until_offline(page, online_lathe)
    page.reload()  # a new relay session: READY's snapshot says it
    expect(page.locator("#connection")).to_have_attribute("data-state", "ready")
    expect(factory_row(page, LATHE)).to_have_attribute("data-presence", "offline")
    expect(cell(page, "since", LATHE)).to_have_text(re.compile(r"^for \d+ s$"))
    expect(factory_row(page, LATHE)).to_have_attribute("data-stale", "true")  # its last status


def test_a_command_to_an_offline_factory_ends_as_expired(
    console: Console, stack: Stack, online_lathe: ServiceProcess
) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    wait_until_offline(page, online_lathe)
    page.select_option("#command-target", LATHE)
    expect(page.locator("#command-warning")).to_contain_text(f"{LATHE} is offline")
    expect(page.locator("#command-send")).to_have_text("Send anyway")
    page.fill("#command-ttl", str(SHORT_TTL_SECONDS))
    command_id = send_command(page, "stop", target=LATHE)
    command = page.locator(f'#commands li[data-command-id="{command_id}"]')
    expect(command).to_have_attribute("data-state", "sent")
    expect(command).to_have_attribute("data-state", "expired")
    expect(command.locator('[data-key="state"]')).to_contain_text("Expired: no answer by ")
    console.screenshot("41-live-command-expired")

    online_lathe.start()  # back after the expiry: the command is not delivered
    expect(factory_row(page, LATHE)).to_have_attribute(
        "data-presence", "online", timeout=PRESENCE_TIMEOUT_MS
    )
    wait_for_statuses(page, STATUSES_AFTER_RETURN)
    expect(command).to_have_attribute("data-state", "expired")
    answers = page.locator(f'#event-log li[data-command-id="{command_id}"][data-factory="{LATHE}"]')
    expect(answers).to_have_count(0)


def test_a_command_to_an_offline_factory_is_acknowledged_when_it_comes_back_in_time(
    console: Console, stack: Stack, online_lathe: ServiceProcess
) -> None:
    """The relay keeps the command for its `ttl_ms`; the bridge resumes and executes it."""
    page = console.page
    log_in(page, stack, OPERATOR)
    wait_until_offline(page, online_lathe)
    page.fill("#command-ttl", str(LONG_TTL_SECONDS))
    command_id = send_command(page, "start", rpm=700, target=LATHE)
    command = page.locator(f'#commands li[data-command-id="{command_id}"]')
    expect(command.locator('[data-key="state"]')).to_contain_text(f"{LATHE} was offline when sent")
    online_lathe.start()
    expect(command).to_have_attribute("data-state", "acknowledged", timeout=PRESENCE_TIMEOUT_MS)
    expect(cell(page, "target_rpm", LATHE)).to_have_text("700")
    console.screenshot("42-live-command-delivered-on-return")
