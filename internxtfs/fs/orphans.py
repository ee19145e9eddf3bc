"""Deleting network objects that no drive entry points at (the journal's ``orphans``).

The bridge counts every object it holds against the account's space, referenced or not, and it
deletes whatever it is asked to. So an orphan is deleted only once nothing can point at it:

* ``unpublished``: uploaded, then never sent to the drive (the file changed or was unlinked
  during the upload). Nothing ever referenced it: deleted at the next sweep.
* ``uncertain``: a create/replace pointing at it was sent and its outcome is unknown (a crash
  cut it short, or it failed after sending). Two entries may point at it: the file's own
  (a replace, or a create that was adopted since) and, if the file was renamed, moved or
  unlinked before it was stored again, an entry the lost create made where the publish was
  aimed (a *ghost*: the file's old name, holding an older version). So it waits until the file
  has been published again under the file's lock (clean, pointing at another object) and the
  file's entry, read back, points elsewhere; a ghost at the aimed-at place is then deleted like
  any file this mount deletes (``delete_mode``), and the object after it. When the file's
  record is gone, the ghost check runs the same way; the row then goes once the object is gone
  (deleting its entry deletes it on Internxt's side). An object that still exists with no
  ghost found (another client may have moved that entry) is kept, logged once and counted in
  ``status``: nothing proves it unreferenced.

A sweep runs at start, every ``interval`` seconds, and at the end of ``internxtfs flush`` and
unmount. Any failure leaves the row for the next sweep; the task itself never dies of one.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from internxtfs.fs.journal import UNPUBLISHED, Journal, Orphan
from internxtfs.fs.lifecycle import FileState
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.modes import DeleteMode
from internxtfs.fs.remote import Remote
from internxtfs.internxt.errors import NotFound

log = logging.getLogger(__name__)


class OrphanSweeper:
    def __init__(
        self,
        journal: Journal,
        remote: Remote,
        locks: KeyedLock,
        *,
        interval: float = 60.0,
    ) -> None:
        self.journal = journal
        self.remote = remote
        self.locks = locks  # per file (local_id): shared with the uploader and the handlers
        self.interval = interval
        self.deleted = 0  # objects deleted by this mount
        self._kept_logged: set[str] = set()
        self._sweeping = trio.Lock()

    def stats(self) -> dict[str, int]:
        return {"orphans": len(self.journal.orphan_rows()), "orphans_deleted": self.deleted}

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
            try:
                rows = self.journal.orphan_rows()
            except Exception as exc:  # the journal's disk may be full: try again later
                log.warning("cannot read the orphaned objects: %s", exc)
                return 0
            for orphan in rows:
                try:
                    if await self._sweep_one(orphan):
                        gone += 1
                except Exception as exc:
                    log.info("orphaned object %s not deleted yet: %s", orphan.file_id, exc)
            self.deleted += gone
            return gone

    async def _sweep_one(self, orphan: Orphan) -> bool:
        if orphan.reason == UNPUBLISHED:
            await self._delete(orphan.file_id)
            return True
        local_id = orphan.local_id
        if local_id is not None and self.journal.get(local_id) is not None:
            async with self.locks.hold(local_id):
                record = self.journal.get(local_id)
                if record is not None:
                    if record.state is not FileState.CLEAN:
                        return False  # not stored again yet: its entry may point at it
                    if record.remote_file_id == orphan.file_id:
                        self.journal.remove_orphan(orphan.file_id)  # published after all
                        return False
                    if record.remote_uuid is not None:
                        try:
                            entry = await self.remote.file_meta(record.remote_uuid)
                        except NotFound:
                            entry = None
                        if entry is not None and entry.file_id == orphan.file_id:
                            log.warning("object %s is still the file's content", orphan.file_id)
                            self.journal.remove_orphan(orphan.file_id)
                            return False
                    if await self._remove_ghost(orphan, keep=record.remote_uuid):
                        return False  # trashed with its object
                    await self._delete(orphan.file_id)
                    return True
        # The file is gone from the journal (unlinked, or its record dropped).
        if await self._remove_ghost(orphan, keep=None):
            return False
        if not await self.remote.object_exists(orphan.file_id):
            self.journal.remove_orphan(orphan.file_id)  # went with the entry that held it
            return False
        if orphan.file_id not in self._kept_logged:
            self._kept_logged.add(orphan.file_id)
            log.info(
                "keeping network object %s: its file is gone and its last publish was cut "
                "short, so a drive entry may still point at it",
                orphan.file_id,
            )
        return False

    async def _remove_ghost(self, orphan: Orphan, keep: str | None) -> bool:
        """Delete an entry that a lost create made where the publish was aimed, if it still
        points at this object and is not the file's own entry ``keep``. True when it went to
        the trash: the trash keeps the object, so it must not be deleted (the row goes)."""
        if orphan.parent_uuid is None or orphan.name is None:
            return False
        try:
            found = await self.remote.files_exist(orphan.parent_uuid, [orphan.name])
        except NotFound:  # that folder is gone, and whatever was in it
            return False
        for entry in found:
            if entry.file_id != orphan.file_id or entry.uuid == keep:
                continue
            log.warning(
                "deleting %r: an entry a create cut short by a crash or an error made, for a "
                "file renamed, moved or deleted since",
                orphan.name,
            )
            # A permanent delete takes the object with the entry (on Internxt's side); the
            # trash keeps it, so it must not be deleted then.
            trashed = await self.remote.delete("file", entry.uuid, name=orphan.name)
            if trashed and self.remote.delete_mode is DeleteMode.TRASH:
                self.journal.remove_orphan(orphan.file_id)
                return True
        return False

    async def _delete(self, file_id: str) -> None:
        await self.remote.delete_object(file_id)
        self.journal.remove_orphan(file_id)
        log.info("deleted orphaned network object %s", file_id)
