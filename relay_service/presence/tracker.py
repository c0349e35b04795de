"""Presence (which factories are online, and their latest status): the rules, once.

This replica counts its own identified sessions per factory. A factory's first session
here, or its last one closing, marks it for the writer task, which tells the store; a
write that fails stays marked and is retried, so a Redis outage never fails a session.
A first session waits for its write before READY, at most the Redis timeout, so
observers hear the factory online before anything it sends. The store decides
atomically, across replicas:

- online: the first session anywhere makes it online since now (one PRESENCE_UPDATE);
- grace: the last session anywhere closing starts the grace (`PRESENCE_GRACE_MS`); any
  session identifying on any replica meanwhile cancels it and nothing is announced;
- offline: every replica sweeps the factories whose grace ran out; the first to settle one
  announces it offline, since the end of its grace. No replica's timer needs to survive,
  so a replica that drains (1012) and exits leaves nothing behind;
- a replica that dies without closing (SIGKILL) stops heartbeating (every
  `PRESENCE_TTL_SECONDS` / 3); once its heartbeat is `PRESENCE_TTL_SECONDS` old, any other
  replica's sweep takes its sessions away and its factories' grace runs from there;
- after an outage (a failed write, a Redis restart or flush, or being taken for dead) the
  replica writes every factory it has sessions of again, and the latest status of each.

READY's snapshot comes from the replica's `Mirror` (no round trip per READY). The mirror is
fed by what the replica hears on the observer channels, and re-seeded from the store after
every broker reconnect; what the re-seed changes is told to this replica's observers, so
none misses a change made while the broker was away.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from itertools import islice
from typing import Any

from redis.exceptions import RedisError

from relay_service.presence.mirror import Mirror
from relay_service.presence.store import PresenceStore
from shared.clock import now_ms
from shared.identity import username_key
from shared.logging import get_logger
from shared.tasks import cancel_all

log = get_logger(__name__)

Announce = Callable[[str, bool, int], bytes]
"""`(username, online, since)` → the PRESENCE_UPDATE broker message."""
Notify = Callable[[str, bool, int], None]
"""`(username, online, since)`: tell this replica's observers only (a re-seed's findings)."""

WRITE_CONCURRENCY = 64
"""Factories written at once (a reconnect storm after a drain is many first sessions)."""
STATUS_SAVE_SECONDS = 0.5
"""Per factory, at most one status this often is kept by the script that publishes it
(Redis); the others are queued and stored this often, the latest of each factory. So a
factory sending now and then costs no round trip of its own, and one sending many a
second costs Redis about four writes a second. (Observers hear every status live; the
stored one only seeds replicas that start, or re-seed, later.)"""
STATUS_SAVE_BATCH = 500
SWEEP_BATCH = 1000
"""Due factories settled per sweep, at most (the rest on the next sweep)."""
STALE_REPLICAS_BATCH = 10
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
WARN_EVERY_SECONDS = 10.0
"""At most one warning per kind this often: an outage fails every write."""
TRIM_EVERY_SECONDS = 60.0
STORE_ERRORS = (RedisError, OSError)  # TimeoutError is an OSError


class Presence:
    def __init__(
        self,
        store: PresenceStore,
        *,
        grace_ms: int,
        ttl_seconds: int,
        retention_seconds: int,
        timeout_seconds: float,
        snapshot_status_bytes: int,
        announce: Announce,
        notify: Notify,
    ) -> None:
        self.replica_id = uuid.uuid4().hex[:16]
        self.mirror = Mirror()
        self._store = store
        self._grace_ms = grace_ms
        self._ttl_ms = ttl_seconds * 1000
        self._retention_ms = retention_seconds * 1000
        self._timeout = timeout_seconds
        self._snapshot_status_bytes = snapshot_status_bytes
        self._announce = announce
        self._notify = notify
        self._sessions: dict[str, tuple[str, int]] = {}
        """Username key → (username, sessions identified on this replica)."""
        self._dirty: dict[str, str] = {}
        """Factories whose sessions here changed since the store last heard: key → username."""
        self._statuses: dict[str, tuple[str, bytes, int]] = {}
        """Statuses sent through this replica, not yet stored: key → (username, d, ts)."""
        self._kept_at: dict[str, float] = {}
        """Factories whose status was kept with its publish lately: key → when (monotonic);
        forgotten once `STATUS_SAVE_SECONDS` old."""
        self._wake = asyncio.Event()
        self._written: dict[str, asyncio.Future[None]] = {}
        """Joins waiting for the store to have their factory: key → resolved once written."""
        self._needs_seed = True
        self._missing: dict[str, float] = {}
        """Factories the mirror has online that the store did not know at the last seed:
        key → when (monotonic) it was first missed."""
        self._check_missing_at = 0.0
        self._heartbeat_ms = 0
        self._warned_at: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def sweep_seconds(self) -> float:
        """How often every replica settles due factories and looks for dead replicas."""
        return min(1.0, max(0.1, self._grace_ms / 4000))

    @property
    def heartbeat_seconds(self) -> float:
        return self._ttl_ms / 3000

    async def start(self) -> None:
        """Seed the mirror (retried by the sweeper if the store cannot answer), heartbeat,
        then run."""
        await self._try(self._seed, "presence_seed_failed")
        await self._try(self._heartbeat, "presence_heartbeat_failed")  # before any session
        self._tasks = [
            asyncio.create_task(self._write_forever(), name="presence-writer"),
            asyncio.create_task(self._heartbeat_forever(), name="presence-heartbeat"),
            asyncio.create_task(self._sweep_forever(), name="presence-sweeper"),
            asyncio.create_task(self._save_statuses_forever(), name="presence-statuses"),
        ]

    async def stop(self) -> None:
        """Write what is left (the drain closed every session), bounded; then, if all of
        it was written, leave the replicas so nobody waits for this one's TTL."""
        await cancel_all(self._tasks)
        self._tasks = []
        try:
            async with asyncio.timeout(2 * self._timeout):
                await self._write_pending()
                await self._save_statuses()
                if not self._sessions and self._heartbeat_ms:
                    await self._store.forget_replica(self.replica_id, self._heartbeat_ms)
        except (*STORE_ERRORS, TimeoutError) as error:
            log.warning("presence_stop_unwritten", factories=len(self._dirty), error=str(error))

    # -- what the relay tells presence ------------------------------------------------

    async def factory_joined(self, username: str) -> None:
        """A session of this factory identified here. Its first one waits (at most the
        Redis timeout) until the store has it: READY then follows the online
        announcement, so every observer hears the factory online before its statuses."""
        key = username_key(username)
        _, count = self._sessions.get(key, (username, 0))
        self._sessions[key] = (username, count + 1)
        if count:
            return
        self._mark(key, username)
        if not self._tasks:
            return  # not running (before start, after stop): no writer to wait for
        written = self._written.setdefault(key, asyncio.get_running_loop().create_future())
        with suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(written)

    def factory_left(self, username: str) -> None:
        key = username_key(username)
        _, count = self._sessions.get(key, (username, 1))
        if count > 1:
            self._sessions[key] = (username, count - 1)
            return
        self._sessions.pop(key, None)
        self._mark(key, username)

    def keeps_with_publish(self, username: str) -> bool:
        """Whether the factory's status about to be published is to be kept by the script
        that publishes it: yes unless one was, less than `STATUS_SAVE_SECONDS` ago (then
        `status_sent`). An older one still queued is saved all the same: the store keeps the
        later `ts`, and the older one if this publish fails."""
        key = username_key(username)
        now = time.monotonic()
        if now - self._kept_at.get(key, -STATUS_SAVE_SECONDS) < STATUS_SAVE_SECONDS:
            return False
        self._kept_at[key] = now
        return True

    def status_sent(self, username: str, status: bytes, ts_ms: int) -> None:
        """A status this replica published plainly: queued as the factory's latest, for the
        next save (coalesced)."""
        self._statuses[username_key(username)] = (username, status, ts_ms)

    def heard_presence(self, username: str, online: bool, since: int) -> None:
        self.mirror.presence(username, online, since)

    def heard_status(self, username: str, status: bytes, ts_ms: int) -> None:
        self.mirror.status(username, status, ts_ms)

    def reseed(self) -> None:
        """The broker reconnected: what was announced meanwhile was not heard, and the
        statuses sent meanwhile reached this replica's observers only, unkept: the latest
        of each factory with a session here is kept now."""
        self._needs_seed = True
        self._keep_local_statuses()

    def snapshot(self) -> list[dict[str, Any]]:
        listed, left_out = self.mirror.snapshot(
            now_ms() - self._retention_ms, self._snapshot_status_bytes
        )
        if left_out:
            self._warn("presence_snapshot_statuses_left_out", left_out=left_out)
        return listed

    def _mark(self, key: str, username: str) -> None:
        self._dirty[key] = username
        self._wake.set()

    # -- the writer ---------------------------------------------------------------------

    async def _write_forever(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            await self._wake.wait()
            self._wake.clear()
            if await self._try(self._write_pending, "presence_write_failed"):
                delay = RETRY_FIRST_SECONDS
                continue
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_SECONDS)
            self._wake.set()

    async def _write_pending(self) -> None:
        """Tell the store of each factory marked (`WRITE_CONCURRENCY` at a time); whatever
        fails stays marked (the caller retries)."""
        while self._dirty:
            batch = list(islice(self._dirty.items(), WRITE_CONCURRENCY))
            for key, _ in batch:
                del self._dirty[key]
            try:
                results = await asyncio.gather(
                    *(self._write_sessions(key, username) for key, username in batch),
                    return_exceptions=True,
                )
            except BaseException:  # cancelled (the replica stops): written at stop
                for key, username in batch:
                    self._dirty.setdefault(key, username)
                raise
            failure: BaseException | None = None
            for (key, username), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    self._dirty.setdefault(key, username)
                    failure = result
                if key not in self._dirty or failure is not None:
                    self._release(key)  # a session never waits out an outage
            if failure is not None:
                raise failure

    async def _save_statuses_forever(self) -> None:
        while True:
            await asyncio.sleep(STATUS_SAVE_SECONDS)
            self._forget_kept(time.monotonic() - STATUS_SAVE_SECONDS)
            await self._try(self._save_statuses, "presence_status_write_failed")

    def _forget_kept(self, before: float) -> None:
        """Forget the factories whose status was kept with its publish before `before`
        (their next one is kept so again): the map holds recent senders only."""
        self._kept_at = {key: at for key, at in self._kept_at.items() if at >= before}

    async def _save_statuses(self) -> None:
        """Store the statuses queued since the last save, the latest of each factory only,
        `STATUS_SAVE_BATCH` per round trip; what fails is kept (unless a newer one came
        meanwhile) for the next save."""
        while self._statuses:
            batch = list(islice(self._statuses.items(), STATUS_SAVE_BATCH))
            for key, _ in batch:
                del self._statuses[key]
            try:
                await self._store.save_statuses([status for _, status in batch])
            except BaseException:
                for key, status in batch:
                    self._statuses.setdefault(key, status)
                raise

    def _release(self, key: str) -> None:
        written = self._written.pop(key, None)
        if written is not None and not written.done():
            written.set_result(None)

    async def _write_sessions(self, key: str, username: str) -> None:
        now = now_ms()
        _, count = self._sessions.get(key, (username, 0))
        if count:
            online = self._announce(username, True, now)
            await self._store.join(self.replica_id, username, count, now, online)
        else:
            await self._store.leave(self.replica_id, username, now + self._grace_ms)

    def _rewrite_all(self) -> None:
        """The store lost or dropped this replica's state: write all of it again."""
        for key, (username, _) in self._sessions.items():
            self._dirty[key] = username
        self._keep_local_statuses()
        if self._sessions:
            log.info("presence_rewrite", factories=len(self._sessions))
        self._wake.set()

    def _keep_local_statuses(self) -> None:
        """Queue, for the next save, the latest status the mirror has of each factory with
        a session here (the store keeps it unless it has a later one)."""
        for key, (username, _) in self._sessions.items():
            entry = self.mirror.get(username)
            if entry is not None and entry.status is not None:
                self._statuses.setdefault(key, (username, entry.status, entry.status_ts))

    # -- liveness -----------------------------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self._try(self._heartbeat, "presence_heartbeat_failed")

    async def _heartbeat(self) -> None:
        now = now_ms()
        unknown = await self._store.heartbeat(self.replica_id, now)
        self._heartbeat_ms = now
        if unknown:  # new, taken for dead, or Redis lost its data: the others' too
            self._rewrite_all()
            self._needs_seed = True

    # -- the sweeper ----------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        trimmed_at = 0.0
        while True:
            await asyncio.sleep(self.sweep_seconds)
            await self._try(self._bury_dead_replicas, "presence_sweep_failed")
            await self._try(self._settle_due, "presence_sweep_failed")
            if self._needs_seed or 0 < self._check_missing_at <= time.monotonic():
                await self._try(self._seed, "presence_seed_failed")
            if time.monotonic() - trimmed_at >= TRIM_EVERY_SECONDS:
                trimmed_at = time.monotonic()
                await self._try(self._trim, "presence_trim_failed")

    async def _bury_dead_replicas(self) -> None:
        """A replica silent for the TTL is dead: its sessions are gone since its last
        heartbeat, so its factories' grace ends a grace after the TTL ran out."""
        now = now_ms()
        stale = await self._store.stale_replicas(now - self._ttl_ms, STALE_REPLICAS_BATCH)
        for replica, heartbeat_ms in stale:
            if replica == self.replica_id:
                continue  # this one is alive: its own heartbeat will say if it was dropped
            factories = await self._store.factories_of(replica)
            due = heartbeat_ms + self._ttl_ms + self._grace_ms
            for username in factories:
                await self._store.leave(replica, username, due)
            await self._store.forget_replica(replica, heartbeat_ms)
            log.warning("presence_replica_dead", replica=replica, factories=len(factories))

    async def _settle_due(self) -> None:
        for username, due_ms in await self._store.due(now_ms(), SWEEP_BATCH):
            await self._store.settle(username, due_ms, self._announce(username, False, due_ms))

    async def _seed(self) -> None:
        self._needs_seed = False
        try:
            now = now_ms()
            stored = await self._store.load(now - self._retention_ms)
        except BaseException:
            self._needs_seed = True
            raise
        changed, missing = self.mirror.merge(stored, self._sessions.keys())
        # Every live replica writes its factories again within a heartbeat of finding the
        # store without it: one still missing a TTL after it was first missed has nobody.
        ttl, clock = self._ttl_ms / 1000, time.monotonic()
        self._missing = {key: self._missing.get(key, clock) for key in missing}
        for key in [key for key, since in self._missing.items() if clock - since >= ttl]:
            del self._missing[key]
            entry = self.mirror.went_offline(key, now)
            if entry is not None:
                changed.append(entry)
        self._check_missing_at = min(self._missing.values(), default=-ttl) + ttl
        for entry in changed:
            self._notify(entry.username, entry.online, entry.since)
        log.info("presence_seeded", factories=len(self.mirror), missing=len(self._missing))

    async def _trim(self) -> None:
        before = now_ms() - self._retention_ms
        self.mirror.prune(before)
        await self._store.trim(before)

    async def _try(self, step: Callable[[], Any], event: str) -> bool:
        """Run a store step; a failure is logged (rate-limited) and reported as False."""
        try:
            await step()
        except STORE_ERRORS as error:
            self._warn(event, error=str(error) or repr(error))
            return False
        return True

    def _warn(self, event: str, **fields: object) -> None:
        """Log a warning, at most one per kind every `WARN_EVERY_SECONDS`."""
        now = time.monotonic()
        if now - self._warned_at.get(event, -WARN_EVERY_SECONDS) >= WARN_EVERY_SECONDS:
            self._warned_at[event] = now
            log.warning(event, **fields)
