"""Namespace changes: what create, mkdir, symlink, unlink, rmdir and rename do to the inode
table, the journal and Internxt, and the local state of a file around them.

The handlers (fs/operations.py) look an entry up, make one call here, and return attributes,
as mountpoint-s3's ``fs.rs`` does over its ``superblock.rs``. Each public coroutine below is
one system call, given the nodes the handler looked up; it raises ``FUSEError`` for what
POSIX defines (EEXIST, ENOTEMPTY, ...) and lets Internxt errors through to the handler's
errno mapping (fs/errno_map.py).

What is sent at once and what is journaled:

* mkdir, symlink, rmdir, rename: sent at once (what the call returns is what Internxt holds),
  then applied to the table. A rename over an existing entry goes through
  :class:`~internxtfs.fs.replacement.Replacements`, whose journal rows make it complete or
  roll back across failures and crashes.
* create, and any change to a file not uploaded yet: journal only; the uploader publishes.
* unlink of a stored file: the delete is journaled (the record becomes a pending remote
  delete) and sent by the uploader's pool; an open file's entry is moved aside first and
  deleted at the last close (:meth:`Namespace.closed`).

Offline (issue 9): while Internxt is known to be unreachable, when a call meets the outage,
or while earlier changes wait, mkdir, rename (over a stored file or empty folder too), rmdir and
the move aside of an unlinked open file apply locally and their remote half is journaled
instead, as rows of ``namespace_ops`` that fs/pending.py replays once Internxt answers,
settling conflicts from what the server holds then; a symlink becomes a new file for the
uploader. The view they leave is saved to the metadata cache at once, so a crash or a remount
offline shows it. A file made where the folder's content is unknown (a partial view, a folder
made offline) is ``blind``: it keeps both versions on a taken name (fs/conflicts.py).

Shared state: the inode table, listings (fs/metadata.py) and journal records, each changed
without an await in between. A file's namespace changes and its publish step are serialised
by the file's lock (``locks``, keyed by ``local_id``; docs/concurrency.md gives the order).
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pyfuse3
import trio

from internxtfs.fs import conflicts, lifecycle, links
from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.crashpoints import crash_point
from internxtfs.fs.inodes import ROOT_INODE, InodeTable, Node
from internxtfs.fs.journal import Journal, local_owner_key
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.metadata import Metadata
from internxtfs.fs.ownership import Ownership
from internxtfs.fs.pending import PendingNamespace, is_placeholder, unreachable
from internxtfs.fs.remote import Remote
from internxtfs.fs.replacement import Replacements, Undecided, aside_name
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt import errors as ie

log = logging.getLogger(__name__)

STALE_QUEUE_WAIT = 5.0  # seconds a rename over waits for queued namespace changes to be sent


class Namespace:
    def __init__(
        self,
        *,
        remote: Remote,
        journal: Journal,
        cache: BlockCache,
        uploader: Uploader,
        locks: KeyedLock,
        table: InodeTable,
        meta: Metadata,
        owners: Ownership,
        replacements: Replacements,
        pending: PendingNamespace,
        clock_ns: Callable[[], int],
        monotonic: Callable[[], float],
    ) -> None:
        self.remote = remote
        self.journal = journal
        self.cache = cache
        self.uploader = uploader
        self.locks = locks  # per file (local_id), shared with the uploader and the sweeper
        self.table = table
        self.meta = meta
        self.owners = owners
        self.replacements = replacements
        self.pending = pending
        self.clock_ns = clock_ns
        self.monotonic = monotonic

    # --- a file's local state -----------------------------------------------------------------

    def ensure_record(self, node: Node) -> int:
        """Give a remote file a journal record, so its blocks can be cached and changed."""
        if node.local_id is not None:
            return node.local_id
        parent = self.table.get(node.parent)
        if parent is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        record = self.journal.new_file(
            parent_uuid=parent.uuid,
            name=links.remote_name(node.name, node.is_link),  # what the server calls it
            size=node.size,
            mtime_ns=node.mtime_ns,
            remote_uuid=node.uuid,
            remote_file_id=node.file_id,
            remote_size=node.size,
            remote_valid_len=node.size,
            dirty=False,
        )
        self.table.set_local(node, record.local_id)
        return record.local_id

    def drop_local(self, node: Node) -> None:
        """Forget a file's local state (its cache blocks and journal record)."""
        if node.local_id is None:
            return
        local_id = node.local_id
        record = self.journal.get(local_id)
        if record is not None and lifecycle.remote_delete_pending(record):
            # A pending remote delete (unlink, or the last close of a file unlinked while
            # open: HELD -> DELETE_PENDING): the uploader deletes the entry, then forgets the
            # record and cache.
            lifecycle.release_held(self.journal, record)  # first: it may fail (disk full)
            self.table.set_local(node, None)
            self.uploader.schedule(local_id, immediate=True)
            return
        self.table.set_local(node, None)
        # Record first, then the cache file: a crash in between leaves a cache file without a
        # record, which the next mount removes. The other order could leave dirty blocks
        # without their cache file (the next mount refuses to start: JournalDamaged) or a
        # dirty record without blocks (uploaded again as zeros).
        self.journal.delete(local_id)
        self.cache.drop(local_id)

    def remote_delete_pending(self, node: Node) -> bool:
        record = None if node.local_id is None else self.journal.get(node.local_id)
        return record is not None and lifecycle.remote_delete_pending(record)

    def file_lock(self, local_id: int | None) -> AbstractAsyncContextManager[None]:
        """The file's lock (docs/concurrency.md); a file without a record has no state that
        a publish or a sweep could change meanwhile."""
        return contextlib.nullcontext() if local_id is None else self.locks.hold(local_id)

    def sync_uuid(self, node: Node) -> None:
        """Learn the uuid the uploader gave a file we created (call under its lock)."""
        if node.local_id is None:
            return
        record = self.journal.get(node.local_id)
        if record is not None and record.remote_uuid != node.uuid and record.remote_uuid:
            self.table.set_uuid(node, record.remote_uuid)

    def detach(self, node: Node) -> None:
        """Make ``node`` a version that only its open descriptors reach: its record loses its
        remote identity and is marked deleted (never published, nothing deleted remotely;
        dropped at the last close or forget, or by the next mount), and its name is free for
        whatever the entry holds now. An open of it through the kernel's cached entry is
        ESTALE, which makes the kernel look the name up again."""
        if node.local_id is not None:
            uuid = node.uuid
            with self.journal.transaction():
                # The row of this mount's owner and mode follows the record to its local key;
                # the entry lives on under its uuid (replaced or moved elsewhere) and keeps it.
                lifecycle.unlink_local(self.journal, node.local_id)
                if uuid is not None:
                    kept = self.journal.owner(local_owner_key(node.local_id))
                    if kept is not None:
                        self.journal.set_owner(uuid, kept)
        self.table.set_uuid(node, None)
        node.unlinked = node.replaced = True

    def touch_dir(self, parent: Node) -> None:
        """An entry of ``parent`` changed here: its mtime and ctime are now (kept by this
        cache, since Internxt cannot store a folder's time after its creation)."""
        parent.mtime_ns = parent.ctime_ns = self.clock_ns()
        parent.mtime_pinned = True
        self.owners.set_folder_mtime(parent, parent.mtime_ns, only_if_kept=True)
        self.meta.touch(parent)

    # --- the end of a file's references -------------------------------------------------------

    def closed(self, node: Node) -> None:
        """The last descriptor of ``node`` was closed (release)."""
        if not node.unlinked or node.open_handles:
            return
        if node.lookups == 0:
            self.drop_local(node)
            self.table.remove(node)
        elif self.remote_delete_pending(node) or node.replaced:
            # Last close of a file unlinked while open (or of a version replaced elsewhere):
            # no descriptor can reach its data any more (the kernel's lookups linger only for
            # stat), so its entry (or detached record) can go.
            self.drop_local(node)

    def forgotten(self, node: Node) -> None:
        """The kernel forgot ``node`` and the table dropped it (forget)."""
        if node.unlinked:
            self.drop_local(node)

    # --- create, mkdir, symlink ---------------------------------------------------------------

    def create(self, parent: Node, name: str, mode: int, ctx: Any) -> Node:
        """A new empty file, journaled only: the uploader creates its entry later."""
        now = self.clock_ns()
        node = self.table.new_node(
            is_dir=False, parent=parent.ino, name=name, mtime_ns=now, ctime_ns=now, atime_ns=now
        )
        try:
            with self.journal.transaction():  # the record and its owner, or neither
                record = self.journal.new_file(
                    parent_uuid=parent.uuid, name=name, size=0, mtime_ns=now, dirty=True,
                    blind=self.blind(parent),
                )  # fmt: skip
                self.table.set_local(node, record.local_id)
                self.owners.created(node, parent, mode, ctx)
        except BaseException:
            self.table.remove(node)
            raise
        self.table.link_child(parent, name, node)
        self.touch_dir(parent)
        return node

    def blind(self, folder: Node) -> bool:
        """A name made in ``folder`` now is made without knowing what the folder holds on
        the server: never listed (a partial view during an outage, fs/metadata.py), or made
        offline (the replay may adopt a folder of that name made elsewhere). Such a file keeps
        both versions if its name turns out to be taken (fs/conflicts.py, AdoptExisting)."""
        return self.meta.partial(folder) or is_placeholder(folder.uuid)

    async def mkdir(self, parent: Node, name: str, mode: int, ctx: Any) -> Node:
        now = self.clock_ns()
        uuid: str | None = None
        sent = False
        if not self.pending.must_queue(parent.uuid):
            sent = True
            try:
                entry = await self.remote.create_folder(
                    parent.uuid, name, ctime=now / 1e9, mtime=now / 1e9
                )
                uuid = entry.uuid
            except ie.InternxtError as exc:
                if not exc.retryable:
                    raise
                # No answer, or only 5xx/429 until the call's budget ran out: queued, as in an
                # outage (the replay keeps retrying; if the create landed all the same, it
                # adopts the folder). A process copying a tree would otherwise stop at EIO.
                log.info("mkdir %r: Internxt %s (%s); queued", name, _trouble(exc, self.remote),
                         exc)  # fmt: skip
        node = self.table.new_node(
            is_dir=True, parent=parent.ino, name=name, mtime_ns=now, ctime_ns=now, atime_ns=now
        )
        queued = uuid is None
        with self.journal.transaction():  # the queued mkdir and the listing showing it
            if uuid is None:
                uuid = self.pending.mkdir(parent.uuid, name, now, maybe_sent=sent)
            self.table.set_uuid(node, uuid)
            self.owners.created(node, parent, mode, ctx)
            node.children = {}
            node.listed_at = self.monotonic()
            self.table.link_child(parent, name, node)
            self.touch_dir(parent)
            if queued:
                self.meta.save()
        return node

    async def symlink(self, parent: Node, name: str, remote_name: str, target: bytes) -> Node:
        """A link, stored at once as ``remote_name`` (NAME.rclonelink) holding ``target``."""
        # Sent at once, like mkdir: a link is a few bytes and has no open/close to hang an
        # upload on, and what symlink() returns is then what Internxt holds. Offline, behind
        # queued changes, or in a folder made offline (fs/pending.py): journaled instead.
        if self.pending.must_queue(parent.uuid):
            return await self._symlink_journaled(parent, name, remote_name, target)
        now = self.clock_ns()
        try:
            file_id = await self.remote.upload(bytes_reader(target), len(target))
        except ie.InternxtError as exc:
            if not exc.retryable:  # as mkdir: an outage, or a budget spent on 5xx/429
                raise
            log.info("symlink %r: Internxt %s (%s); kept to store later", name,
                     _trouble(exc, self.remote), exc)  # fmt: skip
            return await self._symlink_journaled(parent, name, remote_name, target)

        async def create() -> Any:
            return await self.remote.create_file(
                parent.uuid, remote_name, len(target), file_id, ctime=now / 1e9, mtime=now / 1e9
            )

        try:
            entry = await create()
        except ie.Conflict:
            # A link unlinked here a moment ago may still hold the name (its delete queued in
            # the uploader): send that delete now, then create again.
            if not await self.uploader.settle_deletes_at(parent.uuid, remote_name):
                raise
            entry = await create()
        node = self.table.new_node(
            is_dir=False,
            parent=parent.ino,
            name=name,
            size=len(target),
            mtime_ns=now,
            ctime_ns=now,
            atime_ns=now,
            is_link=True,
            link_target=target,
            file_id=entry.file_id,
        )
        self.table.set_uuid(node, entry.uuid)
        self.table.link_child(parent, name, node)
        self.touch_dir(parent)
        return node

    async def _symlink_journaled(
        self, parent: Node, name: str, remote_name: str, target: bytes
    ) -> Node:
        """A link stored later: a new file ``remote_name`` holding ``target`` in the cache
        and the journal, published by the uploader as any new file (and kept beside a file
        of that name it meets, as a create is, when made where the folder's content was not
        known: fs/conflicts.py)."""
        now = self.clock_ns()
        node = self.table.new_node(
            is_dir=False, parent=parent.ino, name=name, size=len(target), mtime_ns=now,
            ctime_ns=now, atime_ns=now, is_link=True, link_target=target,
        )  # fmt: skip
        local_id: int | None = None
        try:
            # Born clean (nothing to send) and empty: the cache write below marks it dirty
            # with the target's size in the same commit as the target's blocks. A kill -9 in
            # between leaves a record with neither content nor entry, which the next mount
            # drops (Uploader.resume); born dirty, it was stored as an empty .rclonelink.
            record = self.journal.new_file(
                parent_uuid=parent.uuid, name=remote_name, size=0, mtime_ns=now, dirty=False,
                blind=self.blind(parent),
            )  # fmt: skip
            local_id = record.local_id
            self.table.set_local(node, local_id)
            crash_point("after-link-record")
            await self.cache.write(local_id, 0, target, mtime_ns=now)
        except BaseException:
            if local_id is not None:
                self.journal.delete(local_id)
                self.cache.drop(local_id)
            self.table.remove(node)
            raise
        self.table.link_child(parent, name, node)
        self.touch_dir(parent)
        self.uploader.schedule(local_id)
        return node

    # --- unlink, rmdir ------------------------------------------------------------------------

    async def unlink(self, parent: Node, node: Node) -> None:
        """Delete a file remotely (if it exists there) and unlink it locally."""
        async with self.file_lock(node.local_id):
            self.sync_uuid(node)
            if node.uuid is not None and node.open_handles and node.local_id is not None:
                await self._unlink_while_open(parent, node)
                return
            if node.uuid is not None:
                # The remote delete runs in the uploader's bounded pool, so `rm -rf` does not
                # wait for one round trip per file. Journaled first: a deleted record that
                # keeps its remote_uuid is a pending remote delete, which listings hide at
                # once and the next mount resends after a crash. It is aimed at the entry's
                # uuid, never at the name, so a file created under the name meanwhile is not
                # touched (see Uploader.settle_deletes_at for the name clash).
                local_id = self.ensure_record(node)
                # Under the entry's remote name (a link's NAME.rclonelink), which is what a
                # create or move onto the name meets (Uploader.settle_deletes_at).
                remote_name = links.remote_name(node.name, node.is_link)
                lifecycle.unlink_stored(self.journal, local_id, node.uuid, remote_name)
                self.drop_local(node)  # the uploader drops the record once the delete is done
            elif node.local_id is not None:
                if node.open_handles or node.lookups:
                    # Still open: keep the data readable until the last close, never publish.
                    lifecycle.unlink_local(self.journal, node.local_id)
                else:
                    self.drop_local(node)
            if not node.open_handles:
                self.owners.forget(node)
            self.table.unlink_child(parent, node.name)
            self.touch_dir(parent)

    async def _unlink_while_open(self, parent: Node, node: Node) -> None:
        """unlink (or rename over) a stored file that is still open: POSIX keeps it readable
        through its descriptors, and what is not cached is read from Internxt, so its entry
        must outlive the name. The entry is moved aside under a hidden name (the name is free
        for a new file at once) and deleted at the last close. The pending delete is
        journaled before the move, so a crash at any point only delays it to the next mount.
        Called with the file's lock held."""
        assert node.uuid is not None and node.local_id is not None
        local_id = node.local_id
        record = self.journal.get(local_id)
        assert record is not None
        aside = aside_name(node.uuid)
        uuid, parent_uuid = node.uuid, record.parent_uuid
        if self.pending.must_queue(parent_uuid):
            # Offline (or behind queued changes): the move aside is queued (fs/pending.py)
            # with the hold, in one commit; the descriptors read what is cached meanwhile.
            with self.journal.transaction():
                lifecycle.hold(self.journal, local_id, aside)
                self.pending.move("file", uuid, parent_uuid, parent_uuid, aside)
            self._unlinked_while_open(parent, node, queued=True)
            return
        # HELD: a pending remote delete, sent at the last close (see closed)
        lifecycle.hold(self.journal, local_id, aside)
        try:
            await self.remote.move_file(uuid, parent_uuid, aside)
        except ie.NotFound:
            # Deleted elsewhere already: nothing to keep aside, only the local data is left.
            log.info("%r was already gone remotely", node.name)
            lifecycle.held_entry_gone(self.journal, local_id)
        except ie.InternxtError as exc:
            if not unreachable(exc, self.remote):
                lifecycle.hold_failed(self.journal, local_id, record.name)
                raise
            log.info("unlink of %r: Internxt cannot be reached (%s); queued", node.name, exc)
            self.pending.move("file", uuid, parent_uuid, parent_uuid, aside)
            self._unlinked_while_open(parent, node, queued=True)
            return
        except BaseException:
            lifecycle.hold_failed(self.journal, local_id, record.name)
            raise
        self._unlinked_while_open(parent, node, queued=False)

    def _unlinked_while_open(self, parent: Node, node: Node, *, queued: bool) -> None:
        """The local half of :meth:`_unlink_while_open`, once its entry is aside (or the
        move aside is queued)."""
        if node.open_handles == 0:
            # Closed while the move was on its way: nothing will call release again.
            self.drop_local(node)
        self.table.unlink_child(parent, node.name)
        self.touch_dir(parent)
        if queued:
            self.meta.save()  # the view it leaves, for a crash or a remount while offline

    async def rmdir(self, parent: Node, node: Node) -> None:
        assert node.uuid is not None
        if self.pending.must_queue(node.uuid, parent.uuid):
            await self._queue_rmdir(parent, node)
            return
        try:
            await self._remove_remote_dir(parent, node)
        except ie.InternxtError as exc:
            if not unreachable(exc, self.remote):
                raise
            log.info("rmdir %r: Internxt cannot be reached (%s); queued", node.name, exc)
            await self._queue_rmdir(parent, node)

    async def _queue_rmdir(self, parent: Node, node: Node) -> None:
        """rmdir while offline: empty as far as this mount knows (the replay asks the server
        again before deleting, and keeps a folder that holds anything this mount did not
        show: one filled elsewhere meanwhile, or one never listed, whose partial view
        ``rm -rf`` saw empty)."""
        assert node.uuid is not None and parent.uuid is not None
        if await self.meta.children(node):
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        with self.journal.transaction():
            self.pending.rmdir(node.uuid, parent.uuid, node.name)
            self.owners.forget(node)
            self.table.unlink_child(parent, node.name)
            self.touch_dir(parent)
            self.meta.save()

    async def _remove_remote_dir(self, parent: Node, node: Node) -> None:
        assert node.uuid is not None
        # Files just unlinked in it (rm -rf) are still being deleted in the background: the
        # folder is deleted after them, not with them (a folder delete takes whatever it
        # holds, and the server check below must see them gone).
        await self.uploader.wait_deletes_in(node.uuid)
        # Emptiness is checked against the server, never the last listing.
        if await self.meta.children(node, ask_server=True):
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        await self.remote.delete("folder", node.uuid, name=node.name)
        self.owners.forget(node)
        self.table.unlink_child(parent, node.name)
        self.touch_dir(parent)

    # --- rename -------------------------------------------------------------------------------

    async def rename(
        self,
        old_parent: Node,
        old_name: str,
        node: Node,
        new_parent: Node,
        new_name: str,
        target: Node | None,
    ) -> None:
        """rename(2) of ``node`` (``old_parent``/``old_name``) to ``new_parent``/``new_name``,
        which holds ``target`` (None: free). The handler checked the names and the flags."""
        # What the entry is called on the server (a link's file has the suffix).
        new_remote = links.remote_name(new_name, node.is_link)
        if target is node:
            return
        if target is not None:
            if target.is_dir and not node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if node.is_dir and not target.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            if target.is_link != node.is_link:
                await self._rename_over_other_kind(node, new_parent, new_remote, target)
            else:
                await self._rename_over(node, new_parent, new_remote, target)
        elif node.is_dir:
            await self._move_remote_folder(node, new_parent, new_name)
        else:
            await self._move_file(node, new_parent, new_remote)
        self.table.move_child(old_parent, old_name, new_parent, new_name)
        node.ctime_ns = max(node.ctime_ns, self.clock_ns())  # a rename changes ctime (Linux)
        self.touch_dir(old_parent)
        if new_parent is not old_parent:
            self.touch_dir(new_parent)
        if self.pending.queued():
            # A queued rename (fs/pending.py): the view it leaves is kept at once, so a crash
            # or a remount while offline shows the tree as it was left.
            self.meta.save()

    async def _rename_over(self, node: Node, new_parent: Node, new_name: str, target: Node) -> None:
        """rename(2) onto an existing entry: the name holds the old entry or the new one at
        every moment, whatever fails (the steps are in fs/replacement.py)."""
        if await self._queue_rename_over(node, new_parent, target):
            await self._queued_rename_over(node, new_parent, new_name, target)
            return
        if target.is_dir:
            try:
                await self._check_empty_remotely(target)
            except ie.InternxtError as exc:
                if not unreachable(exc, self.remote):
                    raise
                # Its emptiness could not be asked (a read: nothing changed on the server).
                await self._queue_after_meeting_the_outage(node, new_parent, new_name, target, exc)
                return
        try:
            await self._rename_over_online(node, new_parent, new_name, target)
        except Undecided as exc:
            # Its move aside reached a server that does not answer: it may land now, later
            # or never. Queued as when offline, in steps that hold either way (a delete of
            # the target by uuid, wherever it is; a move of the source that finds the name
            # free, taken by our pending delete, or already its own), then its row goes: the
            # target is not to be put back (docs/semantics.md, Durability).
            assert target.uuid is not None
            target_uuid = target.uuid
            log.info("rename onto %r: sent to Internxt, no answer (%s); queued", new_name, exc)
            await self._queued_rename_over(node, new_parent, new_name, target)
            await self.replacements.forget(target_uuid)
        except ie.Unreachable as exc:
            # No connection was made for the step that failed, and no rename over the target
            # is left journaled (fs/replacement.py: its target never moved, or was put back):
            # nothing changed on the server.
            settled = target.uuid is None or self.journal.replacement(target.uuid) is None
            if exc.sent or not settled or not self.remote.offline():
                raise
            await self._queue_after_meeting_the_outage(node, new_parent, new_name, target, exc)

    async def _queue_after_meeting_the_outage(
        self, node: Node, new_parent: Node, new_name: str, target: Node, exc: Exception
    ) -> None:
        """The rename met the outage before anything changed on the server: queued, as when
        the outage was known before it (docs/semantics.md, Durability)."""
        log.info("rename onto %r: Internxt cannot be reached (%s); queued", new_name, exc)
        await self._queued_rename_over(node, new_parent, new_name, target)

    async def _queued_rename_over(
        self, node: Node, new_parent: Node, new_name: str, target: Node
    ) -> None:
        """A rename over a stored entry, queued (fs/pending.py) instead of run in its steps."""
        if target.is_dir:
            # Offline, a folder over a folder: as rmdir of the target (empty in our view,
            # else ENOTEMPTY), then the move, both queued. The replay removes the target
            # only if the server lists it empty; if another client filled it meanwhile it
            # stays, and the move meets its name taken: ours is stored beside it under a
            # marked name (fs/pending.py), so neither is lost.
            await self._queue_rmdir(new_parent, target)
            await self._move_remote_folder(node, new_parent, new_name)
            return
        # Offline, a file over a file: the target's delete is journaled as by unlink (an
        # open target is moved aside first, queued, and deleted at its last close) and the
        # move is queued (or, for a file never uploaded, journaled) behind it. The replay
        # and the uploader meet the name still taken only by our own pending delete, which
        # they send first (Uploader.settle_deletes_at). Other clients see no entry at the
        # name in between, as with the steps of an online rename over a file not uploaded
        # yet.
        await self.unlink(new_parent, target)
        await self._move_file(node, new_parent, new_name)

    async def _check_empty_remotely(self, target: Node) -> None:
        """ENOTEMPTY unless the server lists folder ``target`` empty (a rename over it)."""
        if target.uuid is not None:
            # As rmdir: files just unlinked in it are deleted first, not with the folder.
            await self.uploader.wait_deletes_in(target.uuid)
        # Emptiness is checked against the server, never the last listing.
        if await self.meta.children(target, ask_server=True):
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)

    async def _rename_over_online(
        self, node: Node, new_parent: Node, new_name: str, target: Node
    ) -> None:
        """A rename over a stored entry in its steps on the server (fs/replacement.py)."""

        async def move() -> None:
            if node.is_dir:
                await self._move_remote_folder(node, new_parent, new_name)
            else:
                await self._move_file(node, new_parent, new_name)

        # No publish of the target meanwhile.
        async with self.file_lock(None if target.is_dir else target.local_id):
            if not target.is_dir:
                self.sync_uuid(target)
            if target.uuid is None:
                # Never uploaded: nothing remote holds the name. Moved first, so a failed
                # move leaves the target as it was.
                await move()
                self._forget_replaced(target)
                self.table.unlink_child(new_parent, target.name)
                return
            if not node.is_dir:
                self.sync_uuid(node)
            # An open target keeps its entry (aside) until the last close, as after unlink.
            keep_open = not target.is_dir and target.open_handles > 0
            target_uuid = target.uuid

            def landed() -> None:
                if keep_open:
                    assert target.local_id is not None
                    lifecycle.hold(self.journal, target.local_id, aside_name(target_uuid))
                else:
                    self._forget_replaced(target)

            await self.replacements.rename_over(
                target_uuid=target_uuid,
                kind="folder" if target.is_dir else "file",
                parent_uuid=new_parent.uuid,
                name=new_name,
                source_uuid=node.uuid,
                source_local_id=node.local_id,
                move=move,
                keep_target=keep_open,
                on_landed=landed,
                target_content=None if target.is_dir else self._known_content(target),
            )
            self.table.unlink_child(new_parent, target.name)

    def _known_content(self, node: Node) -> conflicts.KnownContent:
        """What this mount knows a stored file to hold (checked before a late delete of it,
        conflict rule 1): its record's, else its last listing's."""
        record = None if node.local_id is None else self.journal.get(node.local_id)
        if record is not None and record.remote_uuid == node.uuid:
            return conflicts.known_content(self.journal, record)
        return {node.file_id: node.size}

    async def _queue_rename_over(self, node: Node, new_parent: Node, target: Node) -> bool:
        """Whether a rename over a stored entry must be queued (fs/pending.py) rather than run
        in its steps on the server (fs/replacement.py), which cannot be queued. Online it
        waits for the queued namespace changes to be sent first, so it never runs ahead of
        them. Offline (True), a file over a file is queued as an unlink and a move, a folder
        over a folder as an rmdir and a move (docs/semantics.md)."""
        record = None if target.local_id is None else self.journal.get(target.local_id)
        stored = target.is_dir or target.uuid is not None or bool(record and record.remote_uuid)
        parent = self.table.get(node.parent)
        parent_uuid = None if parent is None else parent.uuid
        if not stored or not self.pending.must_queue(node.uuid, new_parent.uuid, parent_uuid):
            return False
        if not self.remote.offline():
            with trio.move_on_after(STALE_QUEUE_WAIT):
                await self.pending.wait_replayed()
            if not self.pending.queued():
                return False
        return True

    async def _rename_over_other_kind(
        self, node: Node, new_parent: Node, new_remote: str, target: Node
    ) -> None:
        """rename(2) of a link onto a regular file, or the other way round: on the server the
        two have different names (one has the link suffix), so the source is moved first and
        the target deleted after; the name shows one of them at every moment."""
        await self._move_file(node, new_parent, new_remote)
        try:
            await self.unlink(new_parent, target)
        except BaseException:
            # Moved but the old entry is still there: both show at the next listing.
            self.meta.invalidate(new_parent)
            raise

    def _forget_replaced(self, target: Node) -> None:
        """Local side of a file replaced by a rename: its unsent changes go with it, and its
        remote entry (if any) is deleted by the replacement's own journaled step."""
        if target.is_dir or target.local_id is None:
            return
        if target.open_handles or target.lookups:
            # Still referenced: keep the data readable until forget/close, never publish.
            lifecycle.unlink_local(self.journal, target.local_id)
        else:
            self.journal.update(target.local_id, remote_uuid=None)
            self.drop_local(target)

    def check_not_into_itself(self, node: Node, new_parent: Node) -> None:
        """EINVAL for a rename of a folder into itself or a folder under it."""
        current: Node | None = new_parent
        while current is not None and current.ino != ROOT_INODE:
            if current is node:
                raise pyfuse3.FUSEError(errno.EINVAL)
            current = self.table.get(current.parent)

    async def _move_remote_folder(self, node: Node, new_parent: Node, new_name: str) -> None:
        assert node.uuid is not None and new_parent.uuid is not None
        old_parent = self.table.get(node.parent)
        assert old_parent is not None and old_parent.uuid is not None
        if self.pending.must_queue(node.uuid, new_parent.uuid, old_parent.uuid):
            self.pending.move("folder", node.uuid, old_parent.uuid, new_parent.uuid, new_name)
            return
        try:
            await self._send_folder_move(node, new_parent, new_name)
        except ie.InternxtError as exc:
            if not unreachable(exc, self.remote):
                raise
            log.info("rename of %r: Internxt cannot be reached (%s); queued", node.name, exc)
            self.pending.move("folder", node.uuid, old_parent.uuid, new_parent.uuid, new_name)

    async def _send_folder_move(self, node: Node, new_parent: Node, new_name: str) -> None:
        assert node.uuid is not None and new_parent.uuid is not None
        if node.parent == new_parent.ino:
            await self.remote.rename_folder(node.uuid, new_name)
        else:
            await self.remote.move_folder(node.uuid, new_parent.uuid, new_name)

    async def _move_file(self, node: Node, new_parent: Node, new_name: str) -> None:
        async with self.file_lock(node.local_id):
            self.sync_uuid(node)
            old_parent = self.table.get(node.parent)
            assert old_parent is not None and old_parent.uuid is not None
            queue = self.pending.must_queue(new_parent.uuid, old_parent.uuid)
            if node.uuid is not None and not queue:
                try:
                    await self._send_file_move(node, new_parent, new_name)
                except ie.InternxtError as exc:
                    if not unreachable(exc, self.remote):
                        raise
                    log.info("rename of %r: Internxt cannot be reached (%s); queued", node.name,
                             exc)  # fmt: skip
                    queue = True
            if node.uuid is not None and queue:
                self.pending.move("file", node.uuid, old_parent.uuid, new_parent.uuid, new_name)
            if node.local_id is not None:
                changes: dict[str, Any] = {"parent_uuid": new_parent.uuid, "name": new_name}
                if node.uuid is None and self.blind(new_parent):
                    changes["blind"] = True  # its name was not checked either (see blind)
                self.journal.update(node.local_id, **changes)

    async def _send_file_move(self, node: Node, new_parent: Node, new_name: str) -> None:
        assert node.uuid is not None and new_parent.uuid is not None
        try:
            try:
                await self.remote.move_file(node.uuid, new_parent.uuid, new_name)
            except ie.Conflict:
                # A file unlinked here a moment ago whose delete is still queued holds the
                # name: delete it now and move again.
                if not await self.uploader.settle_deletes_at(new_parent.uuid, new_name):
                    raise
                await self.remote.move_file(node.uuid, new_parent.uuid, new_name)
        except ie.Conflict:
            # Another client created that name after our listing: rename(2) replaces the
            # target, as a local rename over it would. A folder of that name, or an entry
            # this mount knows, stays: EEXIST.
            await self._remove_unseen_target(node, new_parent, new_name)
        crash_point("after-remote-move")

    async def _remove_unseen_target(self, node: Node, new_parent: Node, new_name: str) -> None:
        """The move of ``node`` met an entry this mount has not listed: replace it as a
        rename over would (or find the move done, or refuse with EEXIST)."""
        assert node.uuid is not None
        unseen = await self._unseen_target(node, new_parent, new_name)
        if unseen is None:
            return
        uuid = node.uuid

        async def move_again() -> None:
            await self.remote.move_file(uuid, new_parent.uuid, new_name)

        await self.replacements.rename_over(
            target_uuid=unseen,
            kind="file",
            parent_uuid=new_parent.uuid,
            name=new_name,
            source_uuid=uuid,
            source_local_id=node.local_id,
            move=move_again,
        )

    async def _unseen_target(self, node: Node, parent: Node, name: str) -> str | None:
        """The move of ``node`` to ``parent``/``name`` met Conflict: the conflict policy
        decides (fs/conflicts.py, ``rename_target``)."""
        assert parent.uuid is not None
        self.meta.invalidate(parent)  # our listing missed it: list again next time
        return await conflicts.rename_target(
            self.remote,
            parent.uuid,
            name,
            node.uuid,
            known=lambda uuid: (
                self.table.by_uuid(uuid) is not None
                or self.journal.find_by_remote(uuid) is not None
            ),
        )


def bytes_reader(data: bytes) -> Callable[[int, int], Awaitable[bytes]]:
    """``read(offset, n)`` over bytes in memory, for ``Remote.upload`` of a link's target."""

    async def read(offset: int, n: int) -> bytes:
        return data[offset : offset + n]

    return read


def _trouble(exc: ie.InternxtError, remote: Remote) -> str:
    """What kept a call from the server, for the log line of a change queued instead."""
    if unreachable(exc, remote):
        return "cannot be reached"
    return "answered only with errors until the call's time ran out"
