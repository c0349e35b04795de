"""Where a factory is in its two command streams, and which dispatches it already has.

The relay numbers what it delivers to factories in two streams, `all` (messages to every
factory) and `own` (messages targeted at this one): `offset` 1, 2, 3… within an `epoch`,
a string that changes whenever the stream's history was lost. A factory keeps, per
stream, the last cursor it received, resumes from it on every reconnect, and drops a
dispatch it already has (delivery is at least once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STREAMS = ("all", "own")
MAX_EPOCH_LENGTH = 64
"""Longer than any epoch the relay makes; a longer one is not a cursor of ours."""


@dataclass(frozen=True, slots=True)
class Cursor:
    epoch: str
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset}


def parse_cursor(data: Any) -> Cursor | None:
    """`{"epoch","offset"}` as the relay sends it, or None if it is not a usable cursor.

    An empty epoch is never a cursor: resuming from it would match a stream whose
    epoch was never set, and a message of it could never be told from another's.
    """
    if not isinstance(data, Mapping):
        return None
    epoch, offset = data.get("epoch"), data.get("offset")
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
        return None
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return None
    return Cursor(epoch, offset)


def parse_cursors(data: Any) -> dict[str, Cursor]:
    """READY's `cursors` (or a saved copy): the streams whose cursor is usable."""
    if not isinstance(data, Mapping):
        return {}
    parsed = {stream: parse_cursor(data.get(stream)) for stream in STREAMS}
    return {stream: cursor for stream, cursor in parsed.items() if cursor is not None}


def dispatch_cursor(data: Any) -> tuple[str, Cursor] | None:
    """A dispatch's `d.cursor` as (stream, cursor), or None (no cursor: not a stream message)."""
    if not isinstance(data, Mapping):
        return None
    cursor = data.get("cursor")
    stream = cursor.get("stream") if isinstance(cursor, Mapping) else None
    if stream not in STREAMS:
        return None
    parsed = parse_cursor(cursor)
    return None if parsed is None else (stream, parsed)


class CursorBook:
    """Per stream, the last cursor received: what a reconnect resumes from."""

    def __init__(self, cursors: Mapping[str, Cursor] | None = None) -> None:
        self._cursors: dict[str, Cursor] = dict(cursors or {})

    def get(self, stream: str) -> Cursor | None:
        return self._cursors.get(stream)

    def snapshot(self) -> dict[str, Cursor]:
        return dict(self._cursors)

    def resume(self) -> dict[str, dict[str, Any]]:
        """Identify's `resume`: every stream with a cursor (empty: nothing to resume)."""
        return {stream: cursor.to_json() for stream, cursor in self._cursors.items()}

    def start(self, ready_cursors: Mapping[str, Cursor]) -> None:
        """READY's cursors: per stream, the offset after which this session gets everything."""
        self._cursors.update(ready_cursors)

    def accept(self, stream: str, cursor: Cursor) -> bool:
        """Record a dispatch's cursor; False if the client already has it (a duplicate).

        A cursor of another epoch is new: that stream started afresh, and its offsets
        count from the start again.
        """
        last = self._cursors.get(stream)
        if last is not None and last.epoch == cursor.epoch and cursor.offset <= last.offset:
            return False
        self._cursors[stream] = cursor
        return True
