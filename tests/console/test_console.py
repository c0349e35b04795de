"""The operator console end to end: headless Chromium against the real services.

The relay runs with a 1 s heartbeat interval, so a console that did not heartbeat would
be closed (4009) within every test; `data-sessions` on the connection badge counts the
sessions that reached READY.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.console.conftest import FACTORY, OPERATOR, Console, Stack
from tests.console.pages import answer, cell, expect, factory_row, log_in, send_command

pytestmark = pytest.mark.redis  # the services share the real Redis (revocations, fan-out)

RELAY_RESTART_TIMEOUT_MS = 30_000


def test_console_is_served_and_redirected(stack: Stack) -> None:
    response = httpx.get(f"{stack.auth_url}/console?relay=ws://example/ws")
    assert response.status_code == 307
    assert response.headers["location"] == "/console/"  # the query goes: it chooses nothing
    page = httpx.get(f"{stack.auth_url}/console/")
    assert page.status_code == 200
    assert "operator console" in page.text
    vendored = httpx.get(f"{stack.auth_url}/console/vendor/livekit-client.umd.js")
    assert vendored.status_code == 200
    assert "LivekitClient" in vendored.text[:1000]


CONNECTION_LOGIC = """
async () => {
  const m = await import("/console/relay.js");
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const backoff = new m.Backoff(1, 60, () => 1);
  const delays = Array.from({ length: 8 }, () => backoff.nextDelay());
  const atOnce = backoff.nextDelay(true);
  backoff.reset();
  const afterReset = backoff.nextDelay();
  const codes = [null, 1000, 1009, 1012, 4000, 4001, 4002, 4003, 4004, 4005, 4008, 4009,
                 4010, 4013];
  const policies = Object.fromEntries(codes.map((c) => [String(c), m.reconnectPolicy(c)]));
  const urls = [
    ["/ws", "http://localhost:8080/console/"],
    ["/ws", "https://console.example/console/?relay=ws://elsewhere/ws"],
    ["/relay/ws", "http://10.1.2.3/console/"],
    ["ws://127.0.0.1:8001/ws", "http://127.0.0.1:8000/console/?relay=ws://elsewhere/ws"],
    ["wss://relay.example/ws", "https://console.example/console/"],
  ].map(([setting, page]) => m.relayUrlFor(setting, new URL(page)));

  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; sockets.push(this); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code, reason) { this.closedWith = [code, reason]; }
    emit(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
    serverClose(code, reason = "") { this.onclose({ code, reason }); }
  }
  const states = [];
  const stopped = [];
  const handlers = {
    onState: (s) => states.push(`${s.state}|${s.detail}|${s.delay}`),
    onStopped: (s) => stopped.push(s),
  };
  const ready = (socket, s = 1) => {
    socket.emit({ op: 0, d: { heartbeat_interval: 40, session_id: "s" } });
    socket.emit({ op: 6, t: "READY", s,
                  d: { session_id: "s", user: { id: "1", username: "op", type: "operator" } } });
  };
  const relay = new m.RelayConnection("ws://fake/ws", "tok", handlers,
    { backoff: new m.Backoff(1, 60, () => 0), WebSocketClass: FakeSocket });
  relay.start();
  ready(sockets[0]);
  const identify = sockets[0].sent[0];
  sockets[0].emit({ op: 5, s: 2, d: { payload: {}, from: { username: "f" } } });
  await pause(200);  // a beat at a random point of the first 40 ms, then no ACK: a zombie
  const beats = sockets[0].sent.filter((f) => f.op === 1);
  ready(sockets[1]);
  sockets[1].serverClose(1012, "replica shutting down");
  await pause(20);
  ready(sockets[2]);
  sockets[2].serverClose(4010, "not authorized");
  await pause(50);
  const socketsAfterFatal = sockets.length;

  const expired = new m.RelayConnection("ws://fake/ws", "tok", handlers,
    { backoff: new m.Backoff(1, 60, () => 0), WebSocketClass: FakeSocket });
  expired.start();
  sockets[sockets.length - 1].serverClose(4004, "authentication failed");
  await pause(50);
  return { delays, atOnce, afterReset, policies, urls, identify, beats, states, stopped,
           socketsAfterFatal, socketsAtEnd: sockets.length, sessions: relay.sessionsOpened };
}
"""


def test_connection_logic_mirrors_the_python_client(console: Console, stack: Stack) -> None:
    console.page.goto(stack.console_url())
    result = console.page.evaluate(CONNECTION_LOGIC)
    assert result["delays"] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert result["atOnce"] == 1
    assert result["afterReset"] == 1
    policies = result["policies"]
    for code in ("4001", "4002", "4005", "4010", "1009"):
        assert policies[code] == "do not reconnect: fix the client", code
    assert policies["4004"] == "get a new token, then reconnect"
    assert policies["1012"] == "reconnect at once"
    for code in ("null", "1000", "4000", "4003", "4008", "4009", "4013"):
        assert policies[code] == "reconnect with backoff", code
    assert result["urls"] == [
        "ws://localhost:8080/ws",  # a path: the page's own origin (the load balancer)
        "wss://console.example/ws",  # over HTTPS: wss; the page's ?relay= is ignored
        "ws://10.1.2.3/relay/ws",
        "ws://127.0.0.1:8001/ws",  # an absolute URL as configured (make run)
        "wss://relay.example/ws",
    ]
    assert result["identify"] == {"op": 3, "d": {"token": "tok"}}
    assert result["beats"][0] == {"op": 1, "d": 2}  # carries the last `s`
    states = result["states"]
    assert any(s.startswith("reconnecting|no heartbeat ACK|") for s in states), states
    assert "reconnecting|closed with 1012: replica shutting down|0" in states
    assert any(s.startswith("stopped|closed with 4010") for s in states), states
    assert result["socketsAfterFatal"] == 3  # no reconnect after 4010
    assert result["socketsAtEnd"] == 4  # nor after 4004
    assert result["sessions"] == 3
    assert result["stopped"][0]["code"] == 4010
    assert not result["stopped"][0]["expired"]
    assert result["stopped"][1] == {
        "code": 4004,
        "reason": "Session expired: log in again.",
        "expired": True,
    }


def test_wrong_password_shows_the_error(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR, password="not-the-password", ready=False)
    error = page.locator("#login-error")
    expect(error).to_have_text(re.compile(r"^Incorrect username or password\.?$", re.I))
    expect(page.locator("#console-view")).to_be_hidden()
    console.screenshot("01-wrong-password")


def test_operator_sees_the_factory_status_change(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    expect(page.locator("#whoami")).to_have_text(f"{OPERATOR} (operator)")
    expect(factory_row(page)).to_be_visible()
    expect(cell(page, "last-seen")).to_have_text(re.compile(r"^[01] s ago$"))

    send_command(page, "stop")
    expect(cell(page, "state")).to_have_text("idle")
    expect(cell(page, "spindle_rpm")).to_have_text("0", timeout=30_000)
    send_command(page, "start", rpm=1200)
    expect(cell(page, "state")).to_have_text("running")
    expect(cell(page, "target_rpm")).to_have_text("1200")
    expect(cell(page, "spindle_rpm")).not_to_have_text("0")
    console.screenshot("03-factory-running")

    # Several heartbeat intervals later, still the first session: the console beats.
    time.sleep(3.5)
    badge = page.locator("#connection")
    expect(badge).to_have_attribute("data-state", "ready")
    expect(badge).to_have_attribute("data-sessions", "1")


def test_command_ack_and_rejection_in_the_event_log(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    expect(factory_row(page)).to_be_visible()

    stop = send_command(page, "stop")
    expect(answer(page, stop)).to_have_attribute("data-event", "COMMAND_ACK")
    expect(answer(page, stop)).to_contain_text(f"{FACTORY} acknowledged stop")

    rejected = send_command(page, "set_speed", rpm=3000)
    expect(answer(page, rejected)).to_have_attribute("data-event", "COMMAND_REJECTED")
    expect(answer(page, rejected)).to_contain_text("the spindle is not running")

    everywhere = send_command(page, "start", rpm=2400, target="")
    expect(answer(page, everywhere)).to_have_attribute("data-event", "COMMAND_ACK")
    expect(answer(page, everywhere)).to_contain_text("Target (rpm) 2400")
    expect(page.locator(f'#event-log li[data-command-id="{everywhere}"].acked')).to_be_visible()
    expect(cell(page, "target_rpm")).to_have_text("2400")
    # Newest first: the last answer is on top.
    expect(page.locator("#event-log li").first).to_have_attribute("data-command-id", everywhere)
    console.screenshot("04-command-acks")


def test_camera_panel_hidden_without_livekit(console: Console, stack: Stack) -> None:
    page = console.page
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    log_in(page, stack, OPERATOR)
    factory_row(page).click()
    expect(factory_row(page)).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator("#video-card")).to_be_hidden()
    expect(page.locator("#video-stage")).to_be_hidden()
    assert not [url for url in asked if "/livekit/" in url]  # no 503 asked for
    assert page.evaluate("typeof window.LivekitClient") == "undefined"  # not loaded for nothing
    console.screenshot("05-no-camera-panel")


def test_video_with_livekit_configured_uses_livekit_client(console: Console, stack: Stack) -> None:
    """No LiveKit server runs here: the token is minted, the vendored client loads and
    tries the (closed) URL, and the panel says why the video is unavailable."""
    livekit_auth_url = stack.start_livekit_auth()
    page = console.page
    log_in(page, stack, OPERATOR, auth_url=livekit_auth_url)
    expect(page.locator("#video-card")).to_be_visible()
    factory_row(page).click()
    expect(page.locator("#video-title")).to_have_text(f"Camera: {FACTORY}")
    status = page.locator("#video-status")
    expect(status).to_have_attribute("data-kind", "error", timeout=30_000)
    expect(status).to_have_text(re.compile(r"^Video unavailable: "))
    expect(status).not_to_contain_text("not configured")
    assert page.evaluate("typeof window.LivekitClient.Room") == "function"
    console.screenshot("06-video-livekit-unreachable")


def test_viewer_watches_but_cannot_command(console: Console, stack: Stack) -> None:
    stack.create_user("viewer-1", "viewer")
    page = console.page
    log_in(page, stack, "viewer-1")
    expect(factory_row(page)).to_be_visible()
    expect(page.locator("#command-send")).to_be_disabled()
    expect(page.locator("#command-note")).to_have_text("A viewer can watch but not send commands.")


def test_disabled_user_sees_session_expired(console: Console, stack: Stack) -> None:
    user = stack.create_user("operator-2", "operator")
    page = console.page
    log_in(page, stack, "operator-2")
    stack.patch_user(user["id"], disabled=True)  # closes its live sessions with 4004
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#login-error")).to_have_text("Session expired: log in again.")
    expect(page.locator("#connection")).to_have_text("logged out")  # the why: said once, above
    console.screenshot("07-session-expired")


def test_relay_restart_is_survived(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    expect(factory_row(page)).to_be_visible()
    badge = page.locator("#connection")
    expect(badge).to_have_attribute("data-sessions", "1")

    assert stack.relay.stop() == 0, stack.relay.logs()
    expect(badge).not_to_have_attribute("data-state", "ready")
    restart = page.locator('#event-log li[data-kind="connection"]', has_text="closed with 1012")
    expect(restart).to_have_count(1)
    # at once: under a second, shown to one decimal (0.95 s and above show as 1.0)
    expect(restart).to_contain_text(re.compile(r"reconnecting in (0\.\d|1\.0) s"))
    console.screenshot("08-relay-down")

    stack.relay.start()
    expect(badge).to_have_attribute("data-state", "ready", timeout=RELAY_RESTART_TIMEOUT_MS)
    expect(badge).to_have_attribute("data-sessions", "2")
    # Status flows again (the bridge reconnected too), and then commands go through.
    updates = int(factory_row(page).get_attribute("data-updates") or 0)
    page.wait_for_function(
        f"""() => Number(document.querySelector('tr[data-factory="{FACTORY}"]')
                 .dataset.updates) >= {updates + 3}""",
        timeout=RELAY_RESTART_TIMEOUT_MS,
    )
    command = send_command(page, "start", rpm=6000)
    expect(answer(page, command)).to_have_attribute(
        "data-event", "COMMAND_ACK", timeout=RELAY_RESTART_TIMEOUT_MS
    )
    expect(cell(page, "target_rpm")).to_have_text("6000")
    expect(cell(page, "last-seen")).to_have_text(re.compile(r"^[01] s ago$"))
    console.screenshot("09-relay-restarted")
