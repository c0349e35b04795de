"""Each replica's mirror of presence, which READY's snapshot comes from: per factory the
latest `since` wins whatever order updates and re-seeds arrive in, and a re-seed tells what
changed while the replica was deaf."""

from __future__ import annotations

from relay_service.presence.mirror import Mirror
from relay_service.presence.store import Stored

T = 1_764_430_000_000


def test_the_latest_since_wins_whatever_the_order() -> None:
    mirror = Mirror()
    assert mirror.presence("press-7", False, T + 10)
    assert not mirror.presence("press-7", True, T)  # older, arrived later
    assert mirror.snapshot(0, 1000)[0] == [
        {"username": "press-7", "online": False, "since": T + 10, "status": None}
    ]


def test_the_snapshot_lists_online_factories_and_those_offline_within_the_retention() -> None:
    mirror = Mirror()
    mirror.presence("old", False, T - 100)
    mirror.presence("recent", False, T + 100)
    mirror.presence("online", True, T - 100)
    assert [entry["username"] for entry in mirror.snapshot(T, 1000)[0]] == ["online", "recent"]
    mirror.prune(T)
    assert mirror.get("old") is None


def test_the_latest_status_is_kept_as_raw_json() -> None:
    mirror = Mirror()
    mirror.presence("press-7", True, T)
    mirror.status("press-7", b'{"id":"b"}', T + 2)
    mirror.status("press-7", b'{"id":"a"}', T + 1)
    entry = mirror.get("PRESS-7")
    assert entry is not None
    assert entry.status == b'{"id":"b"}'


def test_a_status_heard_before_its_factorys_announcement_shows_it_online() -> None:
    mirror = Mirror()
    mirror.status("press-7", b"{}", T)
    assert mirror.snapshot(0, 1000)[0][0]["online"] is True


def test_a_reseed_returns_what_changed_meanwhile() -> None:
    mirror = Mirror()
    mirror.presence("press-7", True, T)
    mirror.presence("press-8", True, T)
    changed, missing = mirror.merge(
        [
            Stored("press-7", False, T + 5, b'{"id":"s"}', T + 1),
            Stored("press-8", True, T, None, 0),
        ],
        local=(),
    )
    assert [(e.username, e.online, e.since) for e in changed] == [("press-7", False, T + 5)]
    assert missing == set()


def test_a_factory_the_store_lost_is_missing_unless_it_is_local() -> None:
    mirror = Mirror()
    mirror.presence("elsewhere", True, T)
    mirror.presence("here", True, T)
    _, missing = mirror.merge([], local={"here"})
    assert missing == {"elsewhere"}
    entry = mirror.went_offline("elsewhere", T + 30_000)
    assert entry is not None
    assert (entry.online, entry.since) == (False, T + 30_000)


def test_the_snapshots_statuses_stay_within_their_byte_budget() -> None:
    mirror = Mirror()
    for name in ("a", "b", "c"):
        mirror.status(name, b'{"payload":"' + b"x" * 80 + b'"}', T)
    listed, left_out = mirror.snapshot(0, 200)
    assert [entry["status"] is not None for entry in listed] == [True, True, False]
    assert left_out == 1
