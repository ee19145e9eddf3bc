"""pyfuse3 request handlers: translate kernel requests into the layers below, nothing else.

Every handler is wrapped by :func:`fuse_handler`, so no exception ends the mount. Handlers never
await the network on the write/close path: data goes to the block cache and the uploader
publishes it later. Namespace changes (mkdir, rename, unlink, rmdir) of things that exist
remotely are sent at once, so that what the handler returns is what Internxt holds; changes to
files not uploaded yet stay in the journal.

Shared state between handler tasks: the inode table and listings (see metadata.py), the open
handle table ``_handles`` (mutated without awaits in between) and journal records. A file's
namespace changes and its publish step are serialised by ``uploader.lock_for(local_id)``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from internxtfs.fs import names
from internxtfs.fs.crashpoints import crash_point
from internxtfs.fs.errno_map import fuse_handler
from internxtfs.fs.inodes import ROOT_INODE, InodeTable, Node
from internxtfs.fs.metadata import Metadata
from internxtfs.fs.replacement import Replacements, aside_name
from internxtfs.internxt import errors as ie

log = logging.getLogger(__name__)

BLOCK_SIZE_HINT = 128 * 1024  # st_blksize: tells cp & co to use big writes


@dataclass
class MountOptions:
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    allow_other: bool = False
    dir_cache_ttl: float = 10.0
    attr_timeout: float = 1.0
    delete_mode: str = "permanent"  # or "trash"
    statfs_ttl: float = 30.0
    fsync: str = "remote"  # or "local": see docs/semantics.md


@dataclass
class OpenFile:
    node: Node
    writable: bool
    append: bool
    wrote: bool = False  # written since the last flush/fsync persisted it
    unsent: bool = False  # persisted changes whose upload release() must schedule


@dataclass
class DirHandle:
    node: Node
    entries: list[tuple[str, int]]


class Filesystem(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(
        self,
        *,
        drive: Any,
        journal: Any,
        cache: Any,
        uploader: Any,
        root_uuid: str,
        options: MountOptions,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.drive = drive
        self.journal = journal
        self.cache = cache
        self.uploader = uploader
        self.options = options
        self.clock_ns = clock_ns
        self.monotonic = monotonic
        self.table = InodeTable(root_uuid, clock_ns())
        # Renames over an existing entry; the mount runs its background task (replacements.run).
        self.replacements = Replacements(drive, journal, self._delete_remote)
        self.meta = Metadata(
            drive,
            self.table,
            journal,
            options.dir_cache_ttl,
            monotonic,
            cache.invalidate,
            shown_as=self.replacements.shown_as,
            listing_lag=getattr(drive, "listing_lag", None),
            recently_written=getattr(drive, "recently_written", None),
            recently_deleted=getattr(drive, "recently_deleted", None),
        )
        self._handles: dict[int, OpenFile | DirHandle] = {}
        self._next_fh = 1
        self._statfs: tuple[float, int, int] | None = None
        self._warned: set[str] = set()

    # --- helpers ----------------------------------------------------------------------------

    def _node(self, ino: int) -> Node:
        node = self.table.get(ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _dir(self, ino: int) -> Node:
        node = self._node(ino)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return node

    def attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = self.options.attr_timeout
        a.attr_timeout = self.options.attr_timeout
        perms = (0o777 if node.is_dir else 0o666) & ~self.options.umask
        a.st_mode = node.mode_type | perms
        a.st_nlink = 2 if node.is_dir else 1
        a.st_uid = self.options.uid
        a.st_gid = self.options.gid
        a.st_rdev = 0
        a.st_size = 4096 if node.is_dir else node.size
        a.st_blksize = BLOCK_SIZE_HINT
        a.st_blocks = (a.st_size + 511) // 512
        a.st_atime_ns = node.atime_ns or node.mtime_ns
        a.st_mtime_ns = node.mtime_ns
        a.st_ctime_ns = node.ctime_ns or node.mtime_ns
        return a

    def _new_fh(self, handle: OpenFile | DirHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _file_handle(self, fh: int) -> OpenFile:
        handle = self._handles.get(fh)
        if not isinstance(handle, OpenFile):
            raise pyfuse3.FUSEError(errno.EBADF)
        return handle

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(message)

    async def _child(self, parent: Node, name: str) -> Node | None:
        return await self.meta.lookup(parent, name)

    def _ensure_record(self, node: Node) -> int:
        """Give a remote file a journal record, so its blocks can be cached and changed."""
        if node.local_id is not None:
            return node.local_id
        parent = self._node(node.parent)
        record = self.journal.new_file(
            parent_uuid=parent.uuid,
            name=node.name,
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

    def _touch_dir(self, parent: Node) -> None:
        parent.mtime_ns = parent.ctime_ns = self.clock_ns()
        parent.mtime_pinned = True
        self.meta.touch(parent)

    def _drop_local(self, node: Node) -> None:
        """Forget a file's local state (its cache blocks and journal record)."""
        if node.local_id is None:
            return
        local_id = node.local_id
        if self._remote_delete_pending(node):
            # Unlinked while open (_unlink_while_open): the uploader deletes the entry, then
            # forgets the record and cache.
            self.table.set_local(node, None)
            self.uploader.delete_when_closed(local_id)
            return
        self.table.set_local(node, None)
        # Record first, then the cache file: a crash in between leaves a cache file without a
        # record, which the next mount removes. The other order could leave dirty blocks
        # without their cache file (the next mount refuses to start: JournalDamaged) or a
        # dirty record without blocks (uploaded again as zeros).
        self.journal.delete(local_id)
        self.cache.drop(local_id)

    def _remote_delete_pending(self, node: Node) -> bool:
        record = None if node.local_id is None else self.journal.get(node.local_id)
        return record is not None and record.deleted and record.remote_uuid is not None

    def _sync_uuid(self, node: Node) -> None:
        """Learn the uuid the uploader gave a file we created (call under its lock)."""
        if node.local_id is None:
            return
        record = self.journal.get(node.local_id)
        if record is not None and record.remote_uuid != node.uuid and record.remote_uuid:
            self.table.set_uuid(node, record.remote_uuid)

    async def _remove_file(self, parent: Node, node: Node) -> None:
        """Delete a file remotely (if it exists there) and unlink it locally."""
        lock = self.uploader.lock_for(node.local_id) if node.local_id is not None else None
        if lock is not None:
            await lock.acquire()
        try:
            self._sync_uuid(node)
            if node.uuid is not None and node.open_handles and node.local_id is not None:
                await self._unlink_while_open(parent, node)
                return
            if node.uuid is not None:
                # Journal the delete before sending it: a crash after the remote delete must
                # not leave a record with unsent content that the next mount would publish
                # again (resurrecting the file). A deleted record with a remote_uuid is a
                # pending remote delete, which the uploader resends at the next mount.
                if node.local_id is not None:
                    self.journal.update(node.local_id, deleted=True)
                try:
                    await self._delete_remote("file", node.uuid)
                except BaseException:
                    if node.local_id is not None:
                        self.journal.update(node.local_id, deleted=False)
                    raise
                crash_point("after-remote-delete")
            if node.local_id is not None:
                if node.open_handles or node.lookups:
                    # Still open: keep the data readable until the last close, never publish.
                    self.journal.update(node.local_id, deleted=True, remote_uuid=None)
                else:
                    if node.uuid is not None:
                        self.journal.update(node.local_id, remote_uuid=None)  # delete done
                    self._drop_local(node)
            self.table.unlink_child(parent, node.name)
            self._touch_dir(parent)
        finally:
            if lock is not None:
                lock.release()

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
        # deleted + remote_uuid: a pending remote delete (sent at the last close, see release)
        self.journal.update(local_id, deleted=True, name=aside)
        self.uploader.hold(local_id)
        try:
            await self.drive.move_file(node.uuid, record.parent_uuid, aside)
        except ie.NotFound:
            # Deleted elsewhere already: nothing to keep aside, only the local data is left.
            log.info("%r was already gone remotely", node.name)
            self.journal.update(local_id, remote_uuid=None)
            self.uploader.unhold(local_id)
        except BaseException:
            self.journal.update(local_id, deleted=False, name=record.name)
            self.uploader.unhold(local_id)
            raise
        if node.open_handles == 0:
            # Closed while the move was on its way: nothing will call release again.
            self._drop_local(node)
        self.table.unlink_child(parent, node.name)
        self._touch_dir(parent)

    async def _delete_remote(self, kind: str, uuid: str) -> None:
        try:
            if self.options.delete_mode == "trash":
                await self.drive.trash([(uuid, kind)])
            elif kind == "file":
                await self.drive.delete_file(uuid)
            else:
                await self.drive.delete_folder(uuid)
        except ie.NotFound:
            log.info("%s %s was already gone remotely", kind, uuid)

    # --- lookup and attributes --------------------------------------------------------------

    @fuse_handler
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._dir(parent_inode)
        if name == b".":
            node = parent
        elif name == b"..":
            node = self._node(parent.parent)
        else:
            found = await self._child(parent, names.decode(name))
            if found is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            node = found
        node.lookups += 1
        return self.attrs(node)

    @fuse_handler
    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            removed = self.table.forget(ino, count)
            if removed is not None and removed.unlinked:
                self._drop_local(removed)

    @fuse_handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.attrs(self._node(inode))

    @fuse_handler
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self._node(inode)
        changed = False
        if fields.update_size:
            if node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            local_id = self._ensure_record(node)
            await self.cache.truncate(local_id, attr.st_size)
            node.size = attr.st_size
            node.mtime_ns = node.ctime_ns = self.clock_ns()
            changed = True
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
            node.mtime_pinned = node.is_dir
            changed = True
        if fields.update_atime:
            node.atime_ns = attr.st_atime_ns
        if fields.update_mode or fields.update_uid or fields.update_gid:
            # Internxt keeps no owner or permission bits; they come from the mount options.
            self._warn_once("chmod", "chmod/chown are accepted and ignored (see docs/semantics.md)")
        if changed and not node.is_dir:
            local_id = self._ensure_record(node)
            # Internxt has no call that sets only a file's mtime, so a new mtime on a clean file
            # means uploading its content again with the new modificationTime.
            self.journal.update(local_id, mtime_ns=node.mtime_ns, size=node.size, dirty=True)
            # Scheduled even while open (the descriptor may be read-only and never schedule
            # at close): the quiet period delays it, and a write meanwhile restarts it.
            self.uploader.schedule(local_id)
        return self.attrs(node)

    # --- directories ------------------------------------------------------------------------

    @fuse_handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._dir(inode)
        children = await self.meta.children(node)
        # A snapshot: offsets stay stable while the directory changes under the reader.
        # "." and ".." first, as on a local disk (``ls -a`` shows them).
        parent = node.parent if self.table.get(node.parent) is not None else node.ino
        entries = [(".", node.ino), ("..", parent), *sorted(children.items())]
        return self._new_fh(DirHandle(node, entries))

    @fuse_handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._handles.get(fh)
        if not isinstance(handle, DirHandle):
            raise pyfuse3.FUSEError(errno.EBADF)
        for index in range(start_id, len(handle.entries)):
            name, ino = handle.entries[index]
            node = self.table.get(ino)
            if node is None:
                continue
            if not pyfuse3.readdir_reply(token, names.encode(name), self.attrs(node), index + 1):
                break
            if name not in (".", ".."):
                node.lookups += 1  # readdirplus counts as a lookup, except for these two

    @fuse_handler
    async def releasedir(self, fh: int) -> None:
        self._handles.pop(fh, None)

    @fuse_handler
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._dir(parent_inode)
        text = names.decode(name)
        names.check_folder_name(text)
        if await self._child(parent, text) is not None:
            raise pyfuse3.FUSEError(errno.EEXIST)
        now = self.clock_ns()
        entry = await self.drive.create_folder(parent.uuid, text, ctime=now / 1e9, mtime=now / 1e9)
        node = self.table.new_node(
            is_dir=True, parent=parent.ino, name=text, mtime_ns=now, ctime_ns=now, atime_ns=now
        )
        self.table.set_uuid(node, entry.uuid)
        node.children = {}
        node.listed_at = self.monotonic()
        self.table.link_child(parent, text, node)
        self._touch_dir(parent)
        node.lookups += 1
        return self.attrs(node)

    @fuse_handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._dir(parent_inode)
        text = names.decode(name)
        node = await self._child(parent, text)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        await self._remove_dir(parent, node)

    async def _remove_dir(self, parent: Node, node: Node) -> None:
        self.meta.invalidate(node)  # emptiness must be checked against the server
        if await self.meta.children(node):
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        assert node.uuid is not None
        await self._delete_remote("folder", node.uuid)
        self.table.unlink_child(parent, node.name)
        self._touch_dir(parent)

    # --- files ------------------------------------------------------------------------------

    @fuse_handler
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self._dir(parent_inode)
        text = names.decode(name)
        names.check_file_name(text)
        existing = await self._child(parent, text)
        if existing is not None:
            raise pyfuse3.FUSEError(errno.EISDIR if existing.is_dir else errno.EEXIST)
        now = self.clock_ns()
        record = self.journal.new_file(
            parent_uuid=parent.uuid, name=text, size=0, mtime_ns=now, dirty=True
        )
        node = self.table.new_node(
            is_dir=False, parent=parent.ino, name=text, mtime_ns=now, ctime_ns=now, atime_ns=now
        )
        self.table.set_local(node, record.local_id)
        self.table.link_child(parent, text, node)
        self._touch_dir(parent)
        node.lookups += 1
        node.open_handles += 1
        handle = OpenFile(node, writable=True, append=bool(flags & os.O_APPEND), wrote=True)
        return pyfuse3.FileInfo(fh=self._new_fh(handle)), self.attrs(node)

    @fuse_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        self._ensure_record(node)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        handle = OpenFile(node, writable=writable, append=bool(flags & os.O_APPEND))
        if flags & os.O_TRUNC and writable:
            assert node.local_id is not None
            await self.cache.truncate(node.local_id, 0)
            node.size = 0
            node.mtime_ns = node.ctime_ns = self.clock_ns()
            handle.wrote = True
        node.open_handles += 1
        return pyfuse3.FileInfo(fh=self._new_fh(handle))

    @fuse_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._file_handle(fh)
        node = handle.node
        if off >= node.size:
            return b""
        assert node.local_id is not None
        return await self.cache.read(node.local_id, off, min(size, node.size - off))

    @fuse_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._file_handle(fh)
        node = handle.node
        if not handle.writable:
            raise pyfuse3.FUSEError(errno.EBADF)
        if handle.append:
            off = node.size
        assert node.local_id is not None
        await self.cache.write(node.local_id, off, buf)
        node.size = max(node.size, off + len(buf))
        node.mtime_ns = node.ctime_ns = self.clock_ns()
        handle.wrote = True
        return len(buf)

    def _persist_changes(self, handle: OpenFile) -> int | None:
        node = handle.node
        if not handle.wrote or node.local_id is None or node.unlinked:
            return None
        self.journal.update(node.local_id, mtime_ns=node.mtime_ns, size=node.size, dirty=True)
        handle.wrote = False
        handle.unsent = True
        return node.local_id

    @fuse_handler
    async def flush(self, fh: int) -> None:
        self._persist_changes(self._file_handle(fh))

    @fuse_handler
    async def release(self, fh: int) -> None:
        handle = self._file_handle(fh)
        del self._handles[fh]
        node = handle.node
        node.open_handles -= 1
        self._persist_changes(handle)
        if handle.unsent and node.local_id is not None and not node.unlinked:
            self.uploader.schedule(node.local_id)
        if node.unlinked and node.open_handles == 0:
            if node.lookups == 0:
                self._drop_local(node)
                self.table.remove(node)
            elif self._remote_delete_pending(node):
                # Last close of a file unlinked while open: no descriptor can reach its data
                # any more (the kernel's lookups linger only for stat), so its entry can go.
                self._drop_local(node)

    @fuse_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self._file_handle(fh)
        local_id = self._persist_changes(handle)
        node = handle.node
        if local_id is None and node.local_id is not None and not node.unlinked:
            # fsync is about the file, not the descriptor: content written through another
            # (maybe closed) descriptor must be stored too, e.g. for `sync FILE` (O_RDONLY).
            record = self.journal.get(node.local_id)
            if record is not None and record.dirty and not record.deleted:
                local_id = node.local_id
        if local_id is None:
            return
        if self.options.fsync == "local":
            # S3QL's meaning: durable in the local cache (data and journal on disk); the
            # upload follows as after close().
            await trio.to_thread.run_sync(self._fsync_local, local_id)
            return
        self.uploader.schedule(local_id, immediate=True)
        await self.uploader.wait_idle(local_id)
        # Stored: unless written again, closing this descriptor has nothing left to upload.
        handle.unsent = handle.wrote

    @fuse_handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._dir(parent_inode)
        node = await self._child(parent, names.decode(name))
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        await self._remove_file(parent, node)

    @fuse_handler
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            # Internxt cannot swap two entries atomically; refuse rather than fake it.
            raise pyfuse3.FUSEError(errno.EINVAL)
        old_parent = self._dir(parent_inode_old)
        new_parent = self._dir(parent_inode_new)
        old_text, new_text = names.decode(name_old), names.decode(name_new)
        node = await self._child(old_parent, old_text)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if node.is_dir:
            names.check_folder_name(new_text)
            self._check_not_into_itself(node, new_parent)
        else:
            names.check_file_name(new_text)
        target = await self._child(new_parent, new_text)
        if target is node:
            return
        if target is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise pyfuse3.FUSEError(errno.EEXIST)
            if target.is_dir and not node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if node.is_dir and not target.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            await self._rename_over(node, new_parent, new_text, target)
        elif node.is_dir:
            await self._move_remote_folder(node, new_parent, new_text)
        else:
            await self._move_file(node, new_parent, new_text)
        self.table.move_child(old_parent, old_text, new_parent, new_text)
        self._touch_dir(old_parent)
        if new_parent is not old_parent:
            self._touch_dir(new_parent)

    async def _rename_over(self, node: Node, new_parent: Node, new_name: str, target: Node) -> None:
        """rename(2) onto an existing entry: the name holds the old entry or the new one at
        every moment, whatever fails (the steps are in fs/replacement.py)."""
        if target.is_dir:
            self.meta.invalidate(target)  # emptiness must be checked against the server
            if await self.meta.children(target):
                raise pyfuse3.FUSEError(errno.ENOTEMPTY)

        async def move() -> None:
            if node.is_dir:
                await self._move_remote_folder(node, new_parent, new_name)
            else:
                await self._move_file(node, new_parent, new_name)

        lock = None
        if not target.is_dir and target.local_id is not None:
            lock = self.uploader.lock_for(target.local_id)  # no publish of it meanwhile
            await lock.acquire()
        try:
            if not target.is_dir:
                self._sync_uuid(target)
            if target.uuid is None:
                # Never uploaded: nothing remote holds the name. Moved first, so a failed
                # move leaves the target as it was.
                await move()
                self._forget_replaced(target)
                self.table.unlink_child(new_parent, target.name)
                return
            if not node.is_dir:
                self._sync_uuid(node)
            # An open target keeps its entry (aside) until the last close, as after unlink.
            keep_open = not target.is_dir and target.open_handles > 0
            target_uuid = target.uuid

            def landed() -> None:
                if keep_open:
                    assert target.local_id is not None
                    self.journal.update(target.local_id, deleted=True, name=aside_name(target_uuid))
                    self.uploader.hold(target.local_id)
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
            )
            self.table.unlink_child(new_parent, target.name)
        finally:
            if lock is not None:
                lock.release()

    def _forget_replaced(self, target: Node) -> None:
        """Local side of a file replaced by a rename: its unsent changes go with it, and its
        remote entry (if any) is deleted by the replacement's own journaled step."""
        if target.is_dir or target.local_id is None:
            return
        if target.open_handles or target.lookups:
            # Still referenced: keep the data readable until forget/close, never publish.
            self.journal.update(target.local_id, deleted=True, remote_uuid=None)
        else:
            self.journal.update(target.local_id, remote_uuid=None)
            self._drop_local(target)

    def _check_not_into_itself(self, node: Node, new_parent: Node) -> None:
        current: Node | None = new_parent
        while current is not None and current.ino != ROOT_INODE:
            if current is node:
                raise pyfuse3.FUSEError(errno.EINVAL)
            current = self.table.get(current.parent)

    async def _move_remote_folder(self, node: Node, new_parent: Node, new_name: str) -> None:
        assert node.uuid is not None and new_parent.uuid is not None
        if node.parent == new_parent.ino:
            await self.drive.rename_folder(node.uuid, new_name)
        else:
            await self.drive.move_folder(node.uuid, new_parent.uuid, new_name)

    async def _move_file(self, node: Node, new_parent: Node, new_name: str) -> None:
        lock = self.uploader.lock_for(node.local_id) if node.local_id is not None else None
        if lock is not None:
            await lock.acquire()
        try:
            self._sync_uuid(node)
            if node.uuid is not None:
                try:
                    await self.drive.move_file(node.uuid, new_parent.uuid, new_name)
                except ie.Conflict:
                    # Another client created that name after our listing: rename(2) replaces
                    # the target, as a local rename over it would. A folder of that name, or
                    # an entry this mount knows, stays: EEXIST.
                    unseen = await self._unseen_target(node, new_parent, new_name)
                    if unseen is not None:
                        uuid = node.uuid

                        async def move_again() -> None:
                            await self.drive.move_file(uuid, new_parent.uuid, new_name)

                        await self.replacements.rename_over(
                            target_uuid=unseen,
                            kind="file",
                            parent_uuid=new_parent.uuid,
                            name=new_name,
                            source_uuid=uuid,
                            source_local_id=node.local_id,
                            move=move_again,
                        )
                crash_point("after-remote-move")
            if node.local_id is not None:
                self.journal.update(node.local_id, parent_uuid=new_parent.uuid, name=new_name)
        finally:
            if lock is not None:
                lock.release()

    async def _unseen_target(self, node: Node, parent: Node, name: str) -> str | None:
        """The move of ``node`` to ``parent``/``name`` met Conflict. Returns None when the move
        is in fact done (the entry there is our own: an earlier attempt landed), or the uuid
        of the file there that this mount does not know (another client created it after our
        listing), which the rename may replace; anything else is EEXIST."""
        assert parent.uuid is not None
        self.meta.invalidate(parent)  # our listing missed it: list again next time
        found = await self.drive.files_exist(parent.uuid, [name])
        if any(entry.uuid == node.uuid for entry in found):
            return None
        if not found:
            raise pyfuse3.FUSEError(errno.EEXIST)  # a folder holds the name
        for entry in found:
            if self.table.by_uuid(entry.uuid) is not None or self.journal.find_by_remote(
                entry.uuid
            ):
                raise pyfuse3.FUSEError(errno.EEXIST)  # known here: not ours to delete blindly
        log.info("%r appeared remotely after our listing; the rename replaces it", name)
        return str(found[0].uuid)

    def _fsync_local(self, local_id: int) -> None:
        # Runs in a worker thread: only file descriptors, no journal or trio state.
        for path in (self.cache.path(local_id), Path(f"{self.journal.path}-wal")):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # a 0-byte file has no cache file; a checkpointed journal no WAL
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # --- space --------------------------------------------------------------------------------

    @fuse_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        now = self.monotonic()
        if self._statfs is None or now - self._statfs[0] > self.options.statfs_ttl:
            used = await self.drive.usage()
            limit = await self.drive.limit()
            self._statfs = (now, used, limit)
        _, used, limit = self._statfs
        data = pyfuse3.StatvfsData()
        data.f_bsize = BLOCK_SIZE_HINT
        data.f_frsize = 4096
        data.f_blocks = limit // data.f_frsize
        data.f_bfree = data.f_bavail = max(0, limit - used) // data.f_frsize
        data.f_files = data.f_ffree = data.f_favail = 1 << 32
        data.f_namemax = names.NAME_MAX
        return data

    # --- what Internxt cannot store -------------------------------------------------------------

    async def _unsupported(self, what: str, code: int) -> None:
        self._warn_once(what, f"{what} is not supported on Internxt Drive; returning an error")
        raise pyfuse3.FUSEError(code)

    @fuse_handler
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any) -> Any:
        await self._unsupported("hard links", errno.EPERM)

    @fuse_handler
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any) -> Any:
        await self._unsupported("symbolic links", errno.EPERM)

    @fuse_handler
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any) -> Any:
        kind = "fifos" if stat.S_ISFIFO(mode) else "device nodes and sockets"
        await self._unsupported(kind, errno.EPERM)

    @fuse_handler
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        raise pyfuse3.FUSEError(errno.EINVAL)

    @fuse_handler
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        await self._unsupported("extended attributes", errno.ENOTSUP)

    @fuse_handler
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        # ENOSYS (not ENOATTR): the kernel then answers every later getxattr itself, with
        # EOPNOTSUPP, instead of asking us. `ls -l` asks two per file (ACL, security label),
        # and each round trip costs ~35 us: a third of a warm `ls -l` of 5,000 files.
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @fuse_handler
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return []

    @fuse_handler
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
