"""What the relay delivers, as the client hands it to the application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay_client.cursors import Cursor, dispatch_cursor


@dataclass(frozen=True, slots=True)
class Sender:
    id: str
    username: str
    type: str


@dataclass(frozen=True, slots=True)
class Message:
    """A dispatch the relay delivered: a Command (4), Status (5) or Event (6)."""

    op: int
    name: str | None
    id: str
    sender: Sender
    target: str | None
    payload: Any
    ts: int
    sequence: int
    expires_at: int | None = None
    """To factories: when the relay stops delivering it (ms since the epoch); act on it
    no later (`RelayClient.expired`)."""
    stream: str | None = None
    """To factories: `all` or `own`, the stream `cursor` counts in."""
    cursor: Cursor | None = None

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Message:
        d = frame["d"]
        stream, cursor = dispatch_cursor(d) or (None, None)
        expires_at = d.get("expires_at")
        return cls(
            op=frame["op"],
            name=frame.get("t"),
            id=d["id"],
            sender=Sender(**d["from"]),
            target=d.get("target"),
            payload=d.get("payload"),
            ts=d["ts"],
            sequence=frame["s"],
            expires_at=expires_at if type(expires_at) is int else None,
            stream=stream,
            cursor=cursor,
        )
