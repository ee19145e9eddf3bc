"""pyfuse3 request handlers: translate kernel requests into the layers below, nothing else.

Every handler is wrapped by :func:`fuse_handler`, so no exception ends the mount. Handlers never
await the network on the write/close path: data goes to the block cache and the uploader
publishes it later. A namespace handler (create, mkdir, symlink, unlink, rmdir, rename) looks
its entries up, checks the request, makes one call to fs/namespace.py (which holds what a
namespace change does to the table, the journal and Internxt) and returns attributes.

Shared state between handler tasks: the inode table and listings (see metadata.py), the open
handle table ``_handles`` (mutated without awaits in between) and journal records. A file's
namespace changes and its publish step are serialised by the file's lock (``locks``, owned by
the mount wiring; docs/concurrency.md).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from internxtfs.fs import lifecycle, links, names
from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.errno_map import fuse_handler
from internxtfs.fs.inodes import ROOT_INODE, InodeTable, Node
from internxtfs.fs.journal import Journal
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.metadata import Metadata, same_millisecond
from internxtfs.fs.modes import DeleteMode, FsyncMode, OfflineFsync
from internxtfs.fs.namespace import Namespace, bytes_reader
from internxtfs.fs.ownership import Ownership
from internxtfs.fs.pending import PendingNamespace, unreachable
from internxtfs.fs.remote import Remote
from internxtfs.fs.replacement import Replacements
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt import errors as ie

log = logging.getLogger(__name__)

# An fsync whose upload waits for the namespace changes queued offline looks this often
# whether the oldest one was refused for good (fs/pending.py, PendingNamespace.refused), or
# has met only errors for longer than an upload's own retries take to end in EIO.
QUEUE_LOOK_INTERVAL = 1.0
QUEUE_FAILING_PATIENCE = 10.0

BLOCK_SIZE_HINT = 128 * 1024  # st_blksize: tells cp & co to use big writes


@dataclass
class MountOptions:
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    allow_other: bool = False
    dir_cache_ttl: float = 10.0
    attr_timeout: float = 1.0
    delete_mode: DeleteMode = DeleteMode.PERMANENT
    statfs_ttl: float = 30.0
    fsync: FsyncMode = FsyncMode.REMOTE  # see docs/semantics.md
    fsync_offline: OfflineFsync = OfflineFsync.LOCAL  # --fsync remote while Internxt is down
    links: bool = True  # symlinks stored as NAME.rclonelink files (fs/links.py); off: EPERM


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
    # Off on purpose: with it the kernel keeps its own size and mtime of a regular file and
    # never takes them from getattr again (Linux fs/fuse/inode.c, fuse_get_cache_mask), so
    # another client's change would never show; and dd was not faster (bench/RESULTS.md).
    enable_writeback_cache = False

    def __init__(
        self,
        *,
        remote: Remote,
        journal: Journal,
        cache: BlockCache,
        uploader: Uploader,
        locks: KeyedLock,
        root_uuid: str,
        options: MountOptions,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.remote = remote
        self.journal = journal
        self.cache = cache
        self.uploader = uploader
        self.locks = locks  # per file (local_id), shared with the uploader and the sweeper
        self.options = options
        self.clock_ns = clock_ns
        self.monotonic = monotonic
        self.table = InodeTable(root_uuid, clock_ns())
        # Renames over an existing entry; the mount runs its background task (replacements.run).
        self.replacements = Replacements(remote, journal)
        # Namespace changes made while Internxt cannot be reached (fs/pending.py); the mount
        # runs its replay task (pending.run).
        self.pending = PendingNamespace(
            journal, remote, self.table, uploader, recovery_parent=uploader.recovery_parent
        )
        self.meta = Metadata(
            remote,
            self.table,
            journal,
            options.dir_cache_ttl,
            monotonic,
            self._content_replaced,
            shown_as=self.replacements.shown_as,
            links=options.links,
            subdirs_changed=self._subdirs_changed,
            held=self.pending.holds,
            pending_folders=self.pending.folders_in,
        )
        self.owners = Ownership(journal, options)
        # What create, mkdir, unlink, rmdir and rename do, and a file's local state around them.
        self.namespace = Namespace(
            remote=remote,
            journal=journal,
            cache=cache,
            uploader=uploader,
            locks=locks,
            table=self.table,
            meta=self.meta,
            owners=self.owners,
            replacements=self.replacements,
            pending=self.pending,
            clock_ns=clock_ns,
            monotonic=monotonic,
        )
        self._handles: dict[int, OpenFile | DirHandle] = {}
        self._next_fh = 1
        self._statfs: tuple[float, int, int, int] | None = None
        self._fsync_offline_told = False  # warned once in this outage (fsync)
        # Returns once Internxt turns out unreachable (service/pending.py, Pending.outage; set
        # by the mount): an fsync waiting on its upload stops waiting then (see fsync).
        self.outage_found: Callable[[], Awaitable[None]] | None = None
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
        perms, a.st_uid, a.st_gid = self.owners.resolve(node)
        if node.is_link:
            perms = 0o777  # as on Linux: a link's own bits are never used
        a.st_mode = node.mode_type | perms
        a.st_nlink = self._nlink(node)
        a.st_rdev = 0
        a.st_size = 4096 if node.is_dir else node.size
        a.st_blksize = BLOCK_SIZE_HINT
        a.st_blocks = (self._allocated(node) + 511) // 512
        a.st_atime_ns = node.atime_ns or node.mtime_ns
        a.st_mtime_ns = node.mtime_ns
        a.st_ctime_ns = node.ctime_ns or node.mtime_ns
        return a

    def _nlink(self, node: Node) -> int:
        """As on ext4, a directory's link count is 2 plus its subdirectories. For one never
        listed the count is unknown: 1, which find and fts read as "do not count on it" (as
        btrfs reports for every directory)."""
        if not node.is_dir:
            return 1
        subdirs = self.meta.subdirs(node)
        return 1 if subdirs is None else 2 + subdirs

    def _subdirs_changed(self, node: Node) -> None:
        # The kernel caches st_nlink for attr_timeout; a listing that changes it (the first
        # one, or another client's mkdir) must not leave `stat` showing the old count.
        # attr_only: no page cache is dropped, so this cannot wait on a request of ours.
        try:
            pyfuse3.invalidate_inode(node.ino, attr_only=True)
        except Exception as exc:  # no FUSE session (unit tests), or the kernel forgot it
            log.debug("cannot invalidate the attributes of inode %d: %s", node.ino, exc)

    def _allocated(self, node: Node) -> int:
        """Bytes that hold data (``st_blocks``): a hole never written is not counted, so
        ``du`` and sparse-aware copies see a sparse file as sparse. What the remote object
        holds counts whole (Internxt stores it dense); past it, what the cache holds."""
        if node.is_dir:
            return 4096
        record = None if node.local_id is None else self.journal.get(node.local_id)
        if record is None:
            return node.size
        remote = min(node.size, record.remote_valid_len)
        return remote + self.cache.allocated_past(record.local_id, remote, node.size)

    def path_of(self, record: Any) -> str:
        """Where a file with local state shows in this mount, from the root ("/d/f.txt"), for
        status, flush and the log. A folder this mount has not looked at shows as "…"."""
        node = self.table.by_local(record.local_id)
        if node is not None and not node.unlinked:
            parts, folder = [node.name], self.table.get(node.parent)
        else:
            parts, folder = [record.name], self.table.by_uuid(record.parent_uuid)
        while folder is not None and folder.ino != ROOT_INODE:
            parts.append(folder.name)
            folder = self.table.get(folder.parent)
        if folder is None:
            parts.append("…")
        return "/" + "/".join(reversed(parts))

    def _new_fh(self, handle: OpenFile | DirHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def open_nodes(self) -> list[Node]:
        """Files and folders open through the mount (``internxtfs umount`` names them)."""
        return [handle.node for handle in self._handles.values()]

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

    def _content_replaced(self, node: Node, local_id: int) -> Node:
        """Another client replaced the file's content (Metadata calls this, then points the
        returned node's record at the new object).

        Nothing open: the old version's clean blocks are dropped and the inode stays. Open
        descriptors keep the old version, as after a local replace by rename (Namespace.detach):
        they read what is cached of it and get ESTALE past that once the old object is gone; one
        open never mixes two versions, in our cache or in the kernel's page cache of the
        inode. The name then leads to a new inode with a fresh record, so the next open reads
        the new content from its start."""
        if node.open_handles == 0:
            self.cache.invalidate(local_id)
            node.page_cache_stale = True  # the kernel may still hold pages of an earlier open
            return node
        old = self.journal.get(local_id)
        assert old is not None and node.uuid is not None
        uuid = node.uuid
        with self.journal.transaction():
            self.namespace.detach(node)
            fresh = self.journal.new_file(
                parent_uuid=old.parent_uuid,
                name=old.name,
                size=old.size,
                mtime_ns=old.mtime_ns,
                remote_uuid=old.remote_uuid,
                remote_file_id=old.remote_file_id,
                remote_size=old.remote_size,
                remote_valid_len=old.remote_valid_len,
            )
        new = self.table.new_node(
            is_dir=False,
            parent=node.parent,
            name=node.name,
            size=node.size,
            file_id=node.file_id,
            mtime_ns=node.mtime_ns,
            ctime_ns=node.ctime_ns,
            atime_ns=node.atime_ns,
        )
        self.table.set_uuid(new, uuid)
        self.table.set_local(new, fresh.local_id)
        parent = self.table.get(node.parent)
        if parent is not None and parent.children and parent.children.get(node.name) == node.ino:
            parent.children[node.name] = new.ino
        log.info("%r: %d open descriptor(s) keep reading the version they opened", node.name,
                 node.open_handles)  # fmt: skip
        return new

    async def _missing_object(self, node: Node) -> None:
        """A read met a missing network object: another client replaced or deleted the file.
        Read its entry again, so that the next open reads what is there now instead of
        failing until the folder's listing expires."""
        try:
            found = await self.meta.refresh_file(node)
        except ie.InternxtError as exc:
            log.warning("cannot read the entry of %r again (%s)", node.name, exc)
            parent = self.table.get(node.parent)
            if parent is not None:
                self.meta.invalidate(parent)
            return
        if found == "gone" and not node.replaced:
            # Deleted elsewhere (or replaced by a new entry, as rclone's overwrite does): the
            # name leaves the listing now; the next lookup lists the folder again.
            parent = self.table.get(node.parent)
            if (
                parent is not None
                and parent.children
                and parent.children.get(node.name) == node.ino
            ):
                del parent.children[node.name]
            self.namespace.detach(node)

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

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        # pyfuse3's contract: forget must never raise, not even FUSEError (the kernel expects
        # no reply, and an exception here ends the mount). So no fuse_handler: each inode is
        # forgotten on its own, and a failure (a full cache disk while dropping an unlinked
        # file's record) is logged; what it left behind is swept by the next mount's resume.
        for ino, count in inode_list:
            try:
                removed = self.table.forget(ino, count)
                if removed is not None:
                    self.namespace.forgotten(removed)
            except Exception:
                log.exception("forget of inode %d failed; continuing", ino)

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
        if node.is_link:
            return await self._setattr_link(node, attr, fields)
        changed = False
        if fields.update_size:
            if node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            self._check_size_cap(attr.st_size)
            local_id = self.namespace.ensure_record(node)
            await self.cache.truncate(local_id, attr.st_size)
            node.size = attr.st_size
            node.mtime_ns = node.ctime_ns = self.clock_ns()
            changed = True
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
            node.mtime_pinned = node.is_dir
            changed = True
            # Internxt cannot change a folder's time after its creation: this cache keeps it.
            self.owners.set_folder_mtime(node, node.mtime_ns)
        if fields.update_atime:
            node.atime_ns = attr.st_atime_ns
        if fields.update_mode or fields.update_uid or fields.update_gid:
            # Internxt keeps no owner or permission bits: this cache keeps them (ownership.py).
            if not node.is_dir:
                # A file not published yet is keyed by its record.
                self.namespace.ensure_record(node)
            self.owners.change(node, fields, attr, ctx)
        # Every change of an inode's metadata is a status change, as on a local disk (make
        # and rsync compare ctime); it lives in memory, Internxt has no field for it.
        node.ctime_ns = max(node.ctime_ns, self.clock_ns())
        self.meta.changed(node)  # kept for the next mount (metadata cache)
        if changed and not node.is_dir:
            local_id = self.namespace.ensure_record(node)
            # Internxt has no call that sets only a file's mtime, so a new mtime on a clean file
            # means uploading its content again with the new modificationTime.
            self.journal.update(local_id, mtime_ns=node.mtime_ns, size=node.size, dirty=True)
            # Scheduled even while open (the descriptor may be read-only and never schedule
            # at close): the quiet period delays it, and a write meanwhile restarts it.
            self.uploader.schedule(local_id)
        return self.attrs(node)

    async def _setattr_link(
        self, node: Node, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields
    ) -> pyfuse3.EntryAttributes:
        """lutimes/lchown on a link (rsync -a, cp -a, tar do them).

        A link's mtime is stored as its ``.rclonelink`` file's modificationTime, as rclone's
        local backend does (``backend/local/local.go``: a translated link's ``ModTime`` is its
        lstat time and ``SetModTime`` uses ``lChtimes``), so ``rsync -a`` finds nothing to do
        after a remount, on any cache. Internxt has no call that sets only a file's time, so
        the target is uploaded again and the entry pointed at it with the new time (a few
        bytes; skipped when the time is the stored one to the millisecond). Sent at once, as
        ``symlink`` is: when lutimes returns, the server holds the time. A link not stored yet
        (made offline), one whose earlier time is still waiting, and any link while Internxt
        cannot be reached keep the time in the journal instead: the uploader stores it as it
        stores a file's new mtime (the target read from the server first if not cached), so
        ``touch -h`` works offline (issue 9)."""
        self.namespace.sync_uuid(node)
        if fields.update_mtime:
            record = None if node.local_id is None else self.journal.get(node.local_id)
            waiting = record is not None and lifecycle.has_unsent_content(record)
            if node.uuid is None and node.local_id is None:
                raise pyfuse3.FUSEError(errno.ENOENT)  # neither stored nor journaled: gone
            if node.uuid is None or waiting or self.remote.offline():
                self._journal_link_mtime(node, attr.st_mtime_ns)
            elif not same_millisecond(node.mtime_ns, attr.st_mtime_ns / 1e9):
                try:
                    await self._store_link_mtime(node, attr.st_mtime_ns)
                except ie.InternxtError as exc:
                    if not unreachable(exc, self.remote):
                        raise
                    log.info("lutimes of %r: Internxt cannot be reached (%s); stored later",
                             node.name, exc)  # fmt: skip
                    self._journal_link_mtime(node, attr.st_mtime_ns)
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        if fields.update_atime:
            node.atime_ns = attr.st_atime_ns
        node.ctime_ns = max(node.ctime_ns, self.clock_ns())  # a metadata change, as above
        return self.attrs(node)

    def _journal_link_mtime(self, node: Node, mtime_ns: int) -> None:
        """A link's new time, stored later by the uploader (``_setattr_link``)."""
        local_id = self.namespace.ensure_record(node)
        self.journal.update(local_id, mtime_ns=mtime_ns, size=node.size, dirty=True)
        self.uploader.schedule(local_id)

    async def _store_link_mtime(self, node: Node, mtime_ns: int) -> None:
        uuid = node.uuid
        if uuid is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        target = await self._link_target(node)
        # A new object: replacing an entry with the object it already points at would have
        # Internxt delete that object as the replaced content.
        file_id = await self.remote.upload(bytes_reader(target), len(target))
        entry = await self.remote.replace_file(uuid, file_id, len(target), mtime=mtime_ns / 1e9)
        if node.uuid == uuid:  # not renamed over or unlinked meanwhile
            node.file_id = entry.file_id or file_id
            node.link_target = target
            # The metadata cache must name the new object: the old one is gone, and the next
            # mount reads the target from the object its cache names (the replace can land
            # after the folder's last save: a read replica lagging makes it retry).
            self.meta.changed(node)

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
        node = await self.namespace.mkdir(parent, text, mode, ctx)
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
        await self.namespace.rmdir(parent, node)

    # --- files ------------------------------------------------------------------------------

    @fuse_handler
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self._dir(parent_inode)
        text = names.decode(name)
        names.check_file_name(text)
        if self.options.links:
            links.check_regular_name(text)
        existing = await self._child(parent, text)
        if existing is not None:
            raise pyfuse3.FUSEError(errno.EISDIR if existing.is_dir else errno.EEXIST)
        node = self.namespace.create(parent, text, mode, ctx)
        node.lookups += 1
        node.open_handles += 1
        handle = OpenFile(node, writable=True, append=bool(flags & os.O_APPEND), wrote=True)
        return pyfuse3.FileInfo(fh=self._new_fh(handle)), self.attrs(node)

    @fuse_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.replaced:
            # A version replaced elsewhere, reached through the kernel's cached entry: ESTALE
            # makes the kernel look the name up again, which leads to the new version.
            raise pyfuse3.FUSEError(errno.ESTALE)
        self.namespace.ensure_record(node)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        handle = OpenFile(node, writable=writable, append=bool(flags & os.O_APPEND))
        if flags & os.O_TRUNC and writable:
            assert node.local_id is not None
            await self.cache.truncate(node.local_id, 0)
            node.size = 0
            node.mtime_ns = node.ctime_ns = self.clock_ns()
            handle.wrote = True
        node.open_handles += 1
        info = pyfuse3.FileInfo(fh=self._new_fh(handle))
        if node.page_cache_stale:
            # Replaced elsewhere since the kernel may have cached pages of it: drop them now.
            info.keep_cache = False
            node.page_cache_stale = False
        return info

    @fuse_handler
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        handle = self._file_handle(fh)
        node = handle.node
        if off >= node.size:
            return b""
        assert node.local_id is not None
        try:
            return await self.cache.read(node.local_id, off, min(size, node.size - off))
        except ie.NotFound as exc:
            # The network object is gone: never ENOENT for a file that is open. This open's
            # version cannot be read further; the next open reads what the entry holds now.
            log.warning("%r: its content was replaced or deleted elsewhere (%s)", node.name, exc)
            if not node.replaced:
                await self._missing_object(node)
            raise pyfuse3.FUSEError(errno.ESTALE) from exc

    @fuse_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._file_handle(fh)
        node = handle.node
        if not handle.writable:
            raise pyfuse3.FUSEError(errno.EBADF)
        if handle.append:
            off = node.size
        self._check_size_cap(off + len(buf))
        assert node.local_id is not None
        await self.cache.write(node.local_id, off, buf)
        node.size = max(node.size, off + len(buf))
        node.mtime_ns = node.ctime_ns = self.clock_ns()
        handle.wrote = True
        return len(buf)

    def _check_size_cap(self, end: int) -> None:
        """EFBIG past the plan's per-file cap: Internxt would refuse to store the file."""
        cap = self.uploader.size_cap
        if cap is not None and end > cap:
            self._warn_once("size cap", f"files over {cap} bytes exceed your Internxt plan: EFBIG")
            raise pyfuse3.FUSEError(errno.EFBIG)

    def _persist_changes(self, handle: OpenFile) -> int | None:
        node = handle.node
        if not handle.wrote or node.local_id is None or node.unlinked:
            return None
        self.journal.update(node.local_id, mtime_ns=node.mtime_ns, size=node.size, dirty=True)
        self.meta.changed(node)  # its times, for the next mount (metadata cache)
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
        self.namespace.closed(node)

    @fuse_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self._file_handle(fh)
        local_id = self._persist_changes(handle)
        node = handle.node
        if local_id is None and node.local_id is not None and not node.unlinked:
            # fsync is about the file, not the descriptor: content written through another
            # (maybe closed) descriptor must be stored too, e.g. for `sync FILE` (O_RDONLY).
            record = self.journal.get(node.local_id)
            if record is not None and lifecycle.has_unsent_content(record):
                local_id = node.local_id
        if local_id is None:
            return
        if self.options.fsync is FsyncMode.LOCAL:
            # S3QL's meaning: durable in the local cache (data and journal on disk); the
            # upload follows as after close().
            await trio.to_thread.run_sync(self._fsync_local, local_id)
            return
        if not self.meta.offline():
            self._fsync_offline_told = False
            self.uploader.schedule(local_id, immediate=True)
            if await self._stored_unless_outage(local_id):
                # Stored: unless written again, closing this descriptor has nothing left to
                # upload.
                handle.unsent = handle.wrote
                return
        # "Stored on Internxt" cannot be true now, and waiting out the upload's retries would
        # hang the caller. By default the data is made durable locally, as with --fsync local,
        # and uploaded once Internxt answers: a backup run during an outage (restic fsyncs
        # every pack) completes, and status shows what waits. One warning per outage, not one
        # per fsync.
        await trio.to_thread.run_sync(self._fsync_local, local_id)
        self.uploader.schedule(local_id)
        if self.options.fsync_offline is OfflineFsync.EIO:
            log.warning("fsync of %r: Internxt cannot be reached; kept in the cache", node.name)
            raise pyfuse3.FUSEError(errno.EIO)
        if not self._fsync_offline_told:
            self._fsync_offline_told = True
            log.warning(
                "Internxt cannot be reached: fsync keeps data durable in the cache until "
                "it can be stored (--fsync-offline local)"
            )

    async def _stored_unless_outage(self, local_id: int) -> bool:
        """Wait for the file's upload (after the namespace changes queued before it): True
        once stored; False when Internxt turns out to be unreachable first (an outage this
        fsync met before the mount knew of it: the server just stopped, or hangs). The upload
        keeps its full retry schedule in the background, which with a hung server spans
        minutes: fsync used to wait all of it, and then fail with EIO (hostile test). The
        upload's own error is raised, unless it is the outage."""
        outcome: list[BaseException | None] = []
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                assert self.outage_found is not None
                await self.outage_found()
                nursery.cancel_scope.cancel()

            if self.outage_found is not None:
                nursery.start_soon(watch)
            try:
                # A file in a folder a queued namespace change touches is not uploaded before
                # the queue is sent (fs/pending.py): the uploader takes it for idle meanwhile,
                # and fsync returned at once with nothing stored (hostile test). That holds
                # for a file moved into such a folder while its upload runs too: the upload
                # is not published then, and the uploader is idle again with nothing stored
                # (hostile4's test), so the wait starts over until the content is stored.
                while True:
                    if self._waits_for_queue(local_id):
                        await self._queue_sent(local_id)
                        continue
                    await self.uploader.wait_idle(local_id)
                    if not self._waits_for_queue(local_id):
                        break
                outcome.append(None)
            except Exception as exc:  # raised below, outside the nursery (no exception group)
                outcome.append(exc)
            nursery.cancel_scope.cancel()
        if not outcome:
            return False  # the outage was found first
        error = outcome[0]
        if error is None:
            return True
        if isinstance(error, ie.InternxtError) and error.retryable and self.meta.offline():
            return False
        raise error

    def _waits_for_queue(self, local_id: int) -> bool:
        """The file has content to store and its upload waits for the queued namespace
        changes (fs/pending.py). Stored content moved into such a folder since waits for
        nothing: what fsync asks for is on Internxt."""
        record = self.journal.get(local_id)
        return (
            record is not None
            and self.uploader.deferred(record)
            and lifecycle.has_unsent_content(record)
        )

    async def _queue_sent(self, local_id: int) -> None:
        """Wait a while for the queued namespace changes to be sent (the caller looks again).
        EIO while Internxt refuses the oldest for good, or has answered it only with errors
        for QUEUE_FAILING_PATIENCE (an upload failing so ends in EIO too): not stored until
        that changes; the replay goes on."""
        since = self.pending.failing_since
        failing = since is not None and trio.current_time() - since > QUEUE_FAILING_PATIENCE
        if self.pending.refused is not None or failing:
            log.warning("fsync of %s: waits for a namespace change Internxt %s (%s); kept in "
                        "the cache", self.uploader.describe_id(local_id),
                        "refuses" if self.pending.refused is not None else "keeps failing",
                        self.pending.refused or self.pending.last_error)  # fmt: skip
            raise pyfuse3.FUSEError(errno.EIO)
        with trio.move_on_after(QUEUE_LOOK_INTERVAL):
            await self.pending.wait_replayed()
            if self._waits_for_queue(local_id):
                # Nothing queued and still held back (a folder whose mkdir is not queued any
                # more): looked at again after the interval, not in a loop that never yields.
                await trio.sleep_forever()

    @fuse_handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._dir(parent_inode)
        node = await self._child(parent, names.decode(name))
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        await self.namespace.unlink(parent, node)

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
            self.namespace.check_not_into_itself(node, new_parent)
        elif node.is_link:
            links.check_link(new_text, b"-")
        else:
            names.check_file_name(new_text)
            if self.options.links:
                links.check_regular_name(new_text)
        target = await self._child(new_parent, new_text)
        if target is node:
            return
        if target is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise pyfuse3.FUSEError(errno.EEXIST)
        await self.namespace.rename(old_parent, old_text, node, new_parent, new_text, target)

    @fuse_handler
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        """A directory's entries are durable once the journal's log is on the disk: every
        change to them is in the journal when its call returns (online a mkdir, rename or
        rmdir is on Internxt by then too; offline it is queued there; new files and deletes
        go out with the uploader, as after close). Without this handler the kernel took
        ``fsync`` of a directory for done (ENOSYS) while the log could still be in the page
        cache: an offline rename, made durable by restic's directory fsync on a local disk,
        was not here until the next checkpoint (found in a hostile review)."""
        await trio.to_thread.run_sync(self._fsync_paths, [self.journal.log_path])

    def _fsync_local(self, local_id: int) -> None:
        self._fsync_paths([self.cache.path(local_id), self.journal.log_path])

    @staticmethod
    def _fsync_paths(paths: list[Path]) -> None:
        # Runs in a worker thread: only file descriptors, no journal or trio state.
        for path in paths:
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
            stored = self.uploader.stored_bytes
            try:
                await self._read_quota(now)
            except ie.InternxtError as exc:
                if self._statfs is None:
                    self._statfs = self._kept_quota(now, stored)
                if self._statfs is None or isinstance(exc, ie.RequestRejected):
                    raise
                # Internxt cannot be reached: df shows the last known quota (issue 9).
                log.debug("cannot read the quota (%s); showing the last known one", exc)
        assert self._statfs is not None
        _, used, limit, stored_then = self._statfs
        # Internxt's figure is up to statfs_ttl old: what this mount stored since, and what it
        # holds unsent, count at once, as on a local disk (df right after cp shows it).
        used += self.uploader.stored_bytes - stored_then + self.uploader.unsent_growth()
        used = max(0, used)
        data = pyfuse3.StatvfsData()
        data.f_bsize = BLOCK_SIZE_HINT
        data.f_frsize = 4096
        data.f_blocks = limit // data.f_frsize
        data.f_bfree = data.f_bavail = max(0, limit - used) // data.f_frsize
        data.f_files = data.f_ffree = data.f_favail = 1 << 32
        data.f_namemax = names.NAME_MAX
        return data

    async def _read_quota(self, now: float) -> None:
        stored = self.uploader.stored_bytes
        used = await self.remote.usage()
        limit = await self.remote.limit()
        self._statfs = (now, used, limit, stored)
        self.journal.set_meta("quota", f"{used} {limit}")  # for an offline start

    async def learn_quota(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Read the quota once at start, in the background: a `df` during an outage then has
        one to show even on a mount where df never ran before (issue 9), and the next mount
        on this cache too."""
        task_status.started()
        if self._statfs is not None:
            return
        try:
            await self._read_quota(self.monotonic())
        except ie.InternxtError as exc:  # offline: the first df asks again
            log.info("quota not known yet: %s", exc)

    def _kept_quota(self, now: float, stored: int) -> tuple[float, int, int, int] | None:
        """The quota the last mount on this cache read (the metadata cache), if any."""
        kept = self.journal.get_meta("quota")
        if not kept:
            return None
        used, limit = (int(part) for part in kept.split())
        return (now, used, limit, stored)

    # --- what Internxt cannot store -------------------------------------------------------------

    async def _unsupported(self, what: str, code: int) -> None:
        self._warn_once(what, f"{what} is not supported on Internxt Drive; returning an error")
        raise pyfuse3.FUSEError(code)

    @fuse_handler
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any) -> Any:
        await self._unsupported("hard links", errno.EPERM)

    @fuse_handler
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if not self.options.links:
            await self._unsupported("symbolic links (mounted with --links off)", errno.EPERM)
        parent = self._dir(parent_inode)
        text = names.decode(name)
        remote = links.check_link(text, target)
        if await self._child(parent, text) is not None:
            raise pyfuse3.FUSEError(errno.EEXIST)
        node = await self.namespace.symlink(parent, text, remote, target)
        node.lookups += 1
        return self.attrs(node)

    @fuse_handler
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any) -> Any:
        kind = "fifos" if stat.S_ISFIFO(mode) else "device nodes and sockets"
        await self._unsupported(kind, errno.EPERM)

    @fuse_handler
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._node(inode)
        if not node.is_link:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return await self._link_target(node)

    async def _link_target(self, node: Node) -> bytes:
        record = None if node.local_id is None else self.journal.get(node.local_id)
        if node.link_target is None and record is not None:
            # A link made offline, not stored yet (after a remount): its target is cached. Or
            # one whose time was stored through the uploader (_journal_link_mtime): the cache
            # names the object its upload made (the old one is gone) and reads what it lacks.
            return bytes(await self.cache.read(record.local_id, 0, record.size))
        if node.link_target is None:
            if node.file_id is None or node.size == 0:
                raise pyfuse3.FUSEError(errno.EIO)  # an empty .rclonelink: no target
            file_id = node.file_id
            target = bytes(await self.remote.download_range(file_id, 0, node.size))
            if node.file_id == file_id:  # not changed by a listing meanwhile
                node.link_target = target
            return target
        return node.link_target

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
