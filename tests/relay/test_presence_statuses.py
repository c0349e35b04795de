"""Which statuses the broker keeps with their publish, and which presence queues: at most
one per factory every `STATUS_SAVE_SECONDS` goes with its publish (in process, no Redis)."""

from __future__ import annotations

from relay_service.presence import MemoryStore, Presence


def presence() -> Presence:
    return Presence(
        MemoryStore(lambda _channel, _message: None, lambda username: username),
        grace_ms=5_000,
        ttl_seconds=30,
        retention_seconds=3_600,
        timeout_seconds=1.0,
        snapshot_status_bytes=65_536,
        announce=lambda _username, _online, _since: b"",
        notify=lambda _username, _online, _since: None,
    )


def test_a_factorys_first_status_is_kept_with_its_publish() -> None:
    assert presence().keeps_with_publish("press-7")


def test_the_next_status_soon_after_is_left_to_the_save() -> None:
    tracker = presence()
    tracker.keeps_with_publish("Press-7")
    assert not tracker.keeps_with_publish("press-7")


def test_another_factorys_status_is_kept_with_its_publish() -> None:
    tracker = presence()
    tracker.keeps_with_publish("press-7")
    assert tracker.keeps_with_publish("press-8")
