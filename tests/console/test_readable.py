"""Readable data: labels with units, each factory's own readings, short ids, form fields
per action, states in words with enough contrast."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.console.conftest import FACTORY, OPERATOR, PASSWORD, Console, Stack
from tests.console.pages import answer, cell, expect, factory_row, log_in, send_command
from tests.console.stand_in import StandInRelay, entry, now_ms

pytestmark = pytest.mark.redis

PRESS = "press-1"
PRESS_STATUS = {"state": "idle", "pressure_bar": 3.2, "door": "closed"}
LABELS = {
    "state": "State",
    "spindle_rpm": "Spindle (rpm)",
    "target_rpm": "Target (rpm)",
    "temperature_c": "Temperature (°C)",
}
OPEN_TIMEOUT_SECONDS = 10


@pytest.fixture(scope="module")
def press_token(stack: Stack) -> str:
    """A second factory, of another kind of machine (its own status keys)."""
    stack.create_user(PRESS, "factory")
    response = httpx.post(
        f"{stack.auth_url}/auth/token", data={"username": PRESS, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@contextmanager
def factory_session(stack: Stack, token: str) -> Iterator[ClientConnection]:
    """A factory's relay session, identified. The relay's heartbeat interval is 1 s in these
    tests: open it only when it is about to send."""
    with connect(stack.relay_ws_url, open_timeout=OPEN_TIMEOUT_SECONDS) as socket:
        assert json.loads(socket.recv(timeout=OPEN_TIMEOUT_SECONDS))["op"] == 0
        socket.send(json.dumps({"op": 3, "d": {"token": token}}))
        assert json.loads(socket.recv(timeout=OPEN_TIMEOUT_SECONDS))["t"] == "READY"
        yield socket


def test_status_keys_have_labels_with_units(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    for key, label in LABELS.items():
        reading = factory_row(page).locator(".reading", has=page.locator(f'[data-key="{key}"]'))
        expect(reading.locator("dt")).to_have_text(label)


def test_each_factory_shows_its_own_readings(
    console: Console, stack: Stack, press_token: str
) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    expect(factory_row(page)).to_be_visible()
    with factory_session(stack, press_token) as press:
        press.send(json.dumps({"op": 5, "d": {"payload": PRESS_STATUS}}))
    expect(cell(page, "pressure_bar", PRESS)).to_have_text("3.2")
    pressure = factory_row(page, PRESS).locator(
        ".reading", has=page.locator('[data-key="pressure_bar"]')
    )
    expect(pressure.locator("dt")).to_have_text("pressure_bar")  # unknown keys as they are
    expect(cell(page, "spindle_rpm", PRESS)).to_have_count(0)
    expect(cell(page, "pressure_bar", FACTORY)).to_have_count(0)
    for factory in (FACTORY, PRESS):
        expect(factory_row(page, factory)).not_to_contain_text("—")
    console.screenshot("13-two-kinds-of-factory")


def test_log_shows_short_ids_with_the_full_id_on_hover(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    expect(factory_row(page)).to_be_visible()
    command_id = send_command(page, "stop")
    ids = answer(page, command_id).locator("abbr.id")
    expect(ids).to_have_attribute("title", command_id)
    short = ids.inner_text()
    assert short.endswith("…")
    assert len(short) < len(command_id)
    assert command_id not in answer(page, command_id).inner_text()


def test_the_form_shows_the_fields_of_the_action(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    speed = page.locator("#command-rpm-field")
    page.select_option("#command-action", "stop")
    expect(speed).to_be_hidden()
    page.select_option("#command-action", "set_speed")
    expect(speed).to_be_visible()
    expect(page.locator("#command-rpm")).to_have_attribute("required", "")
    page.select_option("#command-action", "start")
    expect(speed).to_be_visible()
    expect(page.locator("#command-rpm")).not_to_have_attribute("required", re.compile(".*"))


CONTRAST_LOGIC = """
(selectors) => {
  const channels = (color) => color.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const linear = (c) => {
      const s = c / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  };
  const background = (element) => {
    for (let node = element; node; node = node.parentElement) {
      const color = channels(getComputedStyle(node).backgroundColor);
      if (color.length < 4 || color[3] > 0) return color.slice(0, 3);
    }
    return [255, 255, 255];
  };
  return Object.fromEntries(selectors.map((selector) => {
    const element = document.querySelector(selector);
    if (!element) return [selector, null];
    const [light, dark] = [luminance(channels(getComputedStyle(element).color)),
                           luminance(background(element))].sort((a, b) => b - a);
    return [selector, (light + 0.05) / (dark + 0.05)];
  }));
}
"""
WCAG_AA_CONTRAST = 4.5
STATE_SELECTORS = [
    'tr[data-presence="online"] .presence-state',
    'tr[data-presence="offline"] .presence-state',
    'tr[data-presence="offline"] .presence-since',
    "tr.stale .stale-tag",
    "tr.stale .stale-note",
    "tr.stale .reading dd",
    "#command-warning",
    '#commands li[data-state="expired"] .command-state',
    '#event-log li[data-kind="presence"]',
    '#event-log li[data-kind="expired"]',
]


def test_states_are_words_with_enough_contrast(console: Console, stack: Stack) -> None:
    page = console.page
    start = now_ms()
    relay = StandInRelay(
        page,
        [
            entry(FACTORY, online=True, since=start - 60_000, status={"state": "idle"}),
            entry("mill-5", online=False, since=start - 60_000, status={"state": "idle"}),
            entry("drill-6", online=True, since=start - 60_000, status={"state": "idle"}),
        ],
    )
    log_in(page, stack, OPERATOR)
    relay.presence("drill-6", online=False, since=now_ms())
    page.select_option("#command-target", "mill-5")
    page.fill("#command-ttl", "1")
    command_id = send_command(page, "stop", target="mill-5")
    expect(page.locator(f'#commands li[data-command-id="{command_id}"]')).to_have_attribute(
        "data-state", "expired"
    )
    page.select_option("#command-target", "mill-5")
    ratios = page.evaluate(CONTRAST_LOGIC, STATE_SELECTORS)
    low = {selector: ratio for selector, ratio in ratios.items() if (ratio or 0) < WCAG_AA_CONTRAST}
    assert low == {}, ratios
