"""A stand-in relay inside the page (Playwright's WebSocket routing): the console's real code
talks to it as to the relay, and the test decides what the relay says.

It answers Hello, Identify (READY, with a `factories` snapshot when given) and heartbeats
like the relay; every other frame the console sends is kept in `received`. The auth
service stays real (login, `GET /factories`).
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

from tests.console.pages import Page

if TYPE_CHECKING:
    from playwright.sync_api import WebSocketRoute

HEARTBEAT_INTERVAL_MS = 30_000
SERVICE_RESTART = 1012
RECEIVE_TIMEOUT_MS = 10_000
RECEIVE_POLL_MS = 50
OPERATOR_USER = {"id": "1", "username": "operator", "type": "operator"}


def now_ms() -> int:
    return int(time.time() * 1000)


def factory_user(username: str) -> dict[str, str]:
    return {"id": f"id-{username}", "username": username, "type": "factory"}


def status_data(username: str, payload: dict[str, Any], ts: int) -> dict[str, Any]:
    """A status dispatch's `d`, as delivered (and as the snapshot carries it)."""
    return {
        "id": f"st-{username}-{ts}",
        "from": factory_user(username),
        "target": None,
        "payload": payload,
        "ts": ts,
    }


def entry(
    username: str, *, online: bool, since: int, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One factory of READY's snapshot; `status` is a payload, stamped a second after `since`."""
    stamped = None if status is None else status_data(username, status, since + 1000)
    return {"username": username, "online": online, "since": since, "status": stamped}


class StandInRelay:
    """The relay the page connects to, scripted by the test."""

    def __init__(
        self, page: Page, snapshot: list[dict[str, Any]] | None, user: dict[str, str] | None = None
    ) -> None:
        self.snapshot = snapshot
        """READY's `factories`; None: a relay without presence (no field)."""
        self.user = user or OPERATOR_USER
        self.sockets: list[WebSocketRoute] = []
        self.received: list[dict[str, Any]] = []
        self.sequence = 0
        page.route_web_socket(re.compile(r"^wss?://"), self._accept)

    def _accept(self, ws: WebSocketRoute) -> None:
        self.sockets.append(ws)
        ws.on_message(lambda message: self._on_message(ws, message))
        hello = {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "session_id": f"s{len(self.sockets)}"}
        ws.send(json.dumps({"op": 0, "d": hello}))

    def _on_message(self, ws: WebSocketRoute, message: str | bytes) -> None:
        frame = json.loads(message)
        if frame["op"] == 3:
            self.sequence = 1
            ready: dict[str, Any] = {"session_id": f"s{len(self.sockets)}", "user": self.user}
            if self.snapshot is not None:
                ready["factories"] = self.snapshot
            ws.send(json.dumps({"op": 6, "t": "READY", "s": 1, "d": ready}))
        elif frame["op"] == 1:
            ws.send(json.dumps({"op": 2, "d": None}))
        else:
            self.received.append(frame)

    def send(self, op: int, d: Any, t: str | None = None) -> None:
        """A dispatch on the current session, numbered like the relay's."""
        self.sequence += 1
        frame: dict[str, Any] = {"op": op, "s": self.sequence, "d": d}
        if t is not None:
            frame["t"] = t
        self.sockets[-1].send(json.dumps(frame))

    def presence(self, username: str, *, online: bool, since: int) -> None:
        self.send(6, {"username": username, "online": online, "since": since}, "PRESENCE_UPDATE")

    def status(self, username: str, payload: dict[str, Any], ts: int | None = None) -> None:
        self.send(5, status_data(username, payload, now_ms() if ts is None else ts))

    def factory_event(self, username: str, name: str, payload: dict[str, Any]) -> None:
        data = {"id": f"ev-{now_ms()}", "from": factory_user(username), "target": None}
        self.send(6, {**data, "payload": payload, "ts": now_ms()}, name)

    def commands(self) -> list[dict[str, Any]]:
        """The commands (op 4) the console sent, oldest first."""
        return [frame["d"] for frame in self.received if frame["op"] == 4]

    def wait_for_commands(self, page: Page, count: int) -> list[dict[str, Any]]:
        """The commands once `count` have arrived (the page's frames reach the test
        while it waits on the page), within `RECEIVE_TIMEOUT_MS`."""
        for _ in range(RECEIVE_TIMEOUT_MS // RECEIVE_POLL_MS):
            if len(self.commands()) >= count:
                break
            page.wait_for_timeout(RECEIVE_POLL_MS)
        commands = self.commands()
        assert len(commands) == count, commands
        return commands

    def restart(self) -> None:
        """Close the session as a replica that shuts down does (1012): the console reconnects."""
        self.sockets[-1].close(code=SERVICE_RESTART, reason="replica shutting down")
