"""Extending a session before its token runs out: the console asks for the password again.

The services issue tokens of `SHORT_TOKEN_TTL_SECONDS` (24 s), so the dialog appears a
quarter of that (6 s) before `exp`, and the relay ends an unrefreshed session at `exp`
(4004 "token expired"). `relay_closes_total{code="4004"}` counts the relay's 4004 closes.
"""

from __future__ import annotations

import base64
import json
import re
import time

import httpx
import pytest

from tests.console.conftest import (
    FACTORY,
    OPERATOR,
    PHONE,
    SHORT_TOKEN_TTL_SECONDS,
    Console,
    Stack,
)
from tests.console.pages import Page, expect, log_in

pytestmark = pytest.mark.redis

TOKEN_KEY = "factory-relay.token"
DIALOG_TIMEOUT_MS = (SHORT_TOKEN_TTL_SECONDS + 10) * 1000
"""Bounded wait for the dialog or the login form: past the token's whole life."""
PAST_EXPIRY_SECONDS = 3
TOKEN_EXPIRED_MESSAGE = "Your session ended: token expired. Log in again."
THROTTLED = "throttled-operator"
MAX_ATTEMPTS_BEFORE_THROTTLE = 10
"""Above the per-(username, address) limit (5), far below the per-address one (20)."""
CLOSES_4004 = re.compile(r'^relay_closes_total\{code="4004"\} (\S+)$', re.MULTILINE)


def stored_token(page: Page) -> str:
    token = page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})")
    assert isinstance(token, str)
    return token


def expires_at(token: str) -> int:
    """The token's `exp` (the test reads it the way the console does: no signature check)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    exp = claims["exp"]
    assert isinstance(exp, int)
    return exp


def closes_4004(stack: Stack) -> float:
    metrics = httpx.get(f"{stack.relay.http_url}/metrics").text
    found = CLOSES_4004.search(metrics)
    return float(found.group(1)) if found else 0.0


def connection_log(page: Page) -> list[str]:
    entries: list[str] = page.locator('#event-log li[data-kind="connection"]').all_inner_texts()
    return entries


def wait_for_dialog(page: Page) -> None:
    expect(page.locator("#renew-dialog")).to_be_visible(timeout=DIALOG_TIMEOUT_MS)


def test_the_dialog_asks_for_the_password_before_the_token_expires(
    console: Console, short_lived_stack: Stack
) -> None:
    page = console.page
    log_in(page, short_lived_stack, OPERATOR)
    exp = expires_at(stored_token(page))
    wait_for_dialog(page)
    assert time.time() < exp  # before the token ran out
    dialog = page.locator("#renew-dialog")
    expect(page.locator("#renew-title")).to_have_text(
        re.compile(r"^Your session ends in \d+ s — confirm your password to stay signed in$")
    )
    expect(page.locator("#renew-username")).to_have_value(OPERATOR)
    expect(page.locator("#renew-username")).to_have_attribute("readonly", "")
    expect(page.locator("#renew-password")).to_be_focused()
    expect(dialog.get_by_role("button", name="Confirm")).to_be_visible()
    expect(dialog.get_by_role("button", name="Log out")).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    expect(dialog).to_be_visible()  # not dismissed by Escape: confirm, log out, or expire
    expect(page.locator("#renew-password")).to_be_focused()
    first = int(dialog.get_attribute("data-seconds-left") or "0")
    expect(dialog).not_to_have_attribute("data-seconds-left", str(first))  # it counts down
    console.screenshot("20-renew-dialog-1280", full_page=False)
    console.resize(PHONE)
    console.screenshot("21-renew-dialog-375", full_page=False)
    box = page.locator("#renew-dialog").bounding_box()
    assert box is not None
    assert box["x"] >= 0  # the dialog fits the phone's width
    assert box["x"] + box["width"] <= PHONE[0]


def test_confirming_the_password_keeps_the_same_relay_session(
    console: Console, short_lived_stack: Stack
) -> None:
    page = console.page
    closes_before = closes_4004(short_lived_stack)
    log_in(page, short_lived_stack, OPERATOR)
    old_token = stored_token(page)
    wait_for_dialog(page)
    page.fill("#renew-password", "correct-horse-battery")
    page.click("#renew-confirm")
    expect(page.locator("#renew-dialog")).to_be_hidden()
    expect(page.locator('#event-log li[data-event="REFRESHED"]')).to_contain_text(
        "session extended"
    )
    new_token = stored_token(page)
    assert new_token != old_token
    assert expires_at(new_token) > expires_at(old_token)
    time.sleep(max(0.0, expires_at(old_token) + PAST_EXPIRY_SECONDS - time.time()))
    expect(page.locator("#connection")).to_have_attribute("data-state", "ready")
    expect(page.locator("#connection")).to_have_attribute("data-sessions", "1")
    log = connection_log(page)
    assert sum("connecting to" in entry for entry in log) == 1, log  # no reconnect
    assert not any("reconnecting" in entry or "disconnected" in entry for entry in log), log
    assert closes_4004(short_lived_stack) == closes_before


def test_a_wrong_password_is_refused_in_the_dialog(
    console: Console, short_lived_stack: Stack
) -> None:
    refused = httpx.post(
        f"{short_lived_stack.auth_url}/auth/token",
        data={"username": "nobody-at-all", "password": "not-the-password"},
    )
    detail = refused.json()["detail"]  # an unknown user is refused like a wrong password
    page = console.page
    log_in(page, short_lived_stack, OPERATOR)
    wait_for_dialog(page)
    page.fill("#renew-password", "not-the-password")
    page.click("#renew-confirm")
    error = page.locator("#renew-error")
    expect(error).to_be_visible()
    text = error.inner_text()
    assert text.lower().count(detail.lower().rstrip(".")) == 1, (detail, text)
    expect(page.locator("#renew-dialog")).to_be_visible()  # the person may try again
    expect(page.locator("#renew-confirm")).to_be_enabled()
    page.fill("#renew-password", "correct-horse-battery")
    page.click("#renew-confirm")
    expect(page.locator("#renew-dialog")).to_be_hidden()
    expect(page.locator('#event-log li[data-event="REFRESHED"]')).to_have_count(1)


def test_a_throttled_confirmation_says_when_to_try_again(
    console: Console, short_lived_stack: Stack
) -> None:
    short_lived_stack.create_user(THROTTLED, "operator")  # its own failure counts
    page = console.page
    log_in(page, short_lived_stack, THROTTLED)
    wait_for_dialog(page)
    for _ in range(MAX_ATTEMPTS_BEFORE_THROTTLE):
        refused = httpx.post(
            f"{short_lived_stack.auth_url}/auth/token",
            data={"username": THROTTLED, "password": "not-the-password"},
        )
        if refused.status_code == 429:
            break
    assert refused.status_code == 429, refused.text
    page.fill("#renew-password", "correct-horse-battery")
    page.click("#renew-confirm")
    error = page.locator("#renew-error")
    expect(error).to_have_text(re.compile(r"Next attempt in \d+ (s|min)\.$"))
    text = error.inner_text()
    detail = refused.json()["detail"]
    assert text.lower().count(detail.lower().rstrip(".")) == 1, (detail, text)
    expect(page.locator("#renew-dialog")).to_be_visible()


def test_log_out_in_the_dialog_ends_the_session(console: Console, short_lived_stack: Stack) -> None:
    page = console.page
    log_in(page, short_lived_stack, OPERATOR)
    token = stored_token(page)
    wait_for_dialog(page)
    page.click("#renew-logout")
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#renew-dialog")).to_be_hidden()
    expect(page.locator("#login-error")).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") is None
    me = httpx.get(
        f"{short_lived_stack.auth_url}/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert me.status_code == 401  # revoked on the server too


def test_an_ignored_dialog_returns_to_the_login_form_with_the_reason(
    console: Console, short_lived_stack: Stack
) -> None:
    page = console.page
    closes_before = closes_4004(short_lived_stack)
    log_in(page, short_lived_stack, OPERATOR)
    wait_for_dialog(page)
    expect(page.locator("#login-view")).to_be_visible(timeout=DIALOG_TIMEOUT_MS)
    expect(page.locator("#login-error")).to_have_text(TOKEN_EXPIRED_MESSAGE)
    expect(page.locator("#renew-dialog")).to_be_hidden()
    expect(page.locator("#console-view")).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") is None
    assert closes_4004(short_lived_stack) == closes_before + 1  # the relay ended it: 4004


SERVER_EVENTS_LOGIC = """
async () => {
  const m = await import("/console/relay.js");
  const r = await import("/console/renewal.js");
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; sockets.push(this); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code, reason) { this.closedWith = [code, reason]; }
    emit(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
    serverClose(code, reason = "") { this.onclose({ code, reason }); }
  }
  const messages = [], refreshed = [], serverEvents = [], stopped = [];
  const relay = new m.RelayConnection("ws://fake/ws", "old", {
    onMessage: (f) => messages.push(f.t ?? f.op),
    onRefreshed: (exp) => refreshed.push(exp),
    onServerEvent: (f) => serverEvents.push(f.t),
    onStopped: (s) => stopped.push(s.reason),
  }, { backoff: new m.Backoff(1, 60, () => 0), WebSocketClass: FakeSocket });
  relay.start();
  const socket = sockets[0];
  socket.emit({ op: 0, d: { heartbeat_interval: 60000, session_id: "s" } });
  socket.emit({ op: 6, t: "READY", s: 1,
                d: { session_id: "s", user: { id: "1", username: "op", type: "operator" } } });
  const sentOp7 = relay.refresh("new");
  const from = { id: "2", username: "factory-7", type: "factory" };
  socket.emit({ op: 6, t: "PRESENCE_UPDATE", s: 2, d: { user: from, status: "online" } });
  socket.emit({ op: 6, t: "DELIVERY_FAILED", s: 3, d: { id: "cmd-1" } });
  socket.emit({ op: 6, t: "REFRESHED", s: 4, d: { exp: 1900000000 } });
  socket.emit({ op: 6, t: "COMMAND_ACK", s: 5, d: { from, payload: { command_id: "cmd-1" } } });
  socket.emit({ op: 5, s: 6, d: { from, payload: { state: "running" } } });
  socket.serverClose(4004, "token expired");

  const body = btoa(JSON.stringify({ sub: "1", iat: 1000, exp: 1020 }))
    .replace(/=+$/, "").replace(/\\+/g, "-").replace(/\\//g, "_");
  const day = btoa(JSON.stringify({ sub: "1", iat: 0, exp: 86400 })).replace(/=+$/, "");
  return {
    sentOp7, op7: socket.sent.find((f) => f.op === 7), messages, refreshed, serverEvents,
    stopped, lastSequence: relay.lastSequence,
    times: r.tokenTimes(`h.${body}.sig`),
    askShort: r.askAt(r.tokenTimes(`h.${body}.sig`)),
    askDay: r.askAt(r.tokenTimes(`h.${day}.sig`)),
    bad: r.tokenTimes("not-a-token"),
    countdowns: [r.countdown(4.2), r.countdown(59), r.countdown(300), r.countdown(-3)],
  };
}
"""


def test_the_relays_own_events_are_never_taken_for_a_factorys_message(
    console: Console, short_lived_stack: Stack
) -> None:
    console.page.goto(short_lived_stack.console_url())
    result = console.page.evaluate(SERVER_EVENTS_LOGIC)
    assert result["sentOp7"] is True
    assert result["op7"] == {"op": 7, "d": {"token": "new"}}
    assert result["messages"] == ["COMMAND_ACK", 5]  # only what a factory sent
    assert result["refreshed"] == [1900000000]
    assert result["serverEvents"] == ["PRESENCE_UPDATE", "DELIVERY_FAILED"]
    assert result["lastSequence"] == 6
    assert result["stopped"] == [TOKEN_EXPIRED_MESSAGE]
    assert result["times"] == {"iat": 1000, "exp": 1020}
    assert result["askShort"] == 1015  # a quarter of a 20 s life before exp
    assert result["askDay"] == 86400 - 300  # five minutes before exp
    assert result["bad"] is None
    assert result["countdowns"] == ["5 s", "59 s", "5 min 00 s", "0 s"]


def test_delivery_failed_is_shown_against_the_command(
    console: Console, short_lived_stack: Stack
) -> None:
    """The relay is replaced by a stand-in that answers every command with DELIVERY_FAILED."""
    from playwright.sync_api import WebSocketRoute

    def relay(ws: WebSocketRoute) -> None:
        def on_message(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame["op"] == 3:
                user = {"id": "1", "username": OPERATOR, "type": "operator"}
                ready = {"op": 6, "t": "READY", "s": 1, "d": {"session_id": "s", "user": user}}
                ws.send(json.dumps(ready))
            elif frame["op"] == 4:
                failed = {"id": frame["d"]["id"], "reason": "unreachable"}
                ws.send(json.dumps({"op": 6, "t": "DELIVERY_FAILED", "s": 2, "d": failed}))
            elif frame["op"] == 1:
                ws.send(json.dumps({"op": 2, "d": None}))

        ws.on_message(on_message)
        ws.send(json.dumps({"op": 0, "d": {"heartbeat_interval": 30000, "session_id": "s"}}))

    page = console.page
    page.route_web_socket(re.compile(r"^ws://"), relay)
    log_in(page, short_lived_stack, OPERATOR)
    page.select_option("#command-action", "stop")
    page.click("#command-send")
    outcome = page.locator("#command-outcome")
    expect(outcome).to_have_attribute("data-kind", "error")
    expect(outcome).to_contain_text("could not deliver stop")
    expect(outcome).to_contain_text("unreachable")
    expect(page.locator('#event-log li[data-event="DELIVERY_FAILED"]')).to_have_count(1)
    # not taken for a factory: the only row is the factory account's
    expect(page.locator(f'#factories tbody tr:not([data-factory="{FACTORY}"])')).to_have_count(0)
