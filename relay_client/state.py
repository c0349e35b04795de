"""What a factory keeps across its own restarts: a small JSON state file.

It holds, per stream, the cursor of the last message the application finished with
(acted on: a restart resumes after it), and the ids of the commands executed recently
(so that a command delivered again is not executed twice). It is written atomically
(a temporary file beside it, fsync, rename, fsync of the directory), so a crash or a
power loss leaves the old file or the new one, never half of one. A file that cannot be
used (too big, not JSON, another program's, another user's) is ignored with one warning,
and the factory starts afresh: the relay's history fills what it still keeps.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from relay_client.cursors import STREAMS, Cursor, parse_cursor
from shared.logging import get_logger
from shared.protocol import MESSAGE_ID_PATTERN

log = get_logger(__name__)

FORMAT = "factory-relay-client-state/1"
"""Names the file's layout; a file without it is not ours."""
DEFAULT_REMEMBERED_IDS = 1_000
MAX_REMEMBERED_IDS = 100_000
MAX_STATE_FILE_BYTES = 8 * 1024 * 1024
"""Larger than any file this module writes (100,000 ids of 64 characters); a larger one
is not ours and is not read."""
_MESSAGE_ID = re.compile(MESSAGE_ID_PATTERN)


class RecentIds:
    """The last `limit` ids added, oldest forgotten first: a bounded set."""

    def __init__(self, limit: int = DEFAULT_REMEMBERED_IDS, ids: Iterable[str] = ()) -> None:
        if not 1 <= limit <= MAX_REMEMBERED_IDS:
            raise ValueError(f"limit must be from 1 to {MAX_REMEMBERED_IDS}")
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        for message_id in ids:
            self.add(message_id)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def to_list(self) -> list[str]:
        return list(self._ids)


class ClientState:
    """Committed cursors and recently executed command ids, of one factory user."""

    def __init__(
        self,
        username: str | None = None,
        cursors: Mapping[str, Cursor] | None = None,
        executed: RecentIds | None = None,
    ) -> None:
        self.username = username
        self.cursors: dict[str, Cursor] = dict(cursors or {})
        self.executed = executed or RecentIds()

    def commit(self, stream: str, cursor: Cursor, current_epoch: str | None) -> bool:
        """The application finished the message at `cursor`; True if that moved the stream.

        A message of an epoch the stream no longer has (it started afresh since) moves
        nothing: resuming from it could only fail.
        """
        if cursor.epoch != current_epoch:
            return False
        last = self.cursors.get(stream)
        if last is not None and last.epoch == cursor.epoch and cursor.offset <= last.offset:
            return False
        self.cursors[stream] = cursor
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "username": self.username,
            "cursors": {stream: cursor.to_json() for stream, cursor in self.cursors.items()},
            "executed": self.executed.to_list(),
        }


class StateFileError(ValueError):
    """The file is not a state file this client can use; the message says why."""


def parse_state(
    raw: bytes, username: str | None, remembered: int = DEFAULT_REMEMBERED_IDS
) -> ClientState:
    """A state file's content; raises StateFileError if it is corrupt or not ours."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise StateFileError(f"not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileError(f"not a state file (no format {FORMAT!r})")
    owner = data.get("username")
    if username is not None and owner != username:
        raise StateFileError(f"belongs to {owner!r}, not {username!r}")
    return ClientState(
        owner if isinstance(owner, str) else username,
        _parse_cursors(data.get("cursors")),
        RecentIds(remembered, _parse_ids(data.get("executed"))),
    )


def _parse_cursors(data: Any) -> dict[str, Cursor]:
    if not isinstance(data, dict) or not set(data) <= set(STREAMS):
        raise StateFileError("cursors: not an object of the streams all and own")
    cursors = {stream: parse_cursor(value) for stream, value in data.items()}
    if any(cursor is None for cursor in cursors.values()):
        raise StateFileError("cursors: a cursor without a usable epoch and offset")
    return {stream: cursor for stream, cursor in cursors.items() if cursor is not None}


def _parse_ids(data: Any) -> list[str]:
    if not isinstance(data, list) or len(data) > MAX_REMEMBERED_IDS:
        raise StateFileError(f"executed: not a list of at most {MAX_REMEMBERED_IDS} ids")
    for message_id in data:
        if not _is_message_id(message_id):
            raise StateFileError("executed: an entry that is not a message id")
    return data


def _is_message_id(value: object) -> bool:
    return isinstance(value, str) and _MESSAGE_ID.fullmatch(value) is not None


def load_state(
    path: Path, username: str | None, remembered: int = DEFAULT_REMEMBERED_IDS
) -> ClientState:
    """The state saved at `path`, or a fresh one (a missing file is a first start; an
    unusable one is logged once and ignored, and the next save replaces it)."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_STATE_FILE_BYTES + 1)
    except FileNotFoundError:
        log.info("relay_state_new", path=str(path))
        return ClientState(username, executed=RecentIds(remembered))
    except OSError as error:
        return _ignored(path, username, remembered, f"unreadable: {error}")
    if len(raw) > MAX_STATE_FILE_BYTES:
        return _ignored(path, username, remembered, f"larger than {MAX_STATE_FILE_BYTES} bytes")
    try:
        state = parse_state(raw, username, remembered)
    except StateFileError as error:
        return _ignored(path, username, remembered, str(error))
    log.info(
        "relay_state_loaded",
        path=str(path),
        cursors={stream: cursor.to_json() for stream, cursor in state.cursors.items()},
        remembered_ids=len(state.executed),
    )
    return state


def _ignored(path: Path, username: str | None, remembered: int, reason: str) -> ClientState:
    log.warning("relay_state_ignored", path=str(path), reason=reason)
    return ClientState(username, executed=RecentIds(remembered))


def save_state(path: Path, content: bytes) -> None:
    """Replace the file at `path` with `content`, atomically and durably (see the module)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (on systems that can open a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
