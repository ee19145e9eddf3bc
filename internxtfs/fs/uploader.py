"""Background publishing of dirty files: encrypt-then-upload, then create or replace the entry.

A file is uploaded after ``quiet_period`` seconds without a new :meth:`Uploader.schedule` (so
a file being written is not uploaded at every close), several files at a time. One upload:

1. pin the file in the block cache, fetch whatever remote blocks it lacks (``ensure_complete``)
   and snapshot ``generation``, ``size`` and ``mtime_ns``;
2. ``remote.upload(reader, size)`` streams the cache file into a new network object (size 0:
   no object); if the file changed meanwhile (generation moved) the object is *not* published
   (it would mix two versions): it is recorded as an orphan and the file is uploaded again;
3. under the file's lock (``locks``: the operations layer takes it for rename/unlink), the
   record is re-read: the object id is journaled as ``pending_file_id`` first, then the entry is
   created in the record's *current* parent/name (a rename of a file never uploaded only
   changed the journal) or, if it exists, pointed at the new object (``replace_file``: old or
   new content is always there, never neither);
4. one journal transaction stores the remote identity and, if the generation still matches,
   marks the file clean (``BlockCache.mark_clean``); otherwise it stays dirty and is queued
   again.

What happens when Internxt disagrees (the entry changed elsewhere, the name is taken, the
folder is gone) is the conflict policy's to decide (fs/conflicts.py): before a replace,
``keep_both_if_changed``; a create answered with Conflict goes to the ``on_conflict`` hook,
which returns the uuid of an entry to replace with our content, or None to try the create again
with the record as the hook left it (e.g. renamed), or raises (default: the Conflict is
recorded as the file's error, it stays dirty and is retried with backoff); a create whose
folder is gone goes to the ``RecoveryFolder``.

Records in state DELETE_PENDING (fs/lifecycle.py) are remote deletes not sent yet: the entry
is deleted (NotFound counts as done), then the record and the cache file go. Every unlink of a
stored file ends here (at once, or at the last close of a file unlinked while open: HELD until
then, and left alone), so a tree's deletes share the upload slots and run several at a time;
fs/namespace.py makes the transition and schedules the record. Such a delete names the entry by
uuid; while it is
queued the old entry still holds its name, so a create or move onto that name meets Conflict,
and :meth:`settle_deletes_at` sends the delete first instead of the conflict policy adopting
(and then losing) the old entry. A delete that goes out late (conflict rule 1,
:meth:`Uploader._unchecked_for`) first checks that the entry still holds the content this
mount knew, and keeps a version another client stored in place meanwhile.

Failures: the client already retried retryable errors; whatever still fails is recorded
(``stats()['errors']``) and the file stays queued, dirty in the journal, retried after a
backoff doubling from ``backoff_initial`` up to ``backoff_max``. Nothing is dropped. Quota
(QuotaExceeded) and per-file size (FileTooLarge) errors are recorded the same way.

Crash recovery: :meth:`resume` queues every dirty record. A ``pending_file_id`` left by a crash
may be referenced by the remote entry (the crash hit after the create/replace but before the
journal commit) or not; it is moved to the journal's orphans as 'uncertain' (with where the
publish was aimed) and the file is uploaded again (a create then meets Conflict and the hook
decides). A create/replace that fails without a definite refusal (5xx, dropped connection,
cancelled) does the same at once. fs/orphans.py deletes such objects once that is safe.

Scheduling and fairness: at most ``concurrency`` uploads run at once, plus, up to
``small_concurrency`` in all, uploads of files under ``small_file_threshold`` bytes and remote
deletes (a few round trips each that carry almost nothing: their number, not bandwidth, sets
how long a tree of small files takes). Files of at least ``big_file_threshold`` bytes may use
only ``concurrency - 1`` slots, so one slot is always free for small files; among files whose
quiet period is over, the oldest due goes first.

Shared state between trio tasks (all mutated only between awaits, no lock needed):
``_queue`` (local_id -> due time, attempts), ``_running`` (local_ids being uploaded),
``_delete_asked`` (when each pending delete was asked: conflict rule 1),
``_errors``/``_failures`` and ``_changed`` (an Event replaced on every state change, which
wakes the scheduler and :meth:`wait_idle`). The file's lock in ``locks`` (injected, see
docs/concurrency.md) serialises the publish step against rename/unlink in the operations layer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from internxtfs.fs import lifecycle
from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.conflicts import (
    DELETE_UNCHECKED_FOR,
    ConflictHook,
    RecoveryFolder,
    changed_since_known,
    keep_both_if_changed,
    keep_instead_of_deleting,
    known_content,
    raise_conflict,
)
from internxtfs.fs.crashpoints import crash_point
from internxtfs.fs.giving_up import unless_given_up
from internxtfs.fs.journal import UNCERTAIN, UNPUBLISHED, FileRecord, Journal
from internxtfs.fs.lifecycle import FileState
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.remote import Remote
from internxtfs.fs.replacement import ASIDE_PREFIX
from internxtfs.internxt.errors import (
    AuthError,
    Conflict,
    FileTooLarge,
    NotFound,
    QuotaExceeded,
    RequestRejected,
    Unreachable,
)
from internxtfs.internxt.retry import interactive, is_retryable

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# The drive calls of a publish run under the file's lock, which unlink and rename wait for.
# As an interactive call, they make one attempt once Internxt is known to be down instead of
# their whole retry schedule (a publish cut off by an outage held an unlink for 30 s and
# more); the upload is tried again later, and an outcome left unknown is an uncertain
# orphan the sweeper settles. With Internxt answering, this budget is not reached.
PUBLISH_BUDGET = 60.0


@dataclass
class _Queued:
    due: float
    attempts: int = 0  # failures in a row (backoff)


@dataclass
class _Failure:
    error: Exception
    attempts: int
    at: float


class Uploader:
    def __init__(
        self,
        journal: Journal,
        cache: BlockCache,
        remote: Remote,
        *,
        locks: KeyedLock,
        concurrency: int = 4,
        quiet_period: float = 1.0,
        big_file_threshold: int = 16 * MiB,
        small_concurrency: int | None = None,
        small_file_threshold: int = 256 * 1024,
        backoff_initial: float = 5.0,
        backoff_max: float = 300.0,
        on_conflict: ConflictHook = raise_conflict,
        recovery_parent: str | None = None,
        clock: Callable[[], float] = trio.current_time,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
        size_cap_ttl: float = 300.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.journal = journal
        self.cache = cache
        self.remote = remote
        # Per file (local_id), owned by the mount wiring and shared with the handlers and the
        # orphan sweeper: the publish step and a rename/unlink of the file never overlap.
        self.locks = locks
        self.concurrency = concurrency
        self.quiet_period = quiet_period
        self.big_file_threshold = big_file_threshold
        # Concurrency follows file size: a small file's upload is a few round trips that
        # carry almost no bytes (start, PUT, finish, create), so with a slot count sized for
        # big transfers, a tree of small files waits on latency, not bandwidth. Jobs under
        # ``small_file_threshold`` bytes (and remote deletes) may fill up to
        # ``small_concurrency`` slots in all; the others still count against ``concurrency``.
        self.small_concurrency = max(concurrency, small_concurrency or concurrency)
        self.small_file_threshold = small_file_threshold
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_conflict = on_conflict
        # Where files whose folder was deleted elsewhere are stored (fs/conflicts.py); None:
        # such a publish fails.
        self.recovery_parent = recovery_parent
        self.recovery = (
            None if recovery_parent is None else RecoveryFolder(remote, journal, recovery_parent)
        )
        self._clock = clock
        self._sleep = sleep
        self._queue: dict[int, _Queued] = {}
        self._running: dict[int, int] = {}  # local_id -> size being uploaded
        self._errors: dict[int, _Failure] = {}  # last failure per file (cleared on success)
        self._failures: dict[int, int] = {}  # failures ever, per file: wait_idle compares them
        self._changed = trio.Event()
        # When this run was first asked to send each pending remote delete (its unlink, or
        # the last close of a file unlinked while open): one sent soon after goes unchecked
        # (conflict rule 1, fs/conflicts.py); a record from an earlier run has no entry.
        self._delete_asked: dict[int, float] = {}
        self._tasks: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None
        self._uploaded = 0  # counters for stats()
        self._retries = 0
        # Network objects this process uploaded and did not publish yet, by local_id: reused
        # when only the publish step failed (not after a restart, see the module docstring).
        self._unpublished: dict[int, tuple[int, str | None]] = {}
        # How a file is named in status, flush and the log: its path in the mount, set by the
        # mount (the operations layer knows the tree); the bare name until then.
        self.describe: Callable[[FileRecord], str] = lambda record: record.name
        # Bytes sent of each upload in flight: body offset -> bytes of that body sent (a part
        # or the whole object; a retried body counts once), for a progress that moves.
        self._sent: dict[int, dict[int, int]] = {}
        # Net bytes the entries published by this mount grew by (df adds them to the usage
        # Internxt last reported, which is refreshed only every statfs_ttl seconds).
        self.stored_bytes = 0
        # The plan's per-file cap (GET /files/limits), asked before uploading as Internxt's
        # own clients do: over it, POST /files answers 402 only after the bridge has stored
        # (and counted) the object. None: no cap, or not known yet. Operations read it to
        # refuse writes past it (EFBIG).
        self.size_cap: int | None = None
        self._size_cap_at: float | None = None
        self.size_cap_ttl = size_cap_ttl
        # Files whose folder has namespace changes queued while offline (fs/pending.py): not
        # published until those are sent (then wake_deferred()).
        self.deferred: Callable[[FileRecord], bool] = lambda record: False

    # --- API for the operations layer ------------------------------------------------------

    def schedule(self, local_id: int, *, immediate: bool = False) -> None:
        """Queue a file for upload after the quiet period (``immediate``: now, e.g. fsync)."""
        now = self._clock()
        due = now if immediate else now + self.quiet_period
        if local_id not in self._delete_asked:
            record = self.journal.get(local_id)
            if record is not None and record.state is FileState.DELETE_PENDING:
                self._delete_asked[local_id] = now
        entry = self._queue.get(local_id)
        if entry is None:
            self._queue[local_id] = _Queued(due)
        elif immediate:
            entry.due = now
        else:
            entry.due = max(entry.due, due)  # quiet since the last schedule; keeps a backoff
        self._notify()

    def wake_deferred(self) -> None:
        """Queued namespace changes were sent: queue the files that waited for them."""
        for record in self.journal.dirty_files():
            i = record.local_id
            if i not in self._queue and i not in self._running and self._has_work(i):
                self._queue[i] = _Queued(self._clock())
        self._notify()

    def relieve_pressure(self) -> bool:
        """The block cache is full of unsent data and a writer waits for room: start queued
        uploads now rather than after their quiet period, and say whether any upload can free
        room (one is running, or queued and not failing). False tells the cache that waiting
        would not help (e.g. the data belongs to a file still being written)."""
        now = self._clock()
        can = bool(self._running)
        for local_id, queued in self._queue.items():
            record = self.journal.get(local_id)
            if queued.attempts or (record is not None and record.state is FileState.HELD):
                continue  # failing, or held until a close: no room from it soon
            queued.due = min(queued.due, now)
            can = True
        if can:
            self._notify()
        return can

    def resume(self) -> None:
        """At start: queue every record with unsent changes (crash recovery). No descriptor
        survives a restart: unlinked records go, and held ones are deleted now."""
        for record in self.journal.all_files():
            if record.state is FileState.UNLINKED:
                self._drop_record(record.local_id)
            elif lifecycle.cut_short(record):
                log.info("dropping %s: a symlink cut short by a crash before its target was "
                         "written (the call never returned)", record.name)  # fmt: skip
                self._drop_record(record.local_id)
            elif record.state is FileState.HELD:
                lifecycle.release_held(self.journal, record)
            if lifecycle.remote_delete_pending(record):
                # Asked in an earlier run: always checked before it is sent (rule 1), even
                # when a flush schedules it anew in this one.
                self._delete_asked[record.local_id] = -math.inf
        count = 0
        with self.journal.transaction():
            for record in self.journal.dirty_files():
                if record.pending_file_id is not None:
                    self.journal.add_orphan(
                        record.pending_file_id,
                        record.local_id,
                        UNCERTAIN,
                        parent_uuid=record.parent_uuid,
                        name=record.name,
                    )
                    self.journal.update(record.local_id, pending_file_id=None)
                self._queue[record.local_id] = _Queued(self._clock())
                count += 1
        if count:
            log.info("resuming %d pending upload(s) from the journal", count)
        self._notify()

    async def wait_idle(
        self,
        local_id: int | None = None,
        timeout: float | None = None,
        *,
        among: set[int] | None = None,
    ) -> dict[int, Exception]:
        """Wait until the file (or every pending file) is stored, or failed since the call.

        Pending files are started at once (no quiet period). With a ``local_id``: returns {}
        when stored, raises the upload's error if it failed (fsync). Without: returns the
        errors of the files that failed since the call ({} = everything stored); ``among``
        limits the wait to those files. Raises TimeoutError after ``timeout`` seconds.
        """
        start = dict(self._failures)
        with trio.move_on_after(float("inf") if timeout is None else timeout) as scope:
            while True:
                if local_id is not None:
                    pending = {local_id}
                else:
                    pending = self._pending_ids() if among is None else set(among)
                pending = {i for i in pending if self._has_work(i)}
                failed = {
                    i: self._errors[i].error
                    for i in pending
                    if self._failures.get(i, 0) > start.get(i, 0) and i in self._errors
                }
                if len(failed) == len(pending):
                    if local_id is not None and failed:
                        raise failed[local_id]
                    return failed
                now = self._clock()
                for i in pending - set(failed) - set(self._running):
                    entry = self._queue.get(i)
                    if entry is None or entry.due > now:  # not due yet: now
                        self.schedule(i, immediate=True)
                changed = self._changed
                await changed.wait()
        assert scope.cancelled_caught
        raise TimeoutError("uploads still pending after %.0f s" % (timeout or 0))

    def _pending_deletes(self) -> list[FileRecord]:
        """Records whose remote delete is still to be sent (a file unlinked while open waits
        for its last close and is not counted). Each is queued or running until it is sent
        (failures are queued again), so only those are looked at, not the whole journal."""
        found = []
        for local_id in set(self._queue) | set(self._running):
            record = self.journal.get(local_id)
            if record is not None and record.state is FileState.DELETE_PENDING:
                found.append(record)
        return found

    async def wait_deletes_in(self, folder_uuid: str) -> None:
        """Wait until the pending remote deletes of files in ``folder_uuid`` are sent (rmdir
        of a folder whose files were just unlinked); raises the error of one that failed."""
        ids = {r.local_id for r in self._pending_deletes() if r.parent_uuid == folder_uuid}
        if not ids:
            return
        failed = await self.wait_idle(among=ids)
        if failed:
            raise next(iter(failed.values()))

    async def settle_deletes_at(self, parent_uuid: str, name: str) -> bool:
        """A create or move onto ``parent_uuid``/``name`` met Conflict: if a pending delete of
        ours still holds that name (unlinked a moment ago, the delete not sent yet), send it
        now, so the caller can try again. True when there was one. The delete names the old
        entry by uuid, so the new file can never be the one deleted. Raises the delete's
        error if it fails."""
        clashing = [
            r for r in self._pending_deletes() if (r.parent_uuid, r.name) == (parent_uuid, name)
        ]
        for record in clashing:
            await self._delete_remote(record, name_wanted=True)
        return bool(clashing)

    def stats(self) -> dict[str, Any]:
        pending = [r for r in self.journal.dirty_files() if lifecycle.has_unsent_content(r)]
        pending_bytes = sum(r.size for r in pending)
        sent = sum(
            min(sum(parts.values()), self._running.get(i, 0)) for i, parts in self._sent.items()
        )
        return {
            "pending_files": len(pending),
            "pending_bytes": pending_bytes,
            "pending_deletes": len(self._pending_deletes()),
            "queued": len(self._queue),
            "in_flight": len(self._running),
            "in_flight_bytes": sum(self._running.values()),
            "in_flight_sent_bytes": sent,
            # What is left to send: a big file's upload moves this while the file counts stay.
            "bytes_left": max(0, pending_bytes - sent),
            "uploaded": self._uploaded,
            "retries": self._retries,
            "size_cap": self.size_cap,
            "errors": {
                i: {
                    "path": self.describe_id(i),
                    "delete": self._is_delete(i),  # a pending remote delete, not an upload
                    "error": f"{type(f.error).__name__}: {f.error}",
                    "attempts": f.attempts,
                    "quota": isinstance(f.error, QuotaExceeded),
                    "too_large": isinstance(f.error, FileTooLarge),
                }
                for i, f in self._errors.items()
                # A file unlinked while failing has nothing left to upload.
                if self._has_work(i)
            },
        }

    def unsent_growth(self) -> int:
        """Bytes written here that Internxt does not hold yet: how much the account's usage
        will grow once the pending uploads are stored (for df)."""
        return sum(
            max(0, r.size - (r.remote_size if r.remote_uuid else 0))
            for r in self.journal.dirty_files()
            if lifecycle.has_unsent_content(r)
        )

    # --- running ----------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The scheduler; ``await nursery.start(uploader.run)``. Runs until cancelled/closed."""
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                async with trio.open_nursery() as tasks:
                    self._tasks = tasks
                    task_status.started()
                    tasks.start_soon(self._learn_size_cap)
                    await self._schedule_loop()
            finally:
                self._tasks = None
                self._scope = None

    async def close(
        self, timeout: float, *, give_up: Callable[[], Awaitable[None]] | None = None
    ) -> int:
        """Upload what is pending for at most ``timeout`` s, or until ``give_up`` returns
        (Internxt is unreachable: service/pending.py), then stop. Returns files left."""
        async with trio.open_nursery() as nursery:
            if self._tasks is None:  # not running (e.g. its nursery is gone): run it here
                await nursery.start(self.run)

            async def drained() -> None:
                try:
                    errors = await self.wait_idle(timeout=timeout)
                    if errors:
                        log.warning("%d file(s) could not be uploaded: %s", len(errors), errors)
                except TimeoutError:
                    log.warning("flush timed out after %.0f s", timeout)

            await unless_given_up(drained, give_up)
            if self._scope is not None:
                self._scope.cancel()
        # Only what still has work counts: a queue entry of a file unlinked before its quiet
        # period ended is not a pending upload (it made unmount warn of unstored files).
        left = len({i for i in self._pending_ids() if self._has_work(i)})
        return left

    def describe_id(self, local_id: int) -> str:
        record = self.journal.get(local_id)
        if record is None:
            return f"(local id {local_id}, gone)"
        try:
            return self.describe(record)
        except Exception:  # naming must never break status or the log
            log.debug("cannot name local id %d", local_id, exc_info=True)
            return record.name

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _has_work(self, local_id: int) -> bool:
        record = self.journal.get(local_id)
        if record is None:
            return False
        state = record.state
        if lifecycle.is_unlinked(record):
            return state is FileState.DELETE_PENDING  # not HELD: that waits for a close
        if local_id in self._running:
            return True
        return state is not FileState.CLEAN and not self.deferred(record)

    def _pending_ids(self) -> set[int]:
        ids = {r.local_id for r in self.journal.dirty_files()}
        return ids | set(self._queue) | set(self._running)

    async def _schedule_loop(self) -> None:
        while True:
            self._dispatch()
            now = self._clock()
            # Wake at the next due time; entries already due but not started wait for a slot,
            # i.e. for a change (an upload ending notifies), not for a timer.
            future = [q.due for q in self._queue.values() if q.due > now]
            delay = min(future) - now if future else float("inf")
            await self._wait(delay, self._changed)

    async def _wait(self, delay: float, changed: trio.Event) -> None:
        """Return after ``delay`` (with the injected sleep) or when ``changed`` is set."""
        async with trio.open_nursery() as nursery:

            async def timer() -> None:
                await self._sleep(delay)
                nursery.cancel_scope.cancel()

            async def wake() -> None:
                await changed.wait()
                nursery.cancel_scope.cancel()

            if delay != float("inf"):
                nursery.start_soon(timer)
            nursery.start_soon(wake)

    def _dispatch(self) -> None:
        """Start due uploads while slots are free (see 'Scheduling and fairness')."""
        assert self._tasks is not None
        now = self._clock()
        due = sorted(
            (q.due, i) for i, q in self._queue.items() if q.due <= now and i not in self._running
        )
        big_running = sum(1 for s in self._running.values() if s >= self.big_file_threshold)
        big_limit = max(1, self.concurrency - 1)
        # Slots taken by jobs that are not small: they alone are bounded by `concurrency`.
        heavy_running = sum(1 for s in self._running.values() if s >= self.small_file_threshold)
        for _, local_id in due:
            if len(self._running) >= self.small_concurrency:
                return
            record = self.journal.get(local_id)
            if record is None or not self._has_work(local_id):
                del self._queue[local_id]
                continue
            size = 0 if lifecycle.is_unlinked(record) else record.size
            heavy = size >= self.small_file_threshold
            # Only `concurrency` jobs that are not small at once; such a job due first still
            # takes the next free slot among small ones (an fsync'ed file is not held back
            # until a stream of small files has drained).
            if heavy and heavy_running >= self.concurrency:
                continue
            big = size >= self.big_file_threshold
            if big and big_running >= big_limit:
                continue
            big_running += big
            heavy_running += heavy
            del self._queue[local_id]
            self._running[local_id] = size
            self._tasks.start_soon(self._run_one, local_id)

    async def _run_one(self, local_id: int) -> None:
        try:
            await self._process(local_id)
        except Exception as exc:  # anything: the file stays dirty and is retried later
            if self.journal.get(local_id) is None:
                log.debug("local id %d was removed during its upload: %r", local_id, exc)
            else:
                self._failed(local_id, exc)
        else:
            self._errors.pop(local_id, None)
            self._retry_network_failures_now()
        finally:
            self._running.pop(local_id, None)
            self._sent.pop(local_id, None)
            if self._has_work(local_id) and local_id not in self._queue:
                # Changed during the upload: go again after the quiet period.
                self._queue[local_id] = _Queued(self._clock() + self.quiet_period)
            self._notify()

    async def _learn_size_cap(self) -> None:
        # Early, so writes past the cap fail with EFBIG from the start; uploads ask again.
        try:
            await self.refresh_size_cap()
        except Exception as exc:  # offline: the first upload asks again
            log.info("per-file size limit not known yet: %s", exc)

    def retry_failed_now(self) -> None:
        """Something that made uploads fail has been fixed (new credentials): try them all now
        rather than after their backoff."""
        now = self._clock()
        for i in self._errors:
            queued = self._queue.get(i)
            if queued is not None and queued.due > now:
                queued.due = now
        self._notify()

    def _retry_network_failures_now(self) -> None:
        """An upload went through: Internxt answers again. Files waiting out a backoff after
        network trouble (an outage) go now instead of up to ``backoff_max`` later; files that
        failed for their own reasons (quota, size) keep their backoff."""
        now = self._clock()
        for i, failure in self._errors.items():
            queued = self._queue.get(i)
            if queued is not None and queued.due > now and is_retryable(failure.error):
                queued.due = now

    def _failed(self, local_id: int, exc: Exception) -> None:
        previous = self._errors.get(local_id)
        attempts = previous.attempts + 1 if previous else 1
        self._errors[local_id] = _Failure(exc, attempts, self._clock())
        self._failures[local_id] = self._failures.get(local_id, 0) + 1
        self._retries += 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (attempts - 1))
        self._queue[local_id] = _Queued(self._clock() + delay, attempts)
        level = logging.WARNING if attempts == 1 else logging.DEBUG
        log.log(level, "%s of %s failed (attempt %d, retry in %.0f s): %r",
                "delete" if self._is_delete(local_id) else "upload", self.describe_id(local_id),
                attempts, delay, exc)  # fmt: skip

    def _is_delete(self, local_id: int) -> bool:
        record = self.journal.get(local_id)
        return record is not None and lifecycle.is_unlinked(record)

    # --- one upload -------------------------------------------------------------------------

    async def _process(self, local_id: int) -> None:
        record = self.journal.get(local_id)
        if record is not None and record.state is FileState.HELD:
            return
        if record is None or lifecycle.is_unlinked(record):
            self._forget_unpublished(local_id)
        if record is None:
            return
        if lifecycle.is_unlinked(record):
            await self._delete_remote(record)
            return
        if not lifecycle.has_unsent_content(record):
            return
        with self.cache.pinned(local_id):
            await self.cache.ensure_complete(local_id)
            record = self.journal.get(local_id)
            if record is None or lifecycle.is_unlinked(record):
                return
            generation, size, mtime_ns = record.generation, record.size, record.mtime_ns
            started = self._clock()
            file_id = await self._upload_content(local_id, generation, size)
        if await self._publish(local_id, generation, size, mtime_ns, file_id):
            elapsed = max(self._clock() - started, 1e-6)
            log.info("uploaded %s (%d bytes) in %.2f s, %.1f MB/s", self.describe_id(local_id),
                     size, elapsed, size / elapsed / 1e6)  # fmt: skip

    async def refresh_size_cap(self, *, force: bool = False) -> int | None:
        """The plan's per-file cap, asked again once ``size_cap_ttl`` has passed (or when
        ``force``d: the server just refused a file as too large)."""
        now = self._clock()
        fresh = self._size_cap_at is not None and now - self._size_cap_at < self.size_cap_ttl
        if force or not fresh:
            self.size_cap = await self.remote.file_limits()
            self._size_cap_at = now
        return self.size_cap

    async def _upload_content(self, local_id: int, generation: int, size: int) -> str | None:
        if size == 0:
            return None
        cap = await self.refresh_size_cap()
        if cap is not None and size > cap:
            # Refused before a byte is sent: the file stays dirty and `status` shows why.
            self._forget_unpublished(local_id)  # an object it can never be published with
            raise FileTooLarge(
                f"{size} bytes is more than the {cap} bytes per file your Internxt plan allows"
            )
        kept = self._unpublished.get(local_id)
        if kept is not None and kept[0] == generation:
            return kept[1]  # uploaded before, only publishing failed: same content
        self._forget_unpublished(local_id)  # an older version's object: superseded
        log.debug("uploading local id %d (%d bytes, generation %d)", local_id, size, generation)
        sent = self._sent[local_id] = {}

        def progress(offset: int, done: int) -> None:
            if done > sent.get(offset, 0):
                sent[offset] = done

        file_id: str = await self.remote.upload(
            self.cache.reader(local_id, size), size, progress=progress
        )
        self._unpublished[local_id] = (generation, file_id)
        return file_id

    def _publish_outcome_unknown(self, local_id: int, file_id: str | None) -> None:
        """A create/replace pointing at ``file_id`` failed without a definite refusal: it may
        have landed all the same (answer lost, 5xx, retries used up, cancelled). The object
        becomes an 'uncertain' orphan aimed at where the record is now, so it is never taken
        for an unpublished one (deleted unchecked) if the file changes before the next
        attempt; the next attempt may still publish it (see ``_unpublished``), which takes it
        off the list."""
        if file_id is None:
            return
        record = self.journal.get(local_id)
        try:
            with self.journal.transaction():
                self.journal.add_orphan(
                    file_id,
                    local_id,
                    UNCERTAIN,
                    parent_uuid=record.parent_uuid if record else None,
                    name=record.name if record else None,
                )
                if record is not None:
                    self.journal.update(local_id, pending_file_id=None)
        except sqlite3.Error as exc:  # disk full: pending_file_id stays, resume() covers it
            log.warning("cannot record object %s as uncertain: %s", file_id, exc)

    def _forget_unpublished(self, local_id: int) -> None:
        """The object kept for a retry of a failed publish will not be used: an orphan."""
        kept = self._unpublished.pop(local_id, None)
        if kept is not None:
            self._orphan(local_id, kept[1])

    def _orphan(self, local_id: int, file_id: str | None) -> None:
        self._unpublished.pop(local_id, None)
        if file_id is not None:
            self.journal.add_orphan(file_id, local_id, UNPUBLISHED)

    async def _publish(
        self, local_id: int, generation: int, size: int, mtime_ns: int, file_id: str | None
    ) -> bool:
        """Point the drive entry at the uploaded object; False when it was not published."""
        async with self.locks.hold(local_id):
            record = self.journal.get(local_id)
            if record is None or lifecycle.is_unlinked(record) or record.generation != generation:
                # Unlinked, or changed while uploading: this object would publish a mix.
                self._orphan(local_id, file_id)
                return False
            if self.deferred(record):
                # Moved meanwhile into a folder with queued namespace changes (made offline,
                # maybe not created yet): published once they are sent.
                self._orphan(local_id, file_id)
                return False
            # Journaled before the drive call: after a crash here, resume() knows this object
            # may be referenced (see the module docstring).
            self.journal.update(local_id, pending_file_id=file_id)
            # Internxt keeps milliseconds: send the local time cut to its millisecond. The float
            # of the raw ns time (…123.999999 s) rounds up to the next millisecond on the way
            # (datetime keeps microseconds), and a listing refresh then moved the file's stat
            # mtime, which matches the local ns time only to the millisecond it was cut to.
            mtime = (mtime_ns // 1_000_000) / 1000
            with interactive(PUBLISH_BUDGET):  # see PUBLISH_BUDGET
                try:
                    uuid = record.remote_uuid
                    if uuid is not None:
                        record = await keep_both_if_changed(
                            self.remote, self.journal, local_id, record
                        )
                        uuid = record.remote_uuid
                    if uuid is not None and file_id is None:
                        # Emptied: Internxt cannot replace to empty content (DriveAPI.replace_file),
                        # so the old entry goes (as an unlink would) and an empty one is created.
                        await self.remote.delete("file", uuid, name=record.name)
                        record = self.journal.update(local_id, remote_uuid=None)
                        uuid = None
                    if uuid is not None:
                        assert file_id is not None
                        try:
                            await self.remote.replace_file(uuid, file_id, size, mtime=mtime)
                            crash_point("after-replace")
                        except NotFound:
                            log.warning(
                                "remote entry of %r vanished; creating it again", record.name
                            )
                            record = self.journal.update(local_id, remote_uuid=None)
                            uuid = None
                    if uuid is None:
                        uuid = await self._create(record, size, file_id, mtime)
                        crash_point("after-create")
                except FileTooLarge:
                    # The plan's cap changed since we asked: ask again, so the next attempt is
                    # refused before uploading (and drops this object, see _upload_content).
                    with contextlib.suppress(Exception):
                        await self.refresh_size_cap(force=True)
                    raise
                except (RequestRejected, AuthError):
                    raise  # a definite refusal: nothing points at the object (retry reuses it)
                except BaseException:
                    self._publish_outcome_unknown(local_id, file_id)
                    raise
            self._unpublished.pop(local_id, None)
            with self.journal.transaction():
                current = self.journal.get(local_id)
                assert current is not None  # dropping a record takes this lock
                replaced = current.remote_size if current.remote_uuid == uuid else 0
                self.stored_bytes += size - replaced
                same = current.generation == generation
                # Changed during the drive call: remote bytes that a truncation since has cut
                # off must still not count (current.remote_valid_len is already that bound).
                valid = size if same else min(size, current.remote_valid_len)
                self.journal.update(
                    local_id,
                    remote_uuid=uuid,
                    remote_file_id=file_id,
                    remote_size=size,
                    remote_valid_len=valid,
                    pending_file_id=None,
                )
                self.cache.mark_clean(local_id, generation)  # last: see its docstring
            self._uploaded += 1
            log.debug("published local id %d as %s (%d bytes)", local_id, uuid, size)
            return True

    async def _create(
        self, record: FileRecord, size: int, file_id: str | None, mtime: float
    ) -> str:
        """Create the entry (or replace the one the conflict hook names); returns its uuid."""
        for _ in range(3):
            try:
                entry = await self.remote.create_file(
                    record.parent_uuid, record.name, size, file_id, mtime=mtime
                )
                return entry.uuid
            except NotFound as exc:
                if "folder" not in exc.message.lower() or self.recovery is None:
                    raise
                record = await self.recovery.rehome(record)
            except Conflict as exc:
                try:
                    ours = await self.settle_deletes_at(record.parent_uuid, record.name)
                except Exception as error:
                    # The name is still held by an entry we are deleting: never give it our
                    # content (its delete would take it along). Retried with backoff.
                    raise exc from error
                if ours:
                    continue  # the file unlinked under this name is gone now: create again
                target = await self.on_conflict(record, exc)
                if target is not None and file_id is None:
                    # Internxt cannot replace to empty content: the entry goes, ours is created.
                    await self.remote.delete("file", target, name=record.name)
                    continue
                if target is not None:
                    try:
                        await self.remote.replace_file(target, file_id, size, mtime=mtime)
                    except NotFound:
                        # The hook named an entry that was gone by the replace ("DELETED
                        # files can not be replaced"): deleted meanwhile, or a lagging listing
                        # still showed an entry deleted just before. Its name is free: create.
                        log.info("%r: the entry to replace is gone; creating it", record.name)
                        continue
                    return target
                fresh = self.journal.get(record.local_id)
                if fresh is None or lifecycle.is_unlinked(fresh):
                    raise
                record = fresh
        raise Conflict(f"{record.name!r} still exists after the conflict policy ran")

    async def _delete_remote(self, record: FileRecord, *, name_wanted: bool = False) -> None:
        """Send a pending remote delete. ``name_wanted``: a create or move of ours waits for
        the entry's name (settle_deletes_at)."""
        async with self.locks.hold(record.local_id):
            # Read again under the lock: settle_deletes_at may have sent it meanwhile.
            current = self.journal.get(record.local_id)
            if current is None or current.state is not FileState.DELETE_PENDING:
                return
            record = current
            assert record.remote_uuid is not None
            left = self._unchecked_for(record)
            if left <= 0:
                entry = await changed_since_known(
                    self.remote, record.remote_uuid, known_content(self.journal, record)
                )
                if entry is not None:
                    # Another client stored a version in place after the unlink: kept
                    # (conflict rule 1). Moved beside when our own file needs the name, or
                    # when it is aside under a hidden name (unlinked while open).
                    aside = record.name.startswith(ASIDE_PREFIX)
                    move = name_wanted or aside or self._name_awaited(entry.folder_uuid, entry.name)
                    # A file unlinked while open was renamed to its hidden name here, and its
                    # name is not journaled: the kept copy is named after the uuid.
                    name = f"unlinked {record.remote_uuid[:8]}" if aside else record.name
                    await keep_instead_of_deleting(self.remote, entry, name=name, move=move)
                    self._forget_delete(record.local_id)
                    return
            # An unchecked delete must land soon after the call: its retries may otherwise
            # span an outage during which another client stores a new version. Past
            # DELETE_UNCHECKED_FOR, it is given up (it may have landed: the checked attempt
            # that follows finds the entry gone, unchanged, or changed) and sent checked.
            with trio.move_on_after(DELETE_UNCHECKED_FOR if left > 0 else math.inf) as bound:
                await self.remote.delete("file", record.remote_uuid, name=record.name)
            if bound.cancelled_caught:
                raise Unreachable(
                    f"no answer to the delete within {DELETE_UNCHECKED_FOR:.0f} s; sent again "
                    "once the entry's content is checked"
                )
            crash_point("after-remote-delete")
            self._forget_delete(record.local_id)

    def _forget_delete(self, local_id: int) -> None:
        self._delete_asked.pop(local_id, None)
        if self.journal.get(local_id) is not None:
            # Nothing reaches a DELETE_PENDING record but this queue (fs/lifecycle.py).
            self.journal.update(local_id, remote_uuid=None)
            self._drop_record(local_id)

    def _unchecked_for(self, record: FileRecord) -> float:
        """How long a pending delete may still start unchecked (conflict rule 1); <= 0: it
        goes out later than the user's call, and the entry's content is checked first.
        Unchecked: the first attempt, started within DELETE_UNCHECKED_FOR seconds of the
        unlink in this run (and given as long again to land). Checked: one journaled by an
        earlier run (queued offline, then a crash or an unmount), one that failed before (an
        outage), one queued behind many others, and a file unlinked while open (its entry
        waited aside until the last close)."""
        asked = self._delete_asked.get(record.local_id)
        if asked is None or record.local_id in self._errors or record.name.startswith(ASIDE_PREFIX):
            return 0.0  # (None: queued without being asked in this run, e.g. by wake_deferred)
        return DELETE_UNCHECKED_FOR - (self._clock() - asked)

    def _name_awaited(self, parent_uuid: str, name: str) -> bool:
        """Whether a file of ours waits to be created under that name: the kept version then
        moves beside, so our create never gives it our content (principle 3's adoption)."""
        return any(
            lifecycle.awaits_create(r) and (r.parent_uuid, r.name) == (parent_uuid, name)
            for r in self.journal.dirty_files()
        )

    def _drop_record(self, local_id: int) -> None:
        # Record first, then the cache file (the order Namespace.drop_local explains).
        self.journal.delete(local_id)
        self.cache.drop(local_id)
