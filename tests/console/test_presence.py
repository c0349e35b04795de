"""Which factories are online, and since when: the console's table and log against a
stand-in relay that sends READY's snapshot and PRESENCE_UPDATE (tests/console/stand_in.py).
The factory accounts come from the real auth service (`GET /factories`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.console.conftest import FACTORY, OPERATOR, Console, Stack
from tests.console.pages import Page, cell, expect, factory_row, log_in
from tests.console.stand_in import StandInRelay, entry, now_ms

if TYPE_CHECKING:
    from playwright.sync_api import Locator

pytestmark = pytest.mark.redis

NEVER_SEEN = "lathe-never-seen"
"""A factory account that the snapshot does not list: not online, not seen lately."""
MILL = "mill-offline"
"""A factory the snapshot lists as offline, with its last status."""
MINUTE_MS = 60_000
RUNNING = {"state": "running", "spindle_rpm": 1180, "target_rpm": 1200, "temperature_c": 41.5}
MILL_STATUS = {"state": "idle", "spindle_rpm": 0, "target_rpm": 0, "temperature_c": 22.0}


@pytest.fixture(scope="module")
def accounts(stack: Stack) -> None:
    for name in (NEVER_SEEN, MILL):
        stack.create_user(name, "factory")


def presence_log(page: Page, factory: str) -> Locator:
    return page.locator(f'#event-log li[data-kind="presence"][data-factory="{factory}"]')


def open_console(
    console: Console, stack: Stack, snapshot: list[dict[str, object]] | None
) -> StandInRelay:
    relay = StandInRelay(console.page, snapshot)
    log_in(console.page, stack, OPERATOR)
    return relay


def snapshot_at(start: int) -> list[dict[str, object]]:
    return [
        entry(FACTORY, online=True, since=start - 2 * MINUTE_MS, status=RUNNING),
        entry(MILL, online=False, since=start - 5 * MINUTE_MS, status=MILL_STATUS),
    ]


def test_every_factory_account_is_shown_online_or_offline_since_when(
    console: Console, stack: Stack, accounts: None
) -> None:
    page = console.page
    open_console(console, stack, snapshot_at(now_ms()))
    expect(factory_row(page)).to_have_attribute("data-presence", "online")
    expect(cell(page, "presence")).to_have_text("Online")
    expect(cell(page, "since")).to_have_text("for 2 min")
    since = cell(page, "since").locator("time")
    expect(since).to_have_attribute("title", re.compile(r"\d{1,2}:\d{2}:\d{2}"))  # absolute
    expect(cell(page, "state")).to_have_text("running")

    expect(factory_row(page, MILL)).to_have_attribute("data-presence", "offline")
    expect(cell(page, "presence", MILL)).to_have_text("Offline")
    expect(cell(page, "since", MILL)).to_have_text("for 5 min")

    expect(factory_row(page, NEVER_SEEN)).to_have_attribute("data-presence", "offline")
    expect(cell(page, "since", NEVER_SEEN)).to_have_text("not seen lately")
    expect(factory_row(page, NEVER_SEEN)).to_contain_text("no status received yet")
    expect(page.locator('#event-log li[data-kind="presence"]')).to_have_count(0)  # no change yet
    console.screenshot("30-presence-snapshot")


def test_an_offline_factory_keeps_its_last_status_marked_stale(
    console: Console, stack: Stack, accounts: None
) -> None:
    page = console.page
    open_console(console, stack, snapshot_at(now_ms()))
    mill = factory_row(page, MILL)
    expect(mill).to_have_attribute("data-stale", "true")
    expect(mill.locator(".stale-tag")).to_have_text("stale")
    expect(mill.locator(".stale-tag")).to_be_visible()
    expect(mill.locator(".stale-note")).to_have_text(
        "stale last known readings: the factory is offline"
    )
    expect(cell(page, "state", MILL)).to_have_text("idle")  # still on screen
    expect(cell(page, "last-seen", MILL)).to_have_text(re.compile(r"^\d+ min ago$"))
    expect(factory_row(page)).to_have_attribute("data-stale", "false")


def test_presence_changes_update_the_row_and_the_log(
    console: Console, stack: Stack, accounts: None
) -> None:
    page = console.page
    relay = open_console(console, stack, snapshot_at(now_ms()))
    expect(factory_row(page)).to_have_attribute("data-presence", "online")
    went = now_ms()
    relay.presence(FACTORY, online=False, since=went)
    expect(factory_row(page)).to_have_attribute("data-presence", "offline")
    expect(factory_row(page)).to_have_attribute("data-stale", "true")
    expect(cell(page, "since")).to_have_text(re.compile(r"^for [0-2] s$"))
    expect(cell(page, "state")).to_have_text("running")  # the last status stays
    offline = presence_log(page, FACTORY)
    expect(offline).to_have_count(1)
    expect(offline).to_have_attribute("data-presence", "offline")
    expect(offline).to_contain_text(f"{FACTORY} went offline")
    expect(page.locator(f'#command-target option[value="{FACTORY}"]')).to_have_text(
        f"{FACTORY} (offline)"
    )
    console.screenshot("31-factory-went-offline")

    relay.presence(FACTORY, online=True, since=went + 3000)
    expect(factory_row(page)).to_have_attribute("data-presence", "online")
    expect(factory_row(page)).to_have_attribute("data-stale", "false")
    expect(presence_log(page, FACTORY)).to_have_count(2)
    expect(presence_log(page, FACTORY).first).to_contain_text(f"{FACTORY} is online again")


def test_an_update_older_than_what_is_shown_changes_nothing(
    console: Console, stack: Stack, accounts: None
) -> None:
    page = console.page
    start = now_ms()
    relay = open_console(console, stack, snapshot_at(start))
    expect(factory_row(page)).to_have_attribute("data-presence", "online")
    relay.presence(FACTORY, online=True, since=start - 2 * MINUTE_MS)  # the snapshot, again
    relay.presence(FACTORY, online=False, since=start - 3 * MINUTE_MS)  # older
    relay.presence(MILL, online=True, since=start)  # newer: applied
    expect(factory_row(page, MILL)).to_have_attribute("data-presence", "online")
    expect(factory_row(page)).to_have_attribute("data-presence", "online")
    expect(presence_log(page, FACTORY)).to_have_count(0)


def test_after_a_reconnect_the_latest_since_wins(
    console: Console, stack: Stack, accounts: None
) -> None:
    """The snapshot of the new session may be older than an update already seen."""
    page = console.page
    start = now_ms()
    relay = open_console(console, stack, snapshot_at(start))
    relay.presence(FACTORY, online=False, since=start)
    expect(factory_row(page)).to_have_attribute("data-presence", "offline")
    relay.snapshot = [
        entry(FACTORY, online=True, since=start - 2 * MINUTE_MS, status=RUNNING),  # older
        entry(MILL, online=True, since=start + 1000),  # newer: came back meanwhile
    ]
    relay.restart()
    expect(page.locator("#connection")).to_have_attribute("data-sessions", "2")
    expect(factory_row(page)).to_have_attribute("data-presence", "offline")
    expect(factory_row(page, MILL)).to_have_attribute("data-presence", "online")
    expect(presence_log(page, MILL)).to_contain_text(f"{MILL} is online again")


def test_a_factory_the_new_snapshot_leaves_out_is_offline(
    console: Console, stack: Stack, accounts: None
) -> None:
    page = console.page
    relay = open_console(console, stack, snapshot_at(now_ms()))
    expect(factory_row(page)).to_have_attribute("data-presence", "online")
    relay.snapshot = []
    relay.restart()
    expect(page.locator("#connection")).to_have_attribute("data-sessions", "2")
    expect(factory_row(page)).to_have_attribute("data-presence", "offline")
    expect(cell(page, "since")).to_have_text("not seen lately")
    expect(presence_log(page, FACTORY)).to_contain_text(f"{FACTORY} went offline")
    relay.presence(FACTORY, online=True, since=now_ms())
    expect(presence_log(page, FACTORY).first).to_contain_text(f"{FACTORY} came online")


def test_statuses_update_the_readings_of_an_online_factory(
    console: Console, stack: Stack, accounts: None
) -> None:
    page = console.page
    relay = open_console(console, stack, snapshot_at(now_ms()))
    relay.status(FACTORY, {**RUNNING, "spindle_rpm": 1199})
    expect(cell(page, "spindle_rpm")).to_have_text("1199")
    expect(cell(page, "last-seen")).to_have_text(re.compile(r"^[01] s ago$"))
    expect(factory_row(page)).to_have_attribute("data-updates", "2")  # snapshot, then live


def test_without_presence_from_the_relay_it_is_shown_as_unknown(
    console: Console, stack: Stack, accounts: None
) -> None:
    page = console.page
    relay = open_console(console, stack, None)
    expect(factory_row(page, NEVER_SEEN)).to_have_attribute("data-presence", "unknown")
    relay.status(FACTORY, RUNNING)
    expect(cell(page, "state")).to_have_text("running")
    expect(factory_row(page)).to_have_attribute("data-presence", "unknown")
    expect(cell(page, "presence")).to_have_text("Unknown")


PRESENCE_LOGIC = """
async () => {
  const p = await import("/console/presence.js");
  const l = await import("/console/labels.js");
  const m = await import("/console/relay.js");
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; sockets.push(this); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() {}
    emit(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
  }
  const presence = [], ready = [], others = [];
  const relay = new m.RelayConnection("ws://fake/ws", "tok", {
    onReady: (user, session, d) => ready.push(d.factories),
    onPresence: (d) => presence.push(d),
    onServerEvent: (f) => others.push(f.t),
  }, { WebSocketClass: FakeSocket });
  relay.start();
  const snapshot = [{ username: "f", online: true, since: 5, status: null }];
  sockets[0].emit({ op: 0, d: { heartbeat_interval: 60000, session_id: "s" } });
  const emit = (t, s, d) => sockets[0].emit({ op: 6, t, s, d });
  emit("READY", 1, { session_id: "s", user: {}, factories: snapshot });
  emit("PRESENCE_UPDATE", 2, { username: "f", online: false, since: 9 });
  sockets[0].emit({ op: 6, t: "DELIVERY_FAILED", s: 3, d: { id: "x", reason: "r" } });
  relay.sendCommand({ action: "stop" }, { target: "f", id: "c1", ttlMs: 2000 });
  relay.sendCommand({ action: "stop" }, { id: "c2" });
  const known = { online: true, since: 100 };
  return {
    ready, presence, others,
    commands: sockets[0].sent.filter((f) => f.op === 4).map((f) => f.d),
    entries: [
      p.presenceEntry({ username: "f", online: false, since: 7 }),
      p.presenceEntry({ username: "f", online: "yes", since: 7 }),
      p.presenceEntry({ online: true, since: 7 }),
      p.presenceEntry({ username: "f", online: true }),
      p.presenceEntry(null),
    ],
    supersedes: [
      p.supersedes({ online: null, since: null }, { online: false, since: null }),
      p.supersedes(known, { online: false, since: 101 }),
      p.supersedes(known, { online: true, since: 100 }),
      p.supersedes(known, { online: false, since: 99 }),
      p.supersedes(known, { online: false, since: null }),
      p.supersedes({ online: false, since: null }, { online: true, since: 1 }),
    ],
    elapsed: [0, 59_999, 60_000, 3_599_999, 3_600_000, 5_400_000, 2 * 86_400_000 + 3_600_000, -5]
      .map(l.elapsed),
  };
}
"""


def test_presence_logic_keeps_the_latest_since(console: Console, stack: Stack) -> None:
    console.page.goto(stack.console_url())
    result = console.page.evaluate(PRESENCE_LOGIC)
    assert result["ready"] == [[{"username": "f", "online": True, "since": 5, "status": None}]]
    assert result["presence"] == [{"username": "f", "online": False, "since": 9}]
    assert result["others"] == ["DELIVERY_FAILED"]  # presence is not another server event
    assert result["commands"] == [
        {"payload": {"action": "stop"}, "target": "f", "id": "c1", "ttl_ms": 2000},
        {"payload": {"action": "stop"}, "id": "c2"},  # no ttl given: the relay's default
    ]
    assert result["entries"] == [
        {"username": "f", "online": False, "since": 7},
        None,
        None,
        {"username": "f", "online": True, "since": None},
        None,
    ]
    assert result["supersedes"] == [True, True, True, False, False, True]
    assert result["elapsed"] == [
        "0 s",
        "59 s",
        "1 min",
        "59 min",
        "1 h 00 min",
        "1 h 30 min",
        "2 d 1 h",
        "0 s",
    ]
