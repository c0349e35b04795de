"""The rules every command stream follows (SPEC 5.2), on the in-process streams and the
pure resume check the Redis streams share."""

from __future__ import annotations

import time

import pytest

from relay_service import frames
from relay_service.channels import Channels, Stream
from relay_service.streams import NO_READ, Kept, MemoryStreams, offset_of, replayable
from shared.protocol import Op

KEYS = Channels("rules").stream(Stream.OWN, "press-7")
NOW = 1_800_000_000_000


def message(expires_at: int) -> frames.StreamMessage:
    stamped = {"id": "c", "from": {}, "target": "press-7", "payload": 1, "ts": 1}
    stamped["expires_at"] = expires_at
    return frames.stream_message(Op.COMMAND, None, stamped, stream=frames.OWN, target="press-7")


def kept(*offsets: int, head: int, lost_upto: int = 0, lost_until: int = 0) -> Kept:
    return Kept(
        "e" * 16,
        head,
        lost_upto,
        lost_until,
        [frames.complete(message(NOW + 1000), "e" * 16, offset) for offset in offsets],
    )


def test_a_whole_history_after_the_cursor_is_replayed_in_order() -> None:
    replay = replayable(kept(3, 4, 5, head=5), "e" * 16, 2, NOW)

    assert replay is not None
    assert [offset_of(m) for m in replay] == [3, 4, 5]


def test_a_cursor_at_the_head_resumes_with_nothing_to_replay() -> None:
    assert replayable(kept(head=5), "e" * 16, 5, NOW) == []


@pytest.mark.parametrize("epoch", ["", "f" * 16, "E" * 16])
def test_another_epoch_never_resumes(epoch: str) -> None:
    assert replayable(kept(3, head=3), epoch, 2, NOW) is None


def test_a_cursor_past_the_head_never_resumes() -> None:
    assert replayable(kept(head=3), "e" * 16, 4, NOW) is None


def test_a_missing_message_that_has_not_expired_prevents_the_resume() -> None:
    assert replayable(kept(4, 5, head=5, lost_upto=3, lost_until=NOW + 1), "e" * 16, 1, NOW) is None


def test_missing_messages_that_all_expired_do_not_prevent_the_resume() -> None:
    replay = replayable(kept(4, 5, head=5, lost_upto=3, lost_until=NOW - 1), "e" * 16, 1, NOW)

    assert replay is not None
    assert [offset_of(m) for m in replay] == [4, 5]


def test_a_history_lost_behind_the_head_prevents_the_resume() -> None:
    """The log was evicted while the meta survived: offsets up to the head are unaccounted."""
    assert replayable(kept(head=5), "e" * 16, 2, NOW) is None


def test_expired_messages_are_left_out_of_a_replay() -> None:
    history = kept(2, 3, head=3)
    stale = frames.complete(message(NOW - 1), "e" * 16, 2)
    replay = replayable(history._replace(messages=[stale, history.messages[1]]), "e" * 16, 1, NOW)

    assert replay is not None
    assert [offset_of(m) for m in replay] == [3]


def test_memory_streams_number_from_1_and_keep_at_most_the_history_size() -> None:
    streams = MemoryStreams(3, idle_seconds=60)
    for _ in range(5):
        streams.append(KEYS, message(NOW + 1000))

    history = streams.read(KEYS, 0)

    assert (history.head, history.lost_upto, history.lost_until) == (5, 2, NOW + 1000)
    assert [offset_of(m) for m in history.messages] == [3, 4, 5]


def test_memory_streams_read_only_after_the_given_offset() -> None:
    streams = MemoryStreams(10, idle_seconds=60)
    for _ in range(4):
        streams.append(KEYS, message(NOW + 1000))

    assert [offset_of(m) for m in streams.read(KEYS, 2).messages] == [3, 4]
    assert streams.read(KEYS, NO_READ).messages == []


def test_a_memory_stream_unused_for_its_idle_time_is_forgotten() -> None:
    streams = MemoryStreams(10, idle_seconds=0.05)
    streams.append(KEYS, message(NOW + 1000))
    epoch = streams.read(KEYS, NO_READ).epoch
    time.sleep(0.1)

    other = Channels("rules").stream(Stream.ALL)
    streams.read(other, NO_READ)  # any use sweeps

    assert streams.read(KEYS, NO_READ).epoch != epoch
