"""Factories' side of the command streams: a resume at Identify, and filling the gap a
broker reconnect left (SPEC 5.2; the streams themselves: `relay_service.streams`).

At Identify a factory's two streams are read in one round trip: their positions, and
for a resume the messages kept after each cursor. A stream resumes only whole
(`streams.replayable`); READY says per stream whether it did, and its `cursors` give
where the session starts: the resume cursor (its replay follows READY) or the head.

After the broker reconnects, each stream with sessions here is read from the oldest
cursor among them, and what was missed is handed to the hub like a live message; each
session skips what it already has.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

from relay_service import frames, metrics
from relay_service.broker.base import Broker
from relay_service.channels import Channels, Stream, StreamKeys
from relay_service.frames import STREAM_BYTES
from relay_service.host import Welcome
from relay_service.hub import Hub
from relay_service.streams import NO_READ, Kept, replayable
from shared.clock import now_ms
from shared.logging import get_logger
from shared.protocol import CloseCode, Cursor, ProtocolError, ResumeData

log = get_logger(__name__)

GAP_READ_BATCH = 200
"""Streams read per round trip when filling a gap (a replica may serve thousands)."""


class CommandStreams:
    def __init__(self, broker: Broker, channels: Channels) -> None:
        self._broker = broker
        self._channels = channels

    async def welcome(self, factory: str, resume: ResumeData | None) -> Welcome:
        """READY's `cursors` (and `resumed`), and the replay of the streams that resume."""
        asked = {stream: _cursor(resume, stream) for stream in Stream}
        reads = [
            (self._channels.stream(stream, factory), NO_READ if cursor is None else cursor.offset)
            for stream, cursor in asked.items()
        ]
        streams = await self._read(reads)
        now = now_ms()
        cursors: dict[str, dict[str, Any]] = {}
        positions: dict[bytes, tuple[str, int]] = {}
        resumed: dict[str, bool] = {}
        replay: list[frames.Dispatch] = []
        for (stream, cursor), kept in zip(asked.items(), streams, strict=True):
            messages = None if cursor is None else _replay(kept, cursor, now)
            offset = kept.head if messages is None or cursor is None else cursor.offset
            cursors[stream.value] = {"epoch": kept.epoch, "offset": offset}
            positions[STREAM_BYTES[stream]] = (kept.epoch, offset)
            resumed[stream.value] = messages is not None
            replay.extend(frames.unpack(message) for message in messages or ())
        if resume is None:
            return Welcome({"cursors": cursors}, (), positions)
        _count_resumes(resumed, len(replay))
        return Welcome(
            {"cursors": cursors, "resumed": resumed},
            replay,
            positions,
            {"resumed": resumed, "replayed": len(replay)},
        )

    async def fill_gaps(self, hub: Hub) -> None:
        """Hand the hub every kept message its factory sessions missed while the broker
        was away; called by the broker's listener before it reads anything newer."""
        wanted = dict(_oldest_cursors(hub, self._channels))
        filled = 0
        items = iter(wanted.items())
        while batch := list(islice(items, GAP_READ_BATCH)):
            positions = await self._broker.read_streams([(keys, NO_READ) for keys, _ in batch])
            reads = [
                (keys, _after(oldest, kept.epoch))
                for (keys, oldest), kept in zip(batch, positions, strict=True)
            ]
            now = now_ms()
            for kept in await self._broker.read_streams(reads):
                for message in kept.messages:
                    hub.deliver_kept(frames.unpack(message), now_ms=now)
                    filled += 1
        if filled:
            metrics.STREAM_REPLAYED.labels(reason="gap").inc(filled)
            log.info("broker_gap_filled", messages=filled, streams=len(wanted))

    async def _read(self, reads: Sequence[tuple[StreamKeys, int]]) -> list[Kept]:
        try:
            return await self._broker.read_streams(reads)
        except Exception as error:  # Redis down or slow: the factory retries
            log.warning("command_streams_unavailable", error=str(error) or repr(error))
            raise ProtocolError(
                CloseCode.UNKNOWN_ERROR, "command history unavailable, retry"
            ) from None


def _replay(kept: Kept, cursor: Cursor, now: int) -> list[bytes] | None:
    return replayable(kept, cursor.epoch, cursor.offset, now)


def _cursor(resume: ResumeData | None, stream: Stream) -> Cursor | None:
    """The cursor a factory's Identify gave for `stream`, if any."""
    if resume is None:
        return None
    return resume.all if stream is Stream.ALL else resume.own


def _count_resumes(resumed: dict[str, bool], replayed: int) -> None:
    for ok in resumed.values():
        metrics.STREAM_RESUMES.labels(result="resumed" if ok else "afresh").inc()
    if replayed:
        metrics.STREAM_REPLAYED.labels(reason="resume").inc(replayed)


def _oldest_cursors(hub: Hub, channels: Channels) -> Iterator[tuple[StreamKeys, dict[str, int]]]:
    """Per stream with sessions here, per epoch, the oldest message they all have: the
    last one the hub handed them, or a session's floor (what it resumed or started from)."""
    everyone: dict[str, int] = {}
    _include(everyone, hub.heard(frames.ALL))
    for factory, sessions in hub.factory_sessions():
        own: dict[str, int] = {}
        _include(own, hub.heard(frames.OWN, factory))
        for session in sessions:
            _include(everyone, session.floor(frames.ALL))
            _include(own, session.floor(frames.OWN))
        if own:
            yield channels.stream(Stream.OWN, factory), own
    if everyone and hub.has_factories:
        yield channels.stream(Stream.ALL), everyone


def _include(oldest: dict[str, int], position: tuple[str, int] | None) -> None:
    if position is not None:
        epoch, offset = position
        oldest[epoch] = min(offset, oldest.get(epoch, offset))


def _after(oldest: dict[str, int], epoch: str) -> int:
    """Read after the oldest cursor of the stream's epoch; a session of an older epoch
    (the history was lost meanwhile) needs all of the new one."""
    if set(oldest) == {epoch}:
        return oldest[epoch]
    return 0
