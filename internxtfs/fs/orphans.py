"""Deleting network objects that no drive entry points at (the journal's ``orphans``).

The bridge counts every object it holds against the account's space, referenced or not, and it
deletes whatever it is asked to. So an orphan is deleted only once nothing can point at it:

* ``unpublished``: uploaded, then never sent to the drive (the file changed or was unlinked
  during the upload). Nothing ever referenced it: deleted at the next sweep.
* ``uncertain``: the object of a publish cut short by a crash; the create/replace may have
  landed. It is deleted only after the file has been published again under the file's lock
  (clean in the journal, pointing at another object) *and* the drive entry, read back, points
  at another object. While the file still has unsent changes it waits. If the file's record is
  gone (unlinked before it was published again), the row goes once the object itself is gone
  (deleting the entry that pointed at it deletes it on Internxt's side); while the object
  exists nothing proves it unreferenced, so it is kept, logged once, counted in ``status``.

A sweep runs at start, every ``interval`` seconds while there are orphans, and at the end of
``internxtfs flush``/unmount. Network failures leave the row for the next sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import trio

from internxtfs.fs.journal import Journal
from internxtfs.internxt.errors import InternxtError, NotFound

log = logging.getLogger(__name__)

UNPUBLISHED = "unpublished"
UNCERTAIN = "uncertain"


class _Network(Protocol):
    async def delete(self, file_id: str) -> None: ...

    async def info(self, file_id: str) -> Any: ...


class _Drive(Protocol):
    async def file_meta(self, uuid: str) -> Any: ...


class OrphanSweeper:
    def __init__(
        self,
        journal: Journal,
        network: _Network,
        drive: _Drive,
        lock_for: Callable[[int], trio.Lock],
        *,
        interval: float = 60.0,
    ) -> None:
        self.journal = journal
        self.network = network
        self.drive = drive
        self.lock_for = lock_for
        self.interval = interval
        self.deleted = 0  # objects deleted by this mount
        self._kept_logged: set[str] = set()
        self._sweeping = trio.Lock()

    def stats(self) -> dict[str, int]:
        return {"orphans": len(self.journal.orphans()), "orphans_deleted": self.deleted}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep now, then every ``interval`` seconds. ``await nursery.start(sweeper.run)``."""
        task_status.started()
        while True:
            await self.sweep()
            await trio.sleep(self.interval)

    async def sweep(self) -> int:
        """Delete every orphan that is certainly unreferenced; returns how many went."""
        async with self._sweeping:
            gone = 0
            for file_id, local_id, reason in self.journal.orphans():
                try:
                    if await self._sweep_one(file_id, local_id, reason):
                        gone += 1
                except InternxtError as exc:
                    log.info("orphaned object %s not deleted yet: %s", file_id, exc)
            self.deleted += gone
            return gone

    async def _sweep_one(self, file_id: str, local_id: int | None, reason: str) -> bool:
        if reason == UNPUBLISHED:
            await self._delete(file_id)
            return True
        record = self.journal.get(local_id) if local_id is not None else None
        if record is None:
            try:
                await self.network.info(file_id)
            except NotFound:
                self.journal.remove_orphan(file_id)  # went with the entry that held it
                return False
            if file_id not in self._kept_logged:
                self._kept_logged.add(file_id)
                log.info(
                    "keeping network object %s: its file is gone and its last publish was "
                    "cut short, so a drive entry may still point at it",
                    file_id,
                )
            return False
        async with self.lock_for(record.local_id):
            record = self.journal.get(record.local_id)
            if record is None or record.dirty or record.deleted or record.pending_file_id:
                return False  # not published again yet: the entry may still point at it
            if record.remote_file_id == file_id:
                self.journal.remove_orphan(file_id)  # published after all: not an orphan
                return False
            if record.remote_uuid is not None:
                try:
                    entry = await self.drive.file_meta(record.remote_uuid)
                except NotFound:
                    entry = None
                if entry is not None and entry.file_id == file_id:
                    log.warning("network object %s is still referenced; keeping it", file_id)
                    self.journal.remove_orphan(file_id)
                    return False
            await self._delete(file_id)
            return True

    async def _delete(self, file_id: str) -> None:
        await self.network.delete(file_id)
        self.journal.remove_orphan(file_id)
        log.info("deleted orphaned network object %s", file_id)
