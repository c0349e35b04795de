"""The state file: committed cursors and executed ids, saved atomically, read defensively."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from relay_client.cursors import Cursor
from relay_client.state import (
    FORMAT,
    MAX_STATE_FILE_BYTES,
    ClientState,
    RecentIds,
    load_state,
    save_state,
)

EPOCH = "3f2a9c0d11e4b7a8"
NEW_EPOCH = "77aa00bb11cc22dd"
USER = "press-7"


def saved(path: Path, state: ClientState) -> Path:
    save_state(path, orjson.dumps(state.to_json()))
    return path


def test_the_state_comes_back_from_its_file(tmp_path: Path) -> None:
    state = ClientState(USER, {"all": Cursor(EPOCH, 3), "own": Cursor(NEW_EPOCH, 9)})
    state.executed.add("cmd-1")
    state.executed.add("cmd-2")
    loaded = load_state(saved(tmp_path / "state.json", state), USER)
    assert loaded.cursors == state.cursors
    assert loaded.executed.to_list() == ["cmd-1", "cmd-2"]


def test_a_missing_file_is_a_fresh_start_without_a_warning(tmp_path: Path) -> None:
    with capture_logs() as logs:
        state = load_state(tmp_path / "absent.json", USER)
    assert (state.cursors, len(state.executed)) == ({}, 0)
    assert [line for line in logs if line["log_level"] == "warning"] == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"cursors": {}}', id="another-programs"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(
            orjson.dumps({"format": FORMAT, "cursors": {"own": {"epoch": "", "offset": 1}}}),
            id="empty-epoch",
        ),
        pytest.param(
            orjson.dumps({"format": FORMAT, "cursors": {}, "executed": ["has space"]}),
            id="bad-id",
        ),
    ],
)
def test_a_corrupt_or_foreign_file_is_ignored_with_one_warning(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with capture_logs() as logs:
        state = load_state(path, USER)
    assert state.cursors == {}
    assert [line["event"] for line in logs if line["log_level"] == "warning"] == [
        "relay_state_ignored"
    ]


def test_another_users_file_is_ignored(tmp_path: Path) -> None:
    path = saved(tmp_path / "state.json", ClientState("press-8", {"own": Cursor(EPOCH, 3)}))
    with capture_logs() as logs:
        state = load_state(path, USER)
    assert state.cursors == {}
    [warning] = [line for line in logs if line["log_level"] == "warning"]
    assert "press-8" in warning["reason"]


def test_a_file_past_the_size_bound_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b" " * (MAX_STATE_FILE_BYTES + 1))
    with capture_logs() as logs:
        state = load_state(path, USER)
    assert state.cursors == {}
    assert [line["event"] for line in logs] == ["relay_state_ignored"]


def test_saving_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    saved(path, ClientState(USER, {"own": Cursor(EPOCH, 1)}))
    saved(path, ClientState(USER, {"own": Cursor(EPOCH, 2)}))
    assert json.loads(path.read_text())["cursors"] == {"own": {"epoch": EPOCH, "offset": 2}}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_remembered_ids_forget_the_oldest_past_their_bound() -> None:
    ids = RecentIds(limit=3, ids=["a", "b", "c"])
    ids.add("d")
    assert ids.to_list() == ["b", "c", "d"]
    assert "a" not in ids


def test_a_file_with_more_ids_than_remembered_keeps_the_newest(tmp_path: Path) -> None:
    state = ClientState(USER, executed=RecentIds(10, [f"cmd-{n}" for n in range(10)]))
    loaded = load_state(saved(tmp_path / "state.json", state), USER, remembered=4)
    assert loaded.executed.to_list() == ["cmd-6", "cmd-7", "cmd-8", "cmd-9"]


def test_a_commit_moves_the_stream_forward_only() -> None:
    state = ClientState(USER, {"own": Cursor(EPOCH, 5)})
    assert not state.commit("own", Cursor(EPOCH, 4), current_epoch=EPOCH)
    assert state.commit("own", Cursor(EPOCH, 6), current_epoch=EPOCH)
    assert state.cursors["own"] == Cursor(EPOCH, 6)


def test_a_commit_of_an_epoch_the_stream_no_longer_has_moves_nothing() -> None:
    state = ClientState(USER, {"own": Cursor(NEW_EPOCH, 0)})
    assert not state.commit("own", Cursor(EPOCH, 7), current_epoch=NEW_EPOCH)
    assert state.cursors["own"] == Cursor(NEW_EPOCH, 0)
