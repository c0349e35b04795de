"""The console on a phone (375 x 812) and on a wall screen (1920 x 1080), with screenshots
under artifacts/console/ to look at."""

from __future__ import annotations

import pytest

from tests.console.conftest import ADMIN, FACTORY, OPERATOR, PHONE, WALL_SCREEN, Console, Stack
from tests.console.pages import Page, answer, expect, factory_row, log_in, send_command
from tests.console.stand_in import StandInRelay, entry, now_ms

pytestmark = pytest.mark.redis


def top(page: Page, selector: str) -> float:
    found = page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not displayed"
    return found["y"]


def page_width(page: Page) -> int:
    width: int = page.evaluate("document.documentElement.scrollWidth")
    return width


def test_phone_page_does_not_scroll_sideways(console: Console, stack: Stack) -> None:
    console.resize(PHONE)
    page = console.page
    log_in(page, stack, ADMIN)  # every panel, the users too
    expect(factory_row(page)).to_be_visible()
    expect(page.locator(f'#users tr[data-user="{ADMIN}"]')).to_be_visible()
    assert page_width(page) <= PHONE[0]
    console.screenshot("phone-375x812-admin-full")


def test_phone_factory_table_scrolls_with_a_hint(console: Console, stack: Stack) -> None:
    console.resize(PHONE)
    page = console.page
    log_in(page, stack, OPERATOR)
    expect(factory_row(page)).to_be_visible()
    expect(page.locator("#factories-scroll-hint")).to_be_visible()
    assert page.evaluate(
        "(() => { const b = document.getElementById('factories-scroll');"
        " return b.scrollWidth > b.clientWidth; })()"
    )
    expect(factory_row(page).locator("th")).to_be_in_viewport()  # the name stays in view
    console.screenshot("phone-375x812-top", full_page=False)


def test_phone_shows_the_commands_outcome_beside_send(console: Console, stack: Stack) -> None:
    console.resize(PHONE)
    page = console.page
    log_in(page, stack, OPERATOR)
    expect(factory_row(page)).to_be_visible()
    command_id = send_command(page, "start", rpm=1800)
    expect(answer(page, command_id)).to_have_attribute("data-event", "COMMAND_ACK")
    outcome = page.locator("#command-outcome")
    expect(outcome).to_contain_text("acknowledged start at 1800 rpm")
    page.locator("#command-send").scroll_into_view_if_needed()
    expect(page.locator("#command-send")).to_be_in_viewport()
    expect(outcome).to_be_in_viewport()
    console.screenshot("phone-375x812-command", full_page=False)
    console.screenshot("phone-375x812-full")


def test_phone_camera_comes_after_the_log(console: Console, stack: Stack) -> None:
    console.resize(PHONE)
    page = console.page
    log_in(page, stack, OPERATOR, auth_url=stack.start_livekit_auth())
    factory_row(page).click()
    expect(page.locator("#video-card")).to_be_visible()
    assert top(page, "#video-card") > top(page, "section.events") > top(page, "#command-send")
    expect(page.locator("#video-stage")).to_be_hidden()  # no black box without a video
    console.screenshot("phone-375x812-camera-full")


def test_wall_screen_shows_everything_at_once(console: Console, stack: Stack) -> None:
    console.resize(WALL_SCREEN)
    page = console.page
    log_in(page, stack, ADMIN)
    expect(factory_row(page)).to_be_visible()
    send_command(page, "start", rpm=1200)
    for selector in ("section.factories", "section.events", "section.command", "#command-send"):
        expect(page.locator(selector)).to_be_in_viewport()
    expect(page.locator("#factories-scroll-hint")).to_be_hidden()  # the table fits
    assert page_width(page) <= WALL_SCREEN[0]
    console.screenshot("wall-1920x1080", full_page=False)
    console.screenshot("wall-1920x1080-full")


STALE_STATUS = {"state": "idle", "spindle_rpm": 0, "target_rpm": 0, "temperature_c": 21.5}
BUSY_STATUS = {
    "state": "running",
    "spindle_rpm": 11980,
    "target_rpm": 12000,
    "temperature_c": 48.25,
}


def presence_snapshot() -> list[dict[str, object]]:
    """Three factories: two online with full readings, one offline with a stale status."""
    start = now_ms()
    return [
        entry(FACTORY, online=True, since=start - 3_600_000, status=BUSY_STATUS),
        entry("press-2", online=True, since=start - 90_000, status=BUSY_STATUS),
        entry("mill-3", online=False, since=start - 600_000, status=STALE_STATUS),
    ]


def test_phone_shows_the_offline_warning_beside_send(console: Console, stack: Stack) -> None:
    console.resize(PHONE)
    page = console.page
    StandInRelay(page, presence_snapshot())
    log_in(page, stack, OPERATOR)
    page.select_option("#command-target", "mill-3")
    page.locator("#command-send").scroll_into_view_if_needed()
    expect(page.locator("#command-warning")).to_be_in_viewport()
    expect(page.locator("#command-send")).to_be_in_viewport()
    send_command(page, "stop", target="mill-3")
    expect(page.locator("#command-outcome")).to_be_in_viewport()
    assert page_width(page) <= PHONE[0]
    console.screenshot("phone-375x812-offline-warning", full_page=False)
    console.screenshot("phone-375x812-presence-full")


def test_wall_screen_shows_presence_and_readings_without_scrolling(
    console: Console, stack: Stack
) -> None:
    console.resize(WALL_SCREEN)
    page = console.page
    StandInRelay(page, presence_snapshot())
    log_in(page, stack, OPERATOR)
    expect(factory_row(page, "mill-3")).to_have_attribute("data-stale", "true")
    send_command(page, "stop", target="mill-3")
    expect(page.locator("#factories-scroll-hint")).to_be_hidden()  # presence and readings fit
    for selector in ('tr[data-factory="mill-3"] .stale-tag', "#commands li", "#event-log li"):
        expect(page.locator(selector).first).to_be_in_viewport()
    assert page_width(page) <= WALL_SCREEN[0]
    console.screenshot("wall-1920x1080-presence", full_page=False)
