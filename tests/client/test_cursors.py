"""Cursor bookkeeping: what a factory resumes from, and which dispatches are duplicates."""

from __future__ import annotations

from typing import Any

import pytest

from relay_client.cursors import Cursor, CursorBook, dispatch_cursor, parse_cursor, parse_cursors

EPOCH = "3f2a9c0d11e4b7a8"
OTHER_EPOCH = "0000000000000001"


def test_a_dispatch_at_or_below_the_last_offset_of_its_epoch_is_a_duplicate() -> None:
    book = CursorBook()
    assert book.accept("own", Cursor(EPOCH, 5))
    assert not book.accept("own", Cursor(EPOCH, 5))
    assert not book.accept("own", Cursor(EPOCH, 4))
    assert book.accept("own", Cursor(EPOCH, 6))


def test_the_streams_count_apart() -> None:
    book = CursorBook()
    assert book.accept("own", Cursor(EPOCH, 5))
    assert book.accept("all", Cursor(EPOCH, 1))


def test_a_dispatch_of_another_epoch_is_new() -> None:
    book = CursorBook({"own": Cursor(EPOCH, 40)})
    assert book.accept("own", Cursor(OTHER_EPOCH, 1))
    assert book.get("own") == Cursor(OTHER_EPOCH, 1)


def test_resume_carries_the_last_cursor_received_of_each_stream() -> None:
    book = CursorBook()
    book.start({"all": Cursor(EPOCH, 10), "own": Cursor(OTHER_EPOCH, 0)})
    book.accept("all", Cursor(EPOCH, 11))
    assert book.resume() == {
        "all": {"epoch": EPOCH, "offset": 11},
        "own": {"epoch": OTHER_EPOCH, "offset": 0},
    }


def test_nothing_to_resume_before_the_first_ready() -> None:
    assert CursorBook().resume() == {}


def test_readys_cursors_replace_what_the_stream_had() -> None:
    book = CursorBook({"own": Cursor(EPOCH, 40)})
    book.start({"own": Cursor(OTHER_EPOCH, 3)})
    assert book.get("own") == Cursor(OTHER_EPOCH, 3)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"epoch": "", "offset": 3}, id="empty-epoch"),
        pytest.param({"epoch": None, "offset": 3}, id="null-epoch"),
        pytest.param({"epoch": EPOCH, "offset": -1}, id="negative-offset"),
        pytest.param({"epoch": EPOCH, "offset": True}, id="boolean-offset"),
        pytest.param({"epoch": EPOCH, "offset": 1.5}, id="fractional-offset"),
        pytest.param({"epoch": "x" * 65, "offset": 1}, id="overlong-epoch"),
        pytest.param({"offset": 1}, id="no-epoch"),
        pytest.param([EPOCH, 1], id="not-an-object"),
    ],
)
def test_a_cursor_without_a_usable_epoch_and_offset_is_no_cursor(data: Any) -> None:
    assert parse_cursor(data) is None


def test_readys_cursors_keep_only_the_usable_streams() -> None:
    data = {"all": {"epoch": "", "offset": 0}, "own": {"epoch": EPOCH, "offset": 2}, "x": {}}
    assert parse_cursors(data) == {"own": Cursor(EPOCH, 2)}


def test_a_dispatch_names_its_stream_and_cursor() -> None:
    data = {"id": "c-1", "cursor": {"stream": "own", "epoch": EPOCH, "offset": 42}}
    assert dispatch_cursor(data) == ("own", Cursor(EPOCH, 42))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"id": "s-1"}, id="no-cursor"),
        pytest.param({"cursor": {"stream": "other", "epoch": EPOCH, "offset": 1}}, id="stream"),
        pytest.param({"cursor": {"stream": "all", "epoch": "", "offset": 1}}, id="empty-epoch"),
    ],
)
def test_a_dispatch_without_a_usable_cursor_is_not_a_stream_message(data: Any) -> None:
    assert dispatch_cursor(data) is None
