"""Command streams (SPEC 5.2): what the relay keeps for factories that reconnect.

Everything delivered to factories is appended to a stream, `all` (no target) or the
target's `own`, which numbers it (`offset` 1, 2, 3… within an `epoch`) and keeps the last
`COMMAND_HISTORY_SIZE` messages. A stream's `epoch` is made when the stream is first
written or read and changes only when its history is lost (Redis emptied or replaced, or
the relay restarted with the in-process broker): a cursor of another epoch never resumes.

Resume is all or nothing (`replayable`): either every message after the cursor that has
not expired is still kept, and those are replayed in offset order, or nothing is. A gap is
acceptable only where the missing messages are known to have expired: each stream remembers
the highest offset it trimmed (`lost_upto`) and the latest `expires_at` among the trimmed
messages (`lost_until`).

The Redis streams live in `relay_service.broker.redis_streams` (Lua scripts); this module
holds the rules both share and the in-process streams.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple

from relay_service import frames
from relay_service.channels import StreamKeys
from relay_service.frames import StreamMessage

SWEEP_INTERVAL_SECONDS = 60.0
NO_READ = -1
"""`after` of a read that wants the stream's position only, no messages."""


def new_epoch() -> str:
    return secrets.token_hex(frames.EPOCH_BYTES // 2)


class Kept(NamedTuple):
    """A stream as one read saw it: its position and the messages after the asked offset."""

    epoch: str
    head: int
    lost_upto: int
    lost_until: int
    messages: Sequence[bytes]
    """Broker messages in offset order, at most `COMMAND_HISTORY_SIZE`."""


def offset_of(message: bytes) -> int:
    return int(message[45:57])


def expires_at_of(message: bytes) -> int:
    return int(message[15:28])


def replayable(kept: Kept, epoch: str, offset: int, now_ms: int) -> list[bytes] | None:
    """The messages to replay after (`epoch`, `offset`), or None when the stream cannot
    resume: another epoch, a cursor past the head, or a message after the cursor that has
    not expired and is no longer kept. Expired messages are left out of the replay."""
    if epoch != kept.epoch or offset > kept.head:
        return None
    lost_expired = kept.lost_until <= now_ms
    expected, replay = offset + 1, []
    for message in kept.messages:
        found = offset_of(message)
        if found < expected:
            continue
        if found > expected and not (found - 1 <= kept.lost_upto and lost_expired):
            return None
        expected = found + 1
        if expires_at_of(message) > now_ms:
            replay.append(message)
    if expected <= kept.head and not (kept.head <= kept.lost_upto and lost_expired):
        return None
    return replay


@dataclass(slots=True)
class _Stream:
    epoch: str = field(default_factory=new_epoch)
    head: int = 0
    lost_upto: int = 0
    lost_until: int = 0
    messages: deque[bytes] = field(default_factory=deque)
    used_at: float = 0.0
    """Monotonic time of the last append or read."""


class MemoryStreams:
    """The in-process broker's streams: one replica's memory, a new epoch per start.

    Bounded like the Redis ones: `history_size` messages per stream, and a stream unused
    for `idle_seconds` (`COMMAND_TTL_MAX_MS`: everything it held has expired) is forgotten,
    so messages to names that are no factory's do not pile up."""

    def __init__(self, history_size: int, *, idle_seconds: float) -> None:
        self._history_size = history_size
        self._idle_seconds = idle_seconds
        self._streams: dict[str, _Stream] = {}
        self._next_sweep = 0.0

    def _stream(self, keys: StreamKeys) -> _Stream:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + min(self._idle_seconds, SWEEP_INTERVAL_SECONDS)
            idle = now - self._idle_seconds
            for log, stream in list(self._streams.items()):
                if stream.used_at < idle:
                    del self._streams[log]
        stream = self._streams.setdefault(keys.log, _Stream())
        stream.used_at = now
        return stream

    def append(self, keys: StreamKeys, message: StreamMessage) -> bytes:
        """Number `message`, keep it, and return the completed broker message."""
        stream = self._stream(keys)
        stream.head += 1
        completed = frames.complete(message, stream.epoch, stream.head)
        stream.messages.append(completed)
        if len(stream.messages) > self._history_size:
            trimmed = stream.messages.popleft()
            stream.lost_upto = offset_of(trimmed)
            stream.lost_until = max(stream.lost_until, expires_at_of(trimmed))
        return completed

    def read(self, keys: StreamKeys, after: int) -> Kept:
        stream = self._stream(keys)
        kept: list[bytes] = []
        if after != NO_READ:
            first = stream.head - len(stream.messages) + 1  # the kept offsets are consecutive
            kept = list(islice(stream.messages, max(0, after + 1 - first), None))
        return Kept(stream.epoch, stream.head, stream.lost_upto, stream.lost_until, kept)
