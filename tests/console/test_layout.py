"""The console on a phone (375 x 812) and on a wall screen (1920 x 1080), with screenshots
under artifacts/console/ to look at."""

from __future__ import annotations

import pytest

from tests.console.conftest import ADMIN, OPERATOR, PHONE, WALL_SCREEN, Console, Stack
from tests.console.pages import Page, answer, expect, factory_row, log_in, send_command

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
