"""The console sends its token only where the server says the relay is (issue 9).

A `?relay=` in the console's URL (a phished link) is ignored; the relay URL comes from
`RELAY_PUBLIC_URL` through `/console/config.json`, and the Content-Security-Policy lets
the page connect only to its own origin, that relay and, when configured, LiveKit.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.console.conftest import OPERATOR, PASSWORD, Console, Stack
from tests.console.pages import expect
from tests.processes import console_script, run_to_exit

pytestmark = pytest.mark.redis

ACCEPT_POLL_SECONDS = 0.1


class Listener:
    """A TCP listener on loopback that records every connection and the bytes it got."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(ACCEPT_POLL_SECONDS)
        self.port: int = self.socket.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1)
                try:
                    self.received.append(connection.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    listening = Listener()
    try:
        yield listening
    finally:
        listening.close()


def connect_sources(response: httpx.Response) -> list[str]:
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    return directives["connect-src"].split()


def test_a_relay_parameter_in_the_page_url_receives_nothing(
    console: Console, stack: Stack, listener: Listener
) -> None:
    page = console.page
    phished = f"{stack.auth_url}/console/?relay=ws://127.0.0.1:{listener.port}/ws"
    page.goto(phished)
    expect(page.locator("#relay-url")).to_have_text(stack.relay_ws_url)
    page.fill("#username", OPERATOR)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    badge = page.locator("#connection")
    expect(badge).to_have_attribute("data-state", "ready")  # the configured relay
    page.reload()  # the stored token, the same phished URL
    expect(badge).to_have_attribute("data-state", "ready")
    expect(badge).to_have_attribute("data-sessions", "1")
    assert listener.received == []


def test_config_names_the_configured_relay(stack: Stack) -> None:
    response = httpx.get(f"{stack.auth_url}/console/config.json?relay=ws://elsewhere/ws")
    assert response.status_code == 200
    assert response.json() == {"relay_url": stack.relay_ws_url, "livekit": False}
    assert response.headers["cache-control"] == "no-store"


def test_csp_connects_only_to_self_and_the_relay(stack: Stack) -> None:
    response = httpx.get(f"{stack.auth_url}/console/")
    assert connect_sources(response) == ["'self'", f"ws://127.0.0.1:{stack.relay.port}"]
    assert "<meta http-equiv" not in response.text  # one policy, from the server
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_csp_adds_livekit_when_configured(stack: Stack) -> None:
    livekit_auth_url = stack.start_livekit_auth()
    livekit_url = stack.livekit_auth.settings["LIVEKIT_URL"]
    response = httpx.get(f"{livekit_auth_url}/console/")
    assert connect_sources(response) == [
        "'self'",
        f"ws://127.0.0.1:{stack.relay.port}",
        livekit_url,
        livekit_url.replace("ws://", "http://"),  # livekit-client checks its server over HTTP
    ]
    assert httpx.get(f"{livekit_auth_url}/console/config.json").json()["livekit"] is True


@pytest.mark.parametrize(
    "url",
    ["http://relay.example/ws", "//relay.example/ws", "ws://relay.example/ws?x=1", "ws://a b/ws"],
)
def test_a_bad_relay_public_url_stops_the_service_with_one_line(tmp_path: Path, url: str) -> None:
    result = run_to_exit(
        [console_script("auth-service"), "serve"],
        tmp_path,
        {"JWT_SECRET": "x" * 32, "RELAY_PUBLIC_URL": url},
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "RELAY_PUBLIC_URL" in lines[0]
