"""A factory's place in its command streams, kept across reconnects and restarts.

In memory, per stream, the last cursor received: every reconnect resumes from it, and a
dispatch at or below it is a duplicate. With a state file, per stream, the cursor of the
last message the application finished with (`commit`) and the ids of the commands it
executed: a restart resumes from those (`relay_client.state`). READY says per stream
whether the relay resumed it; both are logged, with the number of messages replayed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from relay_client.cursors import Cursor, CursorBook
from relay_client.messages import Message
from relay_client.state import ClientState, RecentIds, load_state, save_state
from shared.clock import now_ms
from shared.logging import get_logger

log = get_logger(__name__)


class StreamKeeper:
    """The streams' bookkeeping of one `RelayClient` (see the module)."""

    def __init__(
        self,
        state_file: Path | None,
        remembered_ids: int,
        clock_skew_ms: int,
        deliver_expired: bool,
    ) -> None:
        self._state_file = state_file
        self._remembered_ids = remembered_ids
        self._clock_skew_ms = clock_skew_ms
        self._deliver_expired = deliver_expired
        self._loaded = False
        self._save_lock = asyncio.Lock()
        self.state = ClientState(executed=RecentIds(remembered_ids))
        self.received = CursorBook()
        self._replaying: dict[str, int] = {}
        self._ready_ms = 0

    async def load(self, username: str | None) -> None:
        """Once, before the first Identify: the state file of this user, if any."""
        if self._loaded:
            return
        self._loaded = True
        if self._state_file is None:
            self.state.username = username
            return
        self.state = await asyncio.to_thread(
            load_state, self._state_file, username, self._remembered_ids
        )
        self.received = CursorBook(self.state.cursors)

    def start(self, cursors: dict[str, Cursor], resumed: Any) -> None:
        """READY's cursors: where each stream starts, and whether it resumed (logged).

        A stream that started afresh is committed at its new start at once, so a restart
        before its first message resumes from there, not from a cursor the relay refused.
        """
        asked = self.received.snapshot()
        self.received.start(cursors)
        self._ready_ms = now_ms()
        self._replaying = {}
        for stream, cursor in cursors.items():
            if isinstance(resumed, dict) and resumed.get(stream) is True:
                self._replaying[stream] = 0
                self.state.cursors.setdefault(stream, cursor)
                log.info("relay_stream_resumed", stream=stream, **cursor.to_json())
            else:
                self.state.cursors[stream] = cursor
                reason = "not resumable" if stream in asked else "no cursor to resume from"
                log.info("relay_stream_afresh", stream=stream, reason=reason, **cursor.to_json())

    def admit(self, message: Message) -> bool:
        """Whether the application gets this dispatch: not a duplicate, not expired."""
        if message.stream is not None and message.cursor is not None:
            if not self.received.accept(message.stream, message.cursor):
                log.info("relay_duplicate_dropped", id=message.id, stream=message.stream)
                return False
            self._count_replayed(message)
        if self.expired(message):
            log.warning(
                "relay_expired_dispatch",
                id=message.id,
                expires_at=message.expires_at,
                dropped=not self._deliver_expired,
            )
            return self._deliver_expired
        return True

    def expired(self, message: Message, now: int | None = None) -> bool:
        if message.expires_at is None:
            return False
        return (now_ms() if now is None else now) > message.expires_at + self._clock_skew_ms

    def replay_done(self) -> None:
        """The replay is over (a heartbeat ACK came after it): log what it brought."""
        if self._replaying:
            log.info("relay_replayed", **self._replaying)
            self._replaying = {}

    def _count_replayed(self, message: Message) -> None:
        """A stream message stamped before READY was missed and replayed; the first one
        stamped after it ends the replay."""
        if not self._replaying:
            return
        if message.ts >= self._ready_ms:
            self.replay_done()
        elif message.stream in self._replaying:
            self._replaying[message.stream] += 1

    async def commit(self, message: Message) -> None:
        if message.stream is None or message.cursor is None:
            return
        current = self.received.get(message.stream)
        epoch = None if current is None else current.epoch
        if self.state.commit(message.stream, message.cursor, epoch):
            await self.save()

    async def remember_executed(self, message_id: str) -> None:
        if message_id not in self.state.executed:
            self.state.executed.add(message_id)
            await self.save()

    async def save(self) -> None:
        """Write the state file (if any) with the state as it is now; a failure is logged."""
        if self._state_file is None:
            return
        async with self._save_lock:
            content = orjson.dumps(self.state.to_json())
            try:
                await asyncio.to_thread(save_state, self._state_file, content)
            except OSError as error:
                log.warning("relay_state_not_saved", path=str(self._state_file), error=str(error))
