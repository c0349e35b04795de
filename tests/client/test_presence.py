"""The factories' presence an observer's client keeps: snapshot, then updates."""

from __future__ import annotations

from relay_client.presence import FactoryPresence, PresenceBook

STATUS = {"id": "s-1", "from": {"username": "press-7"}, "payload": {"state": "idle"}, "ts": 150}


def snapshot_entry(online: bool, since: int, status: object = None) -> dict[str, object]:
    return {"username": "press-7", "online": online, "since": since, "status": status}


def test_the_snapshot_fills_the_dict() -> None:
    book = PresenceBook()
    changed = book.snapshot([snapshot_entry(True, 100, STATUS)])
    assert changed == [FactoryPresence("press-7", True, 100, STATUS)]
    assert book.factories == {"press-7": changed[0]}


def test_an_update_with_a_later_since_wins_and_keeps_the_last_status() -> None:
    book = PresenceBook()
    book.snapshot([snapshot_entry(True, 100, STATUS)])
    changed = book.update({"username": "press-7", "online": False, "since": 200})
    assert changed == FactoryPresence("press-7", False, 200, STATUS)


def test_an_update_older_than_what_the_client_has_is_ignored() -> None:
    book = PresenceBook()
    book.snapshot([snapshot_entry(False, 300)])
    assert book.update({"username": "press-7", "online": True, "since": 200}) is None
    assert book.factories["press-7"].online is False


def test_an_update_repeating_the_snapshot_changes_nothing() -> None:
    book = PresenceBook()
    book.snapshot([snapshot_entry(True, 100)])
    assert book.update({"username": "press-7", "online": True, "since": 100}) is None


def test_a_status_becomes_the_factorys_latest() -> None:
    book = PresenceBook()
    book.snapshot([snapshot_entry(True, 100)])
    assert book.status("press-7", STATUS) == FactoryPresence("press-7", True, 100, STATUS)


def test_a_status_of_an_unknown_factory_shows_it_online() -> None:
    assert PresenceBook().status("press-7", STATUS) == FactoryPresence("press-7", True, 150, STATUS)


def test_entries_that_are_not_presence_are_skipped() -> None:
    book = PresenceBook()
    assert book.snapshot([{"username": "press-7"}, "x", snapshot_entry(True, True)]) == []
    assert book.snapshot(None) == []


def test_a_new_snapshot_forgets_the_factories_it_leaves_out() -> None:
    book = PresenceBook()
    book.snapshot([snapshot_entry(False, 100), {**snapshot_entry(True, 50), "username": "p-2"}])
    book.snapshot([{**snapshot_entry(True, 60), "username": "p-2"}])
    assert list(book.factories) == ["p-2"]


def test_a_new_snapshot_keeps_an_entry_heard_later_than_it() -> None:
    book = PresenceBook()
    book.snapshot([snapshot_entry(True, 100)])
    book.update({"username": "press-7", "online": False, "since": 300})
    assert book.snapshot([snapshot_entry(True, 100)]) == []
    assert book.factories["press-7"].online is False
