"""Folder listings and attributes: remote state cached with a TTL, merged with local state.

A directory's children come from three places, in this order of authority:
1. what this mount changed itself (mkdir, create, rename, unlink update the cached listing at
   once, so restic sees its lock file 200 ms after writing it);
2. files with unsent local content (journal records): their size and mtime are the local ones
   until the upload is done, and files never uploaded are listed from the journal alone;
3. the remote listing, fetched again when older than ``ttl`` seconds, for changes made elsewhere.

Stale is better than EIO (issue 9): a folder listed before is served from its last listing
when a refresh cannot reach Internxt, at once while Internxt is known to be unreachable, and
after at most ``STALE_WAIT`` seconds otherwise; the refresh goes on in the background, and the
mount returns to fresh listings by itself once Internxt answers (a probe asks every
``PROBE_INTERVAL`` seconds during an outage). Only a folder never listed (or one whose caller
needs the server's answer: ``invalidate``) makes the caller wait, and the protocol calls of a
refresh are interactive (internxt/retry.py): they give up within seconds during an outage.

A folder never listed, looked at during an outage, gets a *partial* view (``partial``): the
entries this mount itself holds there (files not uploaded yet, folders made offline, entries
moved in), and nothing else. Names not in it are free as far as the mount can tell, so a copy
into the folder works offline; the files created in it are marked ``blind`` in the journal,
and the replay keeps both versions when a name turns out to be taken (fs/conflicts.py). The
folder's real listing merges in at the first look once Internxt answers (waited for, as for a
folder never listed: the partial view never passes for a listing while Internxt answers).

Shared state: ``Node.children``/``listed_at`` of directory nodes. A listing fetch awaits the
network; one refresh per directory at a time (``_refreshing``) makes concurrent lookups share
one fetch, and a per-directory mutation counter makes a fetch that raced with a local change
discard its (stale) result.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Collection, Container
from dataclasses import dataclass, field
from typing import Any

import trio

from internxtfs.fs import lifecycle
from internxtfs.fs import links as fslinks
from internxtfs.fs.inodes import ROOT_INODE, InodeTable, Node
from internxtfs.fs.journal import UNCERTAIN, EntryRow, Journal, RecordsAtStart
from internxtfs.fs.lifecycle import FileState
from internxtfs.fs.remote import Remote
from internxtfs.fs.replacement import ASIDE_PREFIX
from internxtfs.internxt.errors import InternxtError, NotFound, RequestRejected
from internxtfs.internxt.retry import carry_interactive, interactive

log = logging.getLogger(__name__)

OFFLINE_RETRY = 30.0  # during an outage, seconds between refresh attempts of one folder
STALE_WAIT = 3.0  # seconds a caller waits for a refresh before taking the last listing
PROBE_INTERVAL = 5.0  # during an outage, seconds between checks that Internxt is back
SAVED_CLEANLY = "metadata_saved_cleanly"  # journal meta key: the last mount ended cleanly
WARM_REFRESHES = 2  # listings of folders shown from the metadata cache run this many at once
SAVE_INTERVAL = 1.0  # seconds between writes of changed listings to the metadata cache
# listed_at of a partial view (see the module docstring) in the metadata cache: the epoch, a
# time no listing of this mount can have (restored as partial, never as a listing).
PARTIAL_LISTED_AT = 0.0


@dataclass
class _Kept:
    """An entry of the metadata cache, shaped as a listing's entry for :meth:`Metadata._merge`."""

    uuid: str
    name: str
    size: int
    file_id: str | None
    modified: float
    created: float


@dataclass
class _Refresh:
    """One listing fetch of a folder in flight, shared by everyone who needs it."""

    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * 1000) * 1_000_000


def same_millisecond(ns: int, seconds: float) -> bool:
    """Internxt keeps times to the millisecond; a local ns time matching it is the same time."""
    return ns // 1_000_000 == round(seconds * 1000)


class Metadata:
    def __init__(
        self,
        remote: Remote,
        table: InodeTable,
        journal: Journal,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        remote_changed: Callable[[Node, int], Node] | None = None,
        shown_as: Callable[[str], dict[str, str]] | None = None,
        links: bool = True,
        subdirs_changed: Callable[[Node], None] | None = None,
        held: Callable[[str], bool] | None = None,
        pending_folders: Callable[[str], list[tuple[str, str, int]]] | None = None,
    ) -> None:
        # Listings, file metas, and the read-replica and outage hints that come with them.
        self.remote = remote
        self.table = table
        self.journal = journal
        self.ttl = ttl
        self.clock = clock
        # Called with a file node and its local id when another client has replaced the
        # network object its clean cached blocks belong to; returns the node that holds the
        # new version from now on (a new one when open descriptors keep the old version).
        self.remote_changed = remote_changed
        # Entries kept aside under a hidden name by a rename over them (fs/replacement.py):
        # those whose rename has not landed are shown under their own name, the rest hidden.
        self.shown_as = shown_as or (lambda parent_uuid: {})
        # Remote files NAME.rclonelink are shown as symlinks NAME (fs/links.py).
        self.links = links
        # Called when a listing changes a directory's count of subdirectories (its st_nlink),
        # so the kernel's cached attributes of it can be dropped.
        self.subdirs_changed = subdirs_changed
        # Seconds during which a listing of a folder may predate one of our own writes in it
        # (Internxt lists from read replicas: internxt/consistency.py).
        self.listing_lag = remote.listing_lag
        # Whether a listing may still show an entry as it was before our last write to it.
        self.recently_written = remote.recently_written
        self.recently_deleted = remote.recently_deleted
        # Whether Internxt is known to be unreachable (the retry policy's view, retry.py).
        self.offline = remote.offline
        # Folders with namespace changes queued offline (fs/pending.py): never listed from
        # the server until those are sent; and the folders made offline in a folder, as
        # (placeholder, name, mtime_ns), merged into its listing like unsent files.
        self.held = held or (lambda folder_uuid: False)
        self.pending_folders = pending_folders or (lambda folder_uuid: [])
        # The remote entry of each file record when this run started. A record still naming
        # that entry was not published by this run: its entry may have been moved or deleted
        # since by the crash recovery, its record not updated yet (_pending_here).
        self._entry_at_start: dict[int, str | None] = {
            r.local_id: r.remote_uuid for r in journal.all_files()
        }
        self._refreshing: dict[int, _Refresh] = {}
        self._retry_at: dict[int, float] = {}  # during an outage: next refresh attempt
        self._mutations: dict[int, int] = {}
        self._bg: trio.Nursery | None = None
        self._unsaved: set[int] = set()  # folders whose entries changed since the last save
        # Folders shown from the metadata cache and not listed since this mount started: the
        # first look answers at once from it while the listing runs in the background.
        self._restored: set[int] = set()
        self._warm_refreshes = trio.CapacityLimiter(WARM_REFRESHES)
        self._unsure: set[int] = set()  # restored after a crash: see children()
        self._partial: set[int] = set()  # never listed: only our own entries (module docstring)
        self._partial_logged: set[int] = set()
        self.wall = time.time  # listing times are kept in wall-clock time across mounts
        # Until then (clock()), a first listing of a folder may miss what the last run of the
        # mount wrote a moment ago: see hold_first_listings().
        self._hold_until = -math.inf

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background refreshes, the outage probe and the saves of the metadata cache:
        ``await nursery.start(meta.run)``. Without it (unit tests), a refresh runs in the
        caller's task and nothing is saved."""
        try:
            async with trio.open_nursery() as nursery:
                self._bg = nursery
                task_status.started()
                nursery.start_soon(self._probe)
                while True:
                    started = time.perf_counter()
                    self._save_logged()
                    # A save blocks the requests for its time: a big folder changing all the
                    # time (a copy into it) is saved less often, never more than 5% busy.
                    await trio.sleep(max(SAVE_INTERVAL, 20 * (time.perf_counter() - started)))
        finally:
            self._bg = None
            self._save_logged(final=True)  # what changed since the last save

    def _save_logged(self, final: bool = False) -> None:
        try:
            self.save()
            if final:
                self.journal.set_meta(SAVED_CLEANLY, "1")
        except sqlite3.Error as exc:  # e.g. the cache disk is full: expected, no traceback
            log.warning("cannot save the metadata cache (%s); the next mount lists again", exc)
        except Exception:
            # A cache of what the server holds: losing a save costs a listing, nothing else.
            log.exception("cannot save the metadata cache; the next mount lists again")

    # --- the metadata cache (warm start) ------------------------------------------------------

    def _mark(self, dir_node: Node) -> None:
        self._unsaved.add(dir_node.ino)

    def changed(self, node: Node) -> None:
        """An entry's attributes changed here (times, size): saved with its folder."""
        self._unsaved.add(node.parent)

    def save(self) -> None:
        """Write the entries of folders changed since the last save to the metadata cache."""
        if not self._unsaved:
            return
        folders, self._unsaved = self._unsaved, set()
        again: set[int] = set()
        now_wall, now = self.wall(), self.clock()
        saved: list[str] = []
        rows: list[EntryRow] = []
        for ino in folders:
            folder = self.table.get(ino)
            if folder is None or folder.uuid is None or folder.children is None:
                continue
            parent = self.table.get(folder.parent) if folder.ino != ROOT_INODE else None
            row = self._row(folder, None if parent is None else parent.uuid, now_wall, now)
            if row is not None:
                rows.append(row)
            for child_ino in folder.children.values():
                child = self.table.get(child_ino)
                if child is not None:
                    row = self._row(child, folder.uuid, now_wall, now)
                    if row is not None:
                        rows.append(row)
                    elif child.local_id is not None:
                        # Not uploaded yet: the journal lists it meanwhile; once uploaded its
                        # entry must be kept (nothing else marks the folder then).
                        again.add(folder.ino)
            saved.append(folder.uuid)
        try:
            self.journal.save_entries(saved, rows)
        except BaseException:
            self._unsaved |= folders  # tried again at the next save
            raise
        self._unsaved |= again

    def _row(
        self, node: Node, parent_uuid: str | None, now_wall: float, now: float
    ) -> EntryRow | None:
        """The entry as the server holds it, or None when it has no remote entry yet (the
        journal lists such a file)."""
        listed_at = None
        if node.is_dir and node.ino in self._partial:
            listed_at = PARTIAL_LISTED_AT
        elif node.is_dir and self.has_view(node):
            listed_at = now_wall - max(0.0, now - node.listed_at)
        uuid, size, file_id = node.uuid, node.size, node.file_id
        record = None if node.local_id is None else self.journal.get(node.local_id)
        if record is not None:
            # A file this mount uploaded learns its uuid from the record (Namespace.sync_uuid
            # runs only when the file is used again).
            uuid = record.remote_uuid
            size, file_id = record.remote_size, record.remote_file_id
        if uuid is None:
            return None
        return EntryRow(
            uuid=uuid,
            ino=node.ino,
            parent_uuid=parent_uuid,
            name=fslinks.remote_name(node.name, node.is_link),
            is_dir=node.is_dir,
            size=size,
            file_id=file_id,
            mtime_ns=node.mtime_ns,
            ctime_ns=node.ctime_ns,
            listed_at=listed_at,
        )

    def restore(self) -> int:
        """:meth:`_restore`, or a cold start when the metadata cache cannot be read."""
        try:
            return self._restore()
        except Exception:
            log.exception("cannot read the metadata cache; listing every folder again")
            self._restored.clear()
            self._unsure.clear()
            root = self.table.get(ROOT_INODE)
            if root is not None:
                root.children, root.listed_at = None, 0.0
            return 0

    def _restore(self) -> int:
        """Show the tree the metadata cache holds (at mount start, before serving): folders
        listed less than ``ttl`` ago are fresh, as in a running mount; older ones are shown at
        once and listed again in the background (Internxt offers no cheap "has this folder
        changed": docs/protocol.md). Returns how many folders were restored."""
        rows = self.journal.entry_rows()
        self.table.remember({row.uuid: row.ino for row in rows})
        # Set again by the save at unmount: a crash leaves it unset (see children()).
        clean = self.journal.get_meta(SAVED_CLEANLY) == "1"
        self.journal.set_meta(SAVED_CLEANLY, "0")
        by_parent: dict[str | None, list[EntryRow]] = {}
        own: dict[str, EntryRow] = {}
        for row in rows:
            by_parent.setdefault(row.parent_uuid, []).append(row)
            own[row.uuid] = row
        # Files with content not uploaded yet, listed by their record (see _pending_here).
        unsent = {r.local_id for r in self.journal.all_files() if lifecycle.has_unsent_content(r)}
        now_wall, now = self.wall(), self.clock()
        root = self.table.get(ROOT_INODE)
        assert root is not None
        queue = [root]
        restored = 0
        while queue:
            folder = queue.pop()
            assert folder.uuid is not None
            kept = own.get(folder.uuid)
            if kept is None or kept.listed_at is None:
                continue
            entries = by_parent.get(folder.uuid, [])
            folders = [_kept(r) for r in entries if r.is_dir]
            files = [_kept(r) for r in entries if not r.is_dir]
            folder.children = self._merge(folder, folders, files, None, unsent)
            # Listed_at != 0: a view that may be served (has_view); never in the future.
            folder.listed_at = now - max(0.0, now_wall - kept.listed_at) or -1.0
            self._restored.add(folder.ino)
            if kept.listed_at == PARTIAL_LISTED_AT:
                # Never listed: our own entries only, as in the run that made them.
                folder.listed_at = -math.inf
                self._partial.add(folder.ino)
            elif not clean:
                folder.listed_at = -math.inf
                self._unsure.add(folder.ino)
            restored += 1
            for row in entries:
                node = self.table.by_uuid(row.uuid)
                if node is None:
                    continue
                # Times as this mount showed them, to the nanosecond (Internxt keeps
                # milliseconds): git compares them with what its index holds.
                if abs(row.mtime_ns - node.mtime_ns) < 1_000_000:
                    node.mtime_ns = row.mtime_ns
                if abs(row.ctime_ns - node.ctime_ns) < 1_000_000:
                    node.ctime_ns = row.ctime_ns
                if node.is_dir:
                    queue.append(node)
        if restored:
            log.info("metadata cache: %d folder(s), %d entries known", restored, len(rows))
        return restored

    def hold_first_listings(self, seconds: float) -> None:
        """The last run of this mount (an unmount, a crash, a ``systemctl restart`` a moment
        ago) wrote within ``seconds`` of the replicas' lag (internxtfs/last_writes.py): for
        that long, a first listing of a folder in this run is not taken from a replica that
        may still miss those writes. A folder shown from the metadata cache is listed at once,
        and the listing counts if it shows what the cache holds; otherwise, and for a folder
        with no view at all, it is asked again once the time is up. Nothing is merged: what
        the listing says then stands, so nothing the crash recovery resolved comes back."""
        if seconds > 0:
            self._hold_until = self.clock() + seconds
            log.debug("first listings are checked for %.2f s (the last run just wrote)", seconds)

    def _last_run_window(self, dir_node: Node) -> float:
        """Seconds a first listing of ``dir_node`` may still miss the last run's writes."""
        if dir_node.children is not None and dir_node.ino not in self._restored:
            return 0.0  # listed (or made) in this run already
        return max(0.0, self._hold_until - self.clock())

    def _view_ids(self, dir_node: Node) -> dict[str, str | None]:
        """What the shown view of ``dir_node`` holds remotely: entry uuid -> content id."""
        ids: dict[str, str | None] = {}
        for ino in (dir_node.children or {}).values():
            node = self.table.get(ino)
            if node is None:
                continue
            uuid, file_id = node.uuid, node.file_id
            record = None if node.local_id is None else self.journal.get(node.local_id)
            if record is not None:
                uuid, file_id = record.remote_uuid, record.remote_file_id
            if uuid is not None:
                ids[uuid] = None if node.is_dir else file_id
        return ids

    async def _probe(self) -> None:
        """During an outage, list the root now and then: the first answer ends the outage
        (retry.py), and the root's listing is fresh again with it."""
        while True:
            await trio.sleep(PROBE_INTERVAL)
            root = self.table.get(ROOT_INODE)
            if self.offline() and root is not None and root.ino not in self._refreshing:
                await self._start(root)

    def touch(self, dir_node: Node) -> None:
        """Record a local change of ``dir_node``'s entries (invalidates in-flight fetches)."""
        self._mutations[dir_node.ino] = self._mutations.get(dir_node.ino, 0) + 1
        self._mark(dir_node)

    def invalidate(self, dir_node: Node) -> None:
        """List the folder again at the next look (its last listing stays, for an outage)."""
        dir_node.listed_at = -math.inf

    def is_fresh(self, dir_node: Node) -> bool:
        return dir_node.children is not None and self.clock() - dir_node.listed_at < self.ttl

    @staticmethod
    def has_view(dir_node: Node) -> bool:
        """A listing that may be served stale: the folder was listed (or made) here."""
        return dir_node.children is not None

    def partial(self, dir_node: Node) -> bool:
        """Whether the folder shows only our own entries: never listed, and looked at while
        Internxt could not be reached (the module docstring)."""
        return dir_node.ino in self._partial

    def _local_view(self, dir_node: Node) -> None:
        """A folder never listed, during an outage: a partial view of our own entries."""
        dir_node.children = self._merge(dir_node, [], [], None, _Unpublished(self.journal))
        dir_node.listed_at = -math.inf
        self._partial.add(dir_node.ino)
        self._retry_at[dir_node.ino] = self.clock() + OFFLINE_RETRY
        self._mark(dir_node)
        if dir_node.ino not in self._partial_logged:
            self._partial_logged.add(dir_node.ino)
            log.warning(
                "folder %r was never listed and Internxt cannot be reached: showing only this "
                "mount's own entries in it; a new file whose name turns out to be taken there "
                "is stored beside it (see status once Internxt answers)",
                dir_node.name or "/",
            )

    async def children(self, dir_node: Node, *, ask_server: bool = False) -> dict[str, int]:
        """The folder's entries by name. ``ask_server``: from a listing fetched now, or an
        error (rmdir's emptiness check), never from the last listing."""
        if self.is_fresh(dir_node) and not ask_server:
            assert dir_node.children is not None
            return dir_node.children
        view = self.has_view(dir_node) and not ask_server
        offline = self.offline()
        if view and offline and self.clock() < self._retry_at.get(dir_node.ino, -math.inf):
            assert dir_node.children is not None
            return dir_node.children  # the outage is known: no new attempt yet
        # The tree an earlier mount saw is shown at once; the listing of it follows. Not when
        # that mount ended without saving (a crash): what it did last may be missing, so its
        # listings are the fallback of an outage only.
        # A partial view is no listing: while Internxt answers, its listing is waited for.
        unsure = dir_node.ino in self._unsure or dir_node.ino in self._partial
        warm = view and dir_node.ino in self._restored and not unsure
        refresh = self._refreshing.get(dir_node.ino) or await self._start(dir_node, warm)
        if not refresh.done.is_set() and not (view and (offline or warm)):
            with trio.move_on_after(STALE_WAIT if view and not unsure else math.inf):
                await refresh.done.wait()
        if not refresh.done.is_set():
            log.debug("listing of %s is slow; answering from the last listing", dir_node.uuid)
        elif (
            refresh.error is not None
            and not view
            and not ask_server
            and _transient(refresh.error)
            and self.offline()
        ):
            # Never listed, and Internxt cannot be reached: our own entries, so that a copy
            # into the folder works offline (the module docstring).
            self._local_view(dir_node)
        elif refresh.error is not None and not (view and _transient(refresh.error)):
            # Internxt unreachable, failing or refusing our session: the last listing (merged
            # with our own changes) keeps what this mount has seen reachable. Not when the
            # folder is gone (a definite answer, not trouble).
            raise refresh.error
        assert dir_node.children is not None
        return dir_node.children

    async def _start(self, dir_node: Node, warm: bool = False) -> _Refresh:
        refresh = _Refresh()
        self._refreshing[dir_node.ino] = refresh

        async def fetch() -> None:
            try:
                if warm:
                    # Nobody waits for it: a few at a time, so that a walk of the tree right
                    # after a remount (ls -lR, rsync) is not slowed by re-listing all of it.
                    async with self._warm_refreshes:
                        with interactive():
                            await self._refresh(dir_node)
                else:
                    with interactive():
                        await self._refresh(dir_node)
                self._retry_at.pop(dir_node.ino, None)
            except Exception as exc:
                refresh.error = exc
                if not isinstance(exc, InternxtError):
                    log.exception("listing of folder %s failed unexpectedly", dir_node.uuid)
                elif self.has_view(dir_node) and _transient(exc):
                    self._retry_at[dir_node.ino] = self.clock() + OFFLINE_RETRY
                    # One line per outage is logged by the retry policy; this one says which
                    # folder is served stale, while Internxt is not known to be down.
                    log.log(
                        logging.DEBUG if self.offline() else logging.WARNING,
                        "cannot list folder %s (%s); using the listing from %.0f s ago",
                        dir_node.uuid,
                        exc,
                        self.clock() - dir_node.listed_at,
                    )
            finally:
                if self._refreshing.get(dir_node.ino) is refresh:
                    del self._refreshing[dir_node.ino]
                refresh.done.set()

        if self._bg is not None:
            self._bg.start_soon(fetch)
        else:
            await fetch()
        return refresh

    async def lookup(self, dir_node: Node, name: str) -> Node | None:
        children = await self.children(dir_node)
        ino = children.get(name)
        return None if ino is None else self.table.get(ino)

    async def _refresh(self, dir_node: Node) -> None:
        assert dir_node.uuid is not None
        if self.held(dir_node.uuid):
            # Changes of ours to it wait to be sent (fs/pending.py): our view is the truth
            # until then, and a folder made offline has no listing on the server at all.
            if dir_node.children is None:
                dir_node.children = self._merge(dir_node, [], [], None, _Unpublished(self.journal))
                self._partial.add(dir_node.ino)
                self._mark(dir_node)
            # A partial view is listed as soon as the hold ends (never taken for fresh).
            dir_node.listed_at = -math.inf if dir_node.ino in self._partial else self.clock()
            self._restored.discard(dir_node.ino)
            self._unsure.discard(dir_node.ino)
            return
        window = self._last_run_window(dir_node)
        if dir_node.children is None or (window > 0 and dir_node.ino in self._unsure):
            # No view of ours to keep (below): a first listing of a folder one of our writes
            # just changed (e.g. a rename over settled at start), or one the last run may have
            # written a moment ago, waits for the replicas instead. So does one kept by a run
            # that crashed: its view was saved before its last writes, and a lagging listing
            # that matches it proves nothing.
            lag = max(self.listing_lag(dir_node.uuid), window)
            if lag > 0:
                await trio.sleep(lag)
            window = 0.0
        elif dir_node.ino in self._restored:
            # A view kept by an earlier mount is not merged with a listing that may miss our
            # own writes of a moment ago (the crash recovery's publish or move of an entry
            # here): its first listing waits for the replicas to show them, once.
            lag = self.listing_lag(dir_node.uuid)
            if lag > 0:
                await trio.sleep(lag)
        while True:
            if await self._fetch_and_merge(dir_node, window):
                return
            # A first listing that differs from the view the last run left, while the
            # replicas may still miss that run's writes: asked again once they cannot.
            log.debug("first listing of %s may predate the last run's writes", dir_node.uuid)
            await trio.sleep(self._last_run_window(dir_node))
            window = 0.0

    async def _fetch_and_merge(self, dir_node: Node, window: float) -> bool:
        """One listing of ``dir_node``, merged into its view; False (and nothing changed) when
        ``window`` and the listing differs from the view shown (see hold_first_listings)."""
        # The records as they were before the fetch: the remote object each pointed to (one
        # our uploader publishes while the listing is in flight must not be taken for a
        # change made elsewhere), and which had no remote entry yet (one whose first upload
        # is published meanwhile is in neither the older listing nor the not-uploaded
        # records, and would vanish from the directory until the next refresh).
        with self.journal.watch() as at_start:
            return await self._fetch_and_merge_from(dir_node, window, at_start)

    async def _fetch_and_merge_from(
        self, dir_node: Node, window: float, at_start: RecordsAtStart
    ) -> bool:
        assert dir_node.uuid is not None
        before = self._mutations.get(dir_node.ino, 0)
        restored = dir_node.ino in self._restored
        started = self.clock()
        # Files unlinked here whose delete is queued or in flight: one sent while the fetch is
        # in flight is forgotten by the journal before the (older) listing is merged, and
        # would come back until the next refresh.
        deleting = {
            r.remote_uuid for r in self.journal.dirty_files() if lifecycle.remote_delete_pending(r)
        }
        folders: list[Any] = []
        files: list[Any] = []

        carried = carry_interactive()

        async def get_folders() -> None:
            with carried():
                folders.extend(await self.remote.list_folders(dir_node.uuid))  # type: ignore[arg-type]

        async def get_files() -> None:
            with carried():
                files.extend(await self.remote.list_files(dir_node.uuid))  # type: ignore[arg-type]

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(get_folders)
                nursery.start_soon(get_files)
        except BaseExceptionGroup as group:
            # Both calls fail together when Internxt is down. Raise the typed error itself:
            # a group is "unexpected" for the errno mapping (EIO and a traceback per lookup)
            # and hides the error from children()'s fallback to the last listing.
            leaves = _leaves(group)
            if leaves and all(isinstance(e, Exception) for e in leaves):
                raise leaves[0] from group
            raise

        if dir_node.children is not None and self._mutations.get(dir_node.ino, 0) != before:
            # We changed this directory while the listing was in flight: our own view is newer.
            # Keep it and try the remote again on the next access.
            log.debug("listing of %s raced a local change; keeping local view", dir_node.uuid)
            return True
        files = [entry for entry in files if entry.uuid not in deleting]
        if window > 0 and self._last_run_window(dir_node) > 0:
            listed = {f.uuid: None for f in folders} | {f.uuid: f.file_id for f in files}
            if listed != self._view_ids(dir_node):
                return False
        before_subdirs = self.subdirs(dir_node)
        old = dir_node.children
        # Within the window after a write of ours that changed this folder's children.
        lagging = old is not None and self.listing_lag(dir_node.uuid) > 0
        if lagging and restored:
            # A view kept by an earlier mount (the metadata cache) is no change of ours: the
            # listing wins over it, but not with what we deleted a moment ago (rmdir right
            # after unlinking the folder's last file would see it). Nothing else of the view
            # is kept or preferred: its places may be older than this run's own moves, and
            # the crash recovery may have moved or deleted its entries since.
            folders = [f for f in folders if not self.recently_deleted(f.uuid)]
            files = [f for f in files if not self.recently_deleted(f.uuid)]
        elif lagging:
            # A read replica may still show an entry as it was before our own rename, move,
            # delete or replace of a moment ago: for those our view wins (below), the listing's
            # version would undo the change for a moment.
            # (A file we stored and have not listed since is known by its journal record: its
            # older version in the listing would pass for a change made elsewhere.)
            ours = self.journal.remote_uuids()
            folders = [f for f in folders if not self._predates_us(f.uuid, ours)]
            files = [f for f in files if not self._predates_us(f.uuid, ours)]
        children = self._merge(dir_node, folders, files, at_start, _Unpublished(at_start))
        if lagging and not restored:
            assert old is not None
            # ... and may not show yet what we just created or moved here: our entries stay
            # (an entry removed elsewhere stays for at most the window).
            for name, ino in old.items():
                node = self.table.get(ino)
                if name in children or node is None:
                    continue
                if node.parent == dir_node.ino and node.name == name:
                    children[name] = ino
        dir_node.children = children
        dir_node.listed_at = started
        self._restored.discard(dir_node.ino)
        self._unsure.discard(dir_node.ino)
        if dir_node.ino in self._partial:
            self._partial.discard(dir_node.ino)
            self._partial_logged.discard(dir_node.ino)
            log.info("folder %r is listed now; its entries merge with this mount's own",
                     dir_node.name or "/")  # fmt: skip
        self._mark(dir_node)
        if self.subdirs_changed is not None and self.subdirs(dir_node) != before_subdirs:
            self.subdirs_changed(dir_node)
        return True

    def subdirs(self, dir_node: Node) -> int | None:
        """How many subdirectories ``dir_node`` has, or None when it was never listed."""
        if dir_node.children is None:
            return None
        count = 0
        for ino in dir_node.children.values():
            child = self.table.get(ino)
            if child is not None and child.is_dir:
                count += 1
        return count

    def _predates_us(self, uuid: str, ours: Collection[str]) -> bool:
        """A listed entry we deleted a moment ago, or changed a moment ago and still show
        (an entry we created without showing it, e.g. the recovery folder, is taken as is)."""
        if self.recently_deleted(uuid):
            return True
        known = uuid in ours or self.table.by_uuid(uuid) is not None
        return known and self.recently_written(uuid)

    def _merge(
        self,
        dir_node: Node,
        folders: list[Any],
        files: list[Any],
        at_start: RecordsAtStart | None,
        unpublished: Container[int],
    ) -> dict[str, int]:
        children: dict[str, int] = {}
        assert dir_node.uuid is not None
        shown = self.shown_as(dir_node.uuid)
        made_offline = self.pending_folders(dir_node.uuid)
        if made_offline:
            known = {f.uuid for f in folders}
            folders = folders + [
                _Kept(uuid, name, 0, None, mtime_ns / 1e9, mtime_ns / 1e9)
                for uuid, name, mtime_ns in made_offline
                if uuid not in known
            ]
        folders = [f for f in folders if not f.name.startswith(ASIDE_PREFIX)] + [
            f for f in folders if f.name.startswith(ASIDE_PREFIX)
        ]
        files = [f for f in files if not f.name.startswith(ASIDE_PREFIX)] + [
            f for f in files if f.name.startswith(ASIDE_PREFIX)
        ]
        for entry in folders:
            name = _shown_name(entry, shown, children)
            if name is None:
                continue
            node = self.table.by_uuid(entry.uuid)
            if node is None:
                node = self.table.new_node(
                    is_dir=True, parent=dir_node.ino, name=name, uuid=entry.uuid
                )
            node.parent, node.name = dir_node.ino, name
            _apply_times(node, entry)
            if not node.mtime_pinned:
                kept = self.journal.owner(entry.uuid)  # a time set through this cache
                if kept is not None and kept.mtime_ns is not None:
                    node.mtime_ns, node.mtime_pinned = kept.mtime_ns, True
                    node.ctime_ns = max(node.ctime_ns, kept.mtime_ns)
            children[name] = node.ino

        listed = {entry.uuid for entry in files}
        pending_here = self._pending_here(dir_node, unpublished, listed)
        # Names a link's short name may not take: a regular file or folder holds it.
        regular_names = {str(e.name) for e in files} | {f.name for f in folders}
        regular_names |= {r.name for r in pending_here}
        # Entries a create of ours made whose answer never came, for a file renamed, moved or
        # deleted since: the old name must not come back; the orphan sweeper deletes them.
        ghosts = {
            (o.name, o.file_id)
            for o in self.journal.orphan_rows()
            if o.reason == UNCERTAIN and o.parent_uuid == dir_node.uuid
        }
        for entry in files:
            record = self.journal.find_by_remote(entry.uuid)
            if record is not None and lifecycle.is_unlinked(record):
                continue
            if record is None and (entry.name, entry.file_id) in ghosts:
                continue
            name = _shown_name(entry, shown, children)
            if name is None:
                continue
            # (A record of ours under a link's name is a link stored after an outage.)
            short = fslinks.link_name(name) if self.links else None
            if short is not None and short in regular_names:
                log.warning(
                    "folder %s has both %r and the link %r; showing the link as a regular file",
                    dir_node.uuid,
                    short,
                    name,
                )
                short = None
            is_link = short is not None
            if short is not None:
                name = short
            if name in children:
                log.warning(
                    "folder %s has a file and a folder both named %r; showing the folder",
                    dir_node.uuid,
                    name,
                )
                continue
            # A file this mount created keeps the inode it had before its upload gave it a uuid.
            node = None if record is None else self.table.by_local(record.local_id)
            if node is None:
                node = self.table.by_uuid(entry.uuid)
                if node is not None and node.local_id is not None:
                    owner = self.journal.get(node.local_id)
                    if _being_recreated(owner, dir_node.uuid, name):
                        # A listing older than our own removal of this entry (an emptied
                        # file is deleted and created anew, see Uploader._publish): the
                        # file's unsent local content, listed below, is what it holds.
                        continue
                    if owner is not None and owner.remote_uuid not in (None, entry.uuid):
                        # That inode's content now lives in another entry (our side of a
                        # kept-both conflict): this entry gets an inode of its own.
                        node = None
            if node is None:
                node = self.table.new_node(
                    is_dir=False, parent=dir_node.ino, name=name, uuid=entry.uuid
                )
            if node.uuid != entry.uuid:
                self.table.set_uuid(node, entry.uuid)
            node.parent, node.name = dir_node.ino, name
            if node.is_link != is_link or node.file_id != entry.file_id:
                node.link_target = None  # changed elsewhere: read the target again
            node.is_link = is_link
            if record is not None and node.local_id is None:
                self.table.set_local(node, record.local_id)
            remote = (entry.file_id, entry.size)
            if record is not None and lifecycle.has_unsent_content(record):
                node.size = record.size  # local content not uploaded yet wins
                node.mtime_ns = record.mtime_ns or node.mtime_ns
            elif record is not None and (record.remote_file_id, record.remote_size) != remote:
                was = None if at_start is None else at_start.get(record.local_id)
                if (
                    was is None
                    or (was.remote_file_id, was.remote_size)
                    != (record.remote_file_id, record.remote_size)
                    or self.recently_written(entry.uuid)
                ):
                    # We published this file during the fetch, or a moment ago (a read replica
                    # may not show it yet, e.g. a crash recovery's upload): the listing is
                    # older than us.
                    log.debug("listing of %s predates our upload of %r", dir_node.uuid, entry.name)
                    node.size, node.file_id = record.size, record.remote_file_id
                    node.mtime_ns = record.mtime_ns or node.mtime_ns
                else:
                    node = self._replaced_elsewhere(node, record, entry)
            else:
                node.size = entry.size
                node.file_id = entry.file_id
                _apply_times(node, entry)
            children[name] = node.ino

        for record in pending_here:
            # A link made offline (fs/namespace.py, _symlink_journaled) shows by its short
            # name, as once stored, unless a regular file or folder holds that name.
            name = record.name
            short = fslinks.link_name(name) if self.links else None
            if short is not None and (short in regular_names or short in children):
                short = None
            if short is not None:
                name = short
            if name in children:
                # A remote entry with the name of a file we have not uploaded yet: ours is newer.
                log.info("local new file %r hides a remote entry until it is uploaded", name)
            node = self.table.by_local(record.local_id)
            if node is None:
                node = self.table.new_node(
                    is_dir=False,
                    parent=dir_node.ino,
                    name=name,
                    size=record.size,
                    mtime_ns=record.mtime_ns,
                    ctime_ns=record.mtime_ns,
                    atime_ns=record.mtime_ns,
                    is_link=short is not None,
                )
                self.table.set_local(node, record.local_id)
            children[name] = node.ino
        return children

    def _replaced_elsewhere(self, node: Node, record: Any, entry: Any) -> Node:
        """Another client replaced the content in place (same uuid, new object): the cached
        blocks are of the old object and must never be served as the new content. Returns
        the node of the new version."""
        log.info("%r changed remotely; the next open reads the new content", entry.name)
        if self.remote_changed is not None:
            node = self.remote_changed(node, record.local_id)
        assert node.local_id is not None
        local_id = node.local_id
        node.size = entry.size
        node.file_id = entry.file_id
        _apply_times(node, entry)
        self.journal.update(
            local_id,
            bump=True,
            size=entry.size,
            mtime_ns=node.mtime_ns,
            remote_file_id=entry.file_id,
            remote_size=entry.size,
            remote_valid_len=entry.size,
        )
        return node

    async def refresh_file(self, node: Node) -> str:
        """Read one file's entry again, because its network object is gone: another client
        replaced its content (Internxt's replace deletes the old object, or keeps it as a
        version only on plans with versioning) or deleted the file. Returns what it found:

        * ``"replaced"``: the entry points at other content, which the next open reads;
        * ``"gone"``: deleted, trashed, moved or renamed elsewhere; the folder's listing is
          fetched again at the next lookup instead of serving the vanished entry until
          ``ttl`` runs out;
        * ``"kept"``: nothing to change (the same object, lost on the network; unsent changes
          here, which the uploader's conflict handling owns; or our own upload published
          while the request was in flight, newer than its answer).
        """
        parent = self.table.get(node.parent)
        record = None if node.local_id is None else self.journal.get(node.local_id)
        if node.uuid is None or record is None:
            return "kept"
        before = (record.remote_file_id, record.remote_size)
        try:
            entry = await self.remote.file_meta(node.uuid)
        except NotFound:
            entry = None
        record = None if node.local_id is None else self.journal.get(node.local_id)
        if record is None or record.state is not FileState.CLEAN:
            return "kept"
        if (record.remote_file_id, record.remote_size) != before:
            return "kept"
        # GET /files/{uuid}/meta answers for entries of any status (docs/wire-protocol.md §7.3).
        if (
            entry is None
            or entry.status != "EXISTS"
            or parent is None
            or entry.folder_uuid != parent.uuid
            or entry.name != node.name
        ):
            log.info("%r was deleted, moved or renamed elsewhere; listing its folder again",
                     node.name)  # fmt: skip
            if parent is not None:
                self.invalidate(parent)
            return "gone"
        if (entry.file_id, entry.size) == before:
            return "kept"
        if self.recently_written(node.uuid):
            # We changed it a moment ago: a read replica may still show the version before our
            # change, which must not pass for another client's (the next miss asks again).
            return "kept"
        self._replaced_elsewhere(node, record, entry)
        return "replaced"

    def _pending_here(
        self, dir_node: Node, unpublished: Container[int], listed: set[str]
    ) -> list[Any]:
        """Records of this folder to show although the listing has no entry for them."""
        pending: list[Any] = []
        for record in self.journal.records_in(dir_node.uuid):
            here = not lifecycle.is_unlinked(record)
            if record.remote_uuid:
                # Published during the fetch, or by this run a moment before it (a read
                # replica may not show it yet): listed from here. A first listing of a folder
                # restored from the metadata cache waits out that lag, but a file published
                # while it waited would vanish until the next refresh (the kept view does not
                # win over that listing). Not an entry the record named at start: written a
                # moment ago, that is the crash recovery moving or deleting it, and the
                # record is what is out of date.
                if (
                    here
                    and record.remote_uuid not in listed
                    and (
                        record.local_id in unpublished
                        or (
                            record.remote_uuid != self._entry_at_start.get(record.local_id)
                            and self.recently_written(record.remote_uuid)
                        )
                    )
                ):
                    pending.append(record)
            elif here and not lifecycle.cut_short(record):
                # (A symlink cut short by a crash is no entry: the next start drops it.)
                pending.append(record)
        return pending


class _Unpublished:
    """Records with no remote entry: now, or when a watch began (Journal.watch). A set of
    them would be a scan of every record per listing."""

    __slots__ = ("_at",)

    def __init__(self, at: RecordsAtStart | Journal) -> None:
        self._at = at

    def __contains__(self, local_id: object) -> bool:
        was = self._at.get(local_id) if isinstance(local_id, int) else None
        return was is not None and not was.remote_uuid


def _kept(row: EntryRow) -> _Kept:
    return _Kept(
        uuid=row.uuid,
        name=row.name,
        size=row.size,
        file_id=row.file_id,
        modified=row.mtime_ns / 1e9,
        created=row.ctime_ns / 1e9,
    )


def _transient(exc: BaseException) -> bool:
    """Trouble reaching Internxt (worth serving the last listing), not a definite answer."""
    return isinstance(exc, InternxtError) and not isinstance(exc, RequestRejected)


def _being_recreated(owner: Any, folder_uuid: str | None, name: str) -> bool:
    """The inode's file lost its remote entry on our side and waits to be created again under
    this same name, with local content not sent yet."""
    return (
        owner is not None
        and lifecycle.awaits_create(owner)
        and owner.parent_uuid == folder_uuid
        and owner.name == name
    )


def _shown_name(entry: Any, shown: dict[str, str], children: dict[str, int]) -> str | None:
    """The name a remote entry is listed under, or None to hide it: an entry kept aside by a
    rename over it shows under its own name until that rename lands (unless the name is
    taken, e.g. the rename did land and the journal does not know yet); else it is hidden."""
    if not entry.name.startswith(ASIDE_PREFIX):
        return str(entry.name)
    name = shown.get(entry.uuid)
    return None if name is None or name in children else name


def _apply_times(node: Node, entry: Any) -> None:
    modified = float(entry.modified)
    created = float(entry.created)
    if not node.mtime_pinned and not same_millisecond(node.mtime_ns, modified):
        node.mtime_ns = seconds_to_ns(modified)
    # ctime never goes back: a change made here (touch, chmod, rename) moved it past what
    # Internxt knows; a change made elsewhere shows as a newer modification time. The entry's
    # creation time counts for a node seen first: for one known here it is no change of
    # ours (Internxt sets it to the time of our upload), and git compares ctime.
    changed = max(created, modified) if node.ctime_ns == 0 else modified
    if not same_millisecond(node.ctime_ns, changed) and seconds_to_ns(changed) > node.ctime_ns:
        node.ctime_ns = seconds_to_ns(changed)
    if node.atime_ns == 0:
        node.atime_ns = node.mtime_ns
