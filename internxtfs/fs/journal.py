"""The persistent record of every file with local state: ``<cache_dir>/state.db`` (SQLite).

One row per regular file the mount holds local state for (cached blocks, unsent content, a
rename or delete of a file not uploaded yet), the block map of its cache file, a small
key/value table for mount-wide state and a list of network objects that may be orphaned.
Crash recovery (issue 4) is built on this: on start every ``dirty`` row is uploaded again and
every ``deleted`` row with a ``remote_uuid`` is deleted again. What a record's columns mean
together (new, dirty, publishing, clean, held, delete-pending, unlinked) is fs/lifecycle.py.

Durability: WAL mode with ``synchronous=NORMAL`` (default). A commit is in the WAL file when
the call returns, so it survives ``kill -9`` of the process; it survives power loss only with
``synchronous="FULL"`` (an fsync per commit). Every public call that changes something is one
small transaction, or part of the caller's :meth:`Journal.transaction` block.

Calls are synchronous: SQLite on a local disk answers in microseconds, and a synchronous call
cannot be interleaved with another trio task, which keeps every change atomic. The connection
belongs to the thread that opened it (the trio thread); never call a Journal from a worker
thread.

Records are cached in memory (``_records``, written through on every change), so ``get`` is a
dict lookup on the hot read/write path. Records are frozen dataclasses: callers never see a
half-updated record, and must call :meth:`update` to change one. Every change goes through
``_put``, which also keeps the indexes by remote uuid, by parent folder and of the dirty
records, and the old values for :meth:`watch`: nothing on a per-request path scans every record
(a mount may hold tens of thousands).

Generation rule: ``update(..., dirty=True)`` bumps ``generation`` (any change that makes a file
dirty is a change the uploader must notice), and ``update(..., bump=True)`` does it explicitly.
Nothing else changes implicitly.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internxtfs.fs.lifecycle import FileState, has_unsent_content, remote_delete_pending, state_of

log = logging.getLogger(__name__)

SCHEMA_VERSION = 12
_REPLACEMENTS_TABLE = """
CREATE TABLE replacements (
    target_uuid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    parent_uuid TEXT NOT NULL,
    name TEXT NOT NULL,
    source_uuid TEXT,
    source_local_id INTEGER,
    state TEXT NOT NULL
)"""
# Owner, group and permission bits kept by this cache only (Internxt stores none; see
# fs/ownership.py). key: the entry's remote uuid, or "local:<local_id>" for a file not
# published yet. A NULL column means "the mount default" (-o uid=, gid=, umask=).
# IF NOT EXISTS: the upgrade step below is self-contained, whatever step precedes it.
_OWNERS_TABLE = """
CREATE TABLE IF NOT EXISTS owners (
    key TEXT PRIMARY KEY,
    mode INTEGER,
    uid INTEGER,
    gid INTEGER
)"""
# A folder's mtime set through this mount (utimensat, then every change of its entries made
# here): Internxt stores a folder's times only when it is created (PUT /folders/{uuid}/meta
# takes the name alone), so this cache keeps it, keyed by the folder's uuid. NULL: Internxt's.
_FOLDER_MTIME_COLUMN = "ALTER TABLE owners ADD COLUMN mtime_ns INTEGER"
# The metadata cache (issue 9, warm start): the folders and files this mount has seen, as
# their folder's last listing showed them (with our own changes since), so a remount shows the
# last known tree at once, even offline, with the same inode numbers. One row per entry, keyed
# by its uuid; parent_uuid: the folder it is listed in (NULL for the root). name: its name on
# the server (a link's NAME.rclonelink). listed_at: for a folder whose own entries are here,
# the wall-clock time of that listing; NULL when it was never listed.
_ENTRIES_TABLE = """
CREATE TABLE IF NOT EXISTS entries (
    uuid TEXT PRIMARY KEY,
    ino INTEGER NOT NULL UNIQUE,
    parent_uuid TEXT,
    name TEXT NOT NULL,
    is_dir INTEGER NOT NULL,
    size INTEGER NOT NULL,
    file_id TEXT,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    listed_at REAL
)"""
_ENTRIES_INDEX = "CREATE INDEX IF NOT EXISTS entries_parent ON entries(parent_uuid)"
# A file unlinked while open (fs/lifecycle.py, HELD): its entry is kept aside until the last
# close. Before version 8 the mount kept this in memory only; a cache written then has no held
# file (none survives a restart), so every row starts at 0.
_HELD_COLUMN = "ALTER TABLE files ADD COLUMN held INTEGER NOT NULL DEFAULT 0"
# Namespace changes made while Internxt could not be reached (issue 9, fs/pending.py), in the
# order they were made; the replayer sends them once Internxt answers and removes each row as
# it is done. op: 'mkdir', 'move' or 'rmdir'. uuid: the entry (a folder made offline has a
# placeholder, fs/pending.py, until its mkdir is replayed). parent_uuid/name: where a mkdir or
# move puts it (rmdir: the folder's parent and name); old_parent_uuid: where a move takes it
# from. kind: 'folder' or 'file'.
_NAMESPACE_OPS_TABLE = """
CREATE TABLE IF NOT EXISTS namespace_ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    kind TEXT NOT NULL,
    uuid TEXT NOT NULL,
    parent_uuid TEXT NOT NULL,
    name TEXT NOT NULL,
    old_parent_uuid TEXT,
    mtime_ns INTEGER NOT NULL
)"""
# A mkdir queued after its create was sent without an answer may exist on the server (the
# replay adopts it): removing it again must then be sent too, never cancelled locally.
_MAYBE_SENT_COLUMN = "ALTER TABLE namespace_ops ADD COLUMN maybe_sent INTEGER NOT NULL DEFAULT 0"
# A file created where this mount did not know what the folder holds (issue 9: a folder never
# listed, during an outage, or a folder made offline that may turn out to exist): its name was
# never checked, so if the server holds it already the replay keeps both (fs/conflicts.py).
_BLIND_COLUMN = "ALTER TABLE files ADD COLUMN blind INTEGER NOT NULL DEFAULT 0"
# The content a rename over knew its target by (conflict rule 1, fs/conflicts.py): JSON of
# content id -> size (null: not known), checked before the target's delete is sent late, so a
# version another client stored in place meanwhile is kept. NULL (a folder, a target found
# only by the rename, or a row written before version 12): deleted unchecked, as before.
_TARGET_CONTENT_COLUMN = "ALTER TABLE replacements ADD COLUMN target_content TEXT"
# Older schemas this version upgrades in place (version -> statements to get to the next one).
_UPGRADES = {
    1: [
        "ALTER TABLE orphans ADD COLUMN parent_uuid TEXT",
        "ALTER TABLE orphans ADD COLUMN name TEXT",
    ],
    2: [_REPLACEMENTS_TABLE],
    3: [_OWNERS_TABLE],
    4: [_FOLDER_MTIME_COLUMN],
    # files.pending_generation was written at every publish and never read (the generation a
    # publish checks is the record's own, read under the file's lock). SQLite >= 3.35.
    5: ["ALTER TABLE files DROP COLUMN pending_generation"],
    6: [_ENTRIES_TABLE, _ENTRIES_INDEX],
    7: [_HELD_COLUMN],
    8: [_NAMESPACE_OPS_TABLE],
    9: [_MAYBE_SENT_COLUMN],
    10: [_BLIND_COLUMN],
    11: [_TARGET_CONTENT_COLUMN],
}

RECOVERY_HINT = (
    "the cache state cannot be trusted; refusing to start instead of guessing. "
    "Run 'internxtfs salvage --cache-dir DIR' (same --profile/--cache-dir as the mount): it "
    "copies the unsent content into a lost+found directory and moves the cache aside; see "
    "docs/semantics.md, 'Damaged cache state'."
)

_SCHEMA = (
    """
CREATE TABLE schema_version (version INTEGER NOT NULL);
-- AUTOINCREMENT: a local_id is never reused, so nothing keyed by a dropped file's id (its
-- cache file, an upload in flight, an orphan row) can ever be taken for a new file's.
CREATE TABLE files (
    local_id INTEGER PRIMARY KEY AUTOINCREMENT,
    remote_uuid TEXT,
    parent_uuid TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    dirty INTEGER NOT NULL,
    remote_file_id TEXT,
    remote_size INTEGER NOT NULL,
    remote_valid_len INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    last_access REAL NOT NULL,
    pending_file_id TEXT
);
CREATE INDEX files_remote ON files(remote_uuid) WHERE remote_uuid IS NOT NULL;
CREATE INDEX files_pending ON files(dirty, deleted) WHERE dirty OR deleted;
-- One row per block present in a file's cache file (dirty = changed locally, not uploaded).
CREATE TABLE blocks (
    local_id INTEGER NOT NULL,
    block_no INTEGER NOT NULL,
    dirty INTEGER NOT NULL,
    PRIMARY KEY (local_id, block_no)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Network objects uploaded but (maybe) never referenced by a drive entry. reason:
-- 'unpublished' = certainly unreferenced (safe to delete), 'uncertain' = a drive create or
-- replace pointing at it was sent and its outcome is unknown (a crash, or an error after
-- sending): check the drive before deleting. parent_uuid/name: where that publish was aimed,
-- so an entry a lost create made there can still be found after the file moved on.
CREATE TABLE orphans (
    file_id TEXT PRIMARY KEY,
    local_id INTEGER,
    reason TEXT NOT NULL,
    parent_uuid TEXT,
    name TEXT
);
-- A rename over an existing entry, step by step (fs/replacement.py): the target is moved
-- aside to a hidden name first, so a failure or crash before the source lands can put it
-- back. state: 'aside' = the rename is not known to have landed (restore the target unless
-- the source is found in its place), 'replaced' = it landed (delete the target).
"""
    + _REPLACEMENTS_TABLE
    + ";\n"
    + _OWNERS_TABLE
    + ";\n"
    + _FOLDER_MTIME_COLUMN
    + ";\n"
    + _ENTRIES_TABLE
    + ";\n"
    + _ENTRIES_INDEX
    + ";\n"
    + _HELD_COLUMN
    + ";\n"
    + _NAMESPACE_OPS_TABLE
    + ";\n"
    + _MAYBE_SENT_COLUMN
    + ";\n"
    + _BLIND_COLUMN
    + ";\n"
    + _TARGET_CONTENT_COLUMN
    + ";\n"
)


UNPUBLISHED = "unpublished"
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Orphan:
    """A network object that may have no drive entry (see the ``orphans`` table)."""

    file_id: str
    local_id: int | None
    reason: str  # UNPUBLISHED or UNCERTAIN
    parent_uuid: str | None = None  # where the publish that may have referenced it was aimed
    name: str | None = None


ASIDE = "aside"
REPLACED = "replaced"


@dataclass(frozen=True)
class Replacement:
    """A rename over an existing entry in progress (see the ``replacements`` table)."""

    target_uuid: str  # the entry being replaced, moved aside under a hidden name
    kind: str  # 'file' or 'folder'
    parent_uuid: str  # the folder holding the name (the target's home and the destination)
    name: str  # the name being replaced
    source_uuid: str | None  # the entry renamed onto it (None: a file not uploaded yet)
    source_local_id: int | None  # its journal record, if any
    state: str  # ASIDE or REPLACED
    # What the target held when the rename was asked (see _TARGET_CONTENT_COLUMN), as JSON.
    target_content: str | None = None


@dataclass(frozen=True)
class Owner:
    """Local permission bits and owner of one entry (see the ``owners`` table); None = the
    mount default."""

    mode: int | None = None  # the 0o7777 bits only
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None  # folders: the mtime set through this mount


@dataclass(frozen=True)
class EntryRow:
    """One entry of the metadata cache (the ``entries`` table)."""

    uuid: str
    ino: int
    parent_uuid: str | None
    name: str
    is_dir: bool
    size: int
    file_id: str | None
    mtime_ns: int
    ctime_ns: int
    listed_at: float | None


@dataclass(frozen=True)
class NamespaceOp:
    """A namespace change waiting to be sent (the ``namespace_ops`` table)."""

    seq: int
    op: str  # 'mkdir', 'move' or 'rmdir'
    kind: str  # 'folder' or 'file'
    uuid: str
    parent_uuid: str
    name: str
    old_parent_uuid: str | None
    mtime_ns: int
    maybe_sent: bool = False  # a mkdir whose create was sent, unanswered: it may exist


_OP_FIELDS = "seq, op, kind, uuid, parent_uuid, name, old_parent_uuid, mtime_ns, maybe_sent"


_ENTRY_FIELDS = "uuid, ino, parent_uuid, name, is_dir, size, file_id, mtime_ns, ctime_ns, listed_at"


def local_owner_key(local_id: int) -> str:
    """The ``owners`` key of a file that has no remote uuid yet."""
    return f"local:{local_id}"


class JournalError(Exception):
    """The cache state cannot be used."""


class JournalDamaged(JournalError):
    """state.db or a cache file is damaged or missing: refuse to start (issue 4)."""


class JournalVersionError(JournalError):
    """state.db was written by a newer (or unknown) version of internxtfs."""


class JournalAccountMismatch(JournalError):
    """The cache directory belongs to another Internxt account."""


@dataclass(frozen=True)
class FileRecord:
    """Local state of one regular file. See the module docstring of journal.py."""

    local_id: int
    remote_uuid: str | None  # drive entry; None until the file is first published
    parent_uuid: str  # folder it lives in (locally: renames of unsent files only change this)
    name: str  # full name, extension included
    size: int  # logical size
    mtime_ns: int
    dirty: bool  # local content/mtime differs from the remote entry
    remote_file_id: str | None  # network object the remote entry points to (None: 0 bytes)
    remote_size: int  # size of that object
    # Bytes of the remote object that still count: min(remote_size, lowest size truncated to
    # since the last upload). Bytes at or after it are zeros or written locally.
    remote_valid_len: int
    generation: int  # bumped on every local change (uploader's "changed while uploading?")
    deleted: bool  # unlinked locally; if remote_uuid is set, its remote delete is pending
    last_access: float  # wall-clock seconds, coarse (eviction order after a restart)
    pending_file_id: str | None = None  # uploaded network object being published
    held: bool = False  # unlinked while open: the remote delete waits for the last close
    blind: bool = False  # created without knowing the folder's content (see _BLIND_COLUMN)

    @property
    def state(self) -> FileState:
        """Where the file is in its lifecycle (fs/lifecycle.py reads the columns above)."""
        return state_of(self)


_FIELDS = [f.name for f in dataclasses.fields(FileRecord)]
_BOOL_FIELDS = {"dirty", "deleted", "held", "blind"}
_UPDATABLE = set(_FIELDS) - {"local_id"}


def _row_to_record(row: sqlite3.Row | tuple[Any, ...]) -> FileRecord:
    values = dict(zip(_FIELDS, row, strict=True))
    for name in _BOOL_FIELDS:
        values[name] = bool(values[name])
    return FileRecord(**values)


def _has_something_to_send(record: FileRecord) -> bool:
    return has_unsent_content(record) or remote_delete_pending(record)


class RecordsAtStart:
    """Journal.watch(): each record as it was when the watch began (None: it did not exist)."""

    __slots__ = ("_before", "_journal")

    def __init__(self, journal: Journal, before: dict[int, FileRecord | None]) -> None:
        self._journal = journal
        self._before = before

    def get(self, local_id: int) -> FileRecord | None:
        if local_id in self._before:
            return self._before[local_id]
        return self._journal.get(local_id)


class Journal:
    """SQLite-backed record of local file state. Synchronous; use from the trio thread only."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA (OFF loses data)")
        self.path = Path(path)
        # The write-ahead log: a commit is on the disk once this file is fsynced (NORMAL).
        self.log_path = Path(f"{self.path}-wal")
        # True when this call created the database: the block cache uses it to notice a
        # state.db that vanished while cache files remained.
        self.created = not self.path.exists()
        if not self.created and self.path.stat().st_size == 0:
            # We checkpoint right after creating the schema, so a real state.db is never empty.
            raise JournalDamaged(f"{self.path} is empty: {RECOVERY_HINT}")
        self._depth = 0  # nesting of transaction()
        self._undo: dict[int, FileRecord | None] = {}  # in-memory rollback of a transaction
        self._owners_undo: dict[str, Owner | None] = {}  # the same for the owners table
        self._after_commit: list[Callable[[], None]] = []  # see on_commit()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalDamaged(f"cannot open {self.path} ({exc}): {RECOVERY_HINT}") from exc
        try:
            self._open(synchronous.upper())
        except JournalError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise JournalDamaged(f"{self.path} is damaged ({exc}): {RECOVERY_HINT}") from exc

    def _open(self, synchronous: str) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        # Truncate the WAL when a checkpoint resets it: SQLite otherwise rewrites the old file
        # in place, and its frames are not page aligned, so once those pages have left the page
        # cache (a big write pushes them out) every commit waits for a disk read first.
        # Appending to a fresh WAL instead: p90 of a write's commit ~300 us -> ~50 us.
        db.execute("PRAGMA journal_size_limit=0")
        db.execute("PRAGMA foreign_keys=OFF")
        if self.created:
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            # Move the schema out of the WAL so state.db itself is never empty (see __init__).
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                detail = "; ".join(str(r[0]) for r in check[:3])
                raise JournalDamaged(f"{self.path} failed its check ({detail}): {RECOVERY_HINT}")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "schema_version" not in tables:
                raise JournalDamaged(f"{self.path} has no schema version: {RECOVERY_HINT}")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                raise JournalDamaged(f"{self.path} has no schema version: {RECOVERY_HINT}")
            version = row[0]
            if version in _UPGRADES:
                with self.transaction():
                    while version in _UPGRADES:
                        for statement in _UPGRADES[version]:
                            db.execute(statement)
                        version += 1
                    db.execute("UPDATE schema_version SET version = ?", (version,))
                log.info("upgraded %s to schema version %d", self.path, version)
            if version != SCHEMA_VERSION:
                raise JournalVersionError(
                    f"{self.path} has schema version {version}, this internxtfs knows "
                    f"{SCHEMA_VERSION}; use the internxtfs version that wrote it"
                )
        cols = ", ".join(_FIELDS)
        self._records: dict[int, FileRecord] = {}
        self._by_remote: dict[str, int] = {}  # remote_uuid -> local_id
        # local_ids of dirty_files(), in the records' order: the uploader asks for them at
        # every change while a flush waits, and a scan of every record made that quadratic.
        self._dirty: dict[int, None] = {}
        # local_ids by parent folder, in the records' order (records_in: a listing's merge).
        self._by_parent: dict[str | None, dict[int, None]] = {}
        self._watches: list[dict[int, FileRecord | None]] = []  # see watch()
        for record in map(_row_to_record, db.execute(f"SELECT {cols} FROM files")):
            self._put(record.local_id, record)
        self._owners: dict[str, Owner] = {
            key: Owner(mode, uid, gid, mtime_ns)
            for key, mode, uid, gid, mtime_ns in db.execute(
                "SELECT key, mode, uid, gid, mtime_ns FROM owners"
            )
        }

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # closing must not fail; the WAL is replayed next time
            log.warning("checkpoint of %s failed: %s", self.path, exc)
        self._db.close()

    # --- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group changes into one commit. Nests (only the outermost block commits).

        On an exception everything in the block is rolled back, the in-memory records too,
        and callbacks given to :meth:`on_commit` are dropped.
        """
        outer = self._depth == 0
        if outer:
            self._db.execute("BEGIN IMMEDIATE")
            self._undo = {}
            self._owners_undo = {}
            self._after_commit = []
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if outer:
                self._roll_back()
            raise
        self._depth -= 1
        if outer:
            if not self._db.in_transaction:
                # SQLite ended it by itself (SQLITE_FULL does) and the error was caught
                # inside the block: committing now would keep only part of it.
                self._roll_back()
                raise sqlite3.OperationalError("the journal transaction was rolled back")
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._roll_back()  # a failed COMMIT (disk full) may leave it open
                raise
            self._undo = {}
            self._owners_undo = {}
            callbacks, self._after_commit = self._after_commit, []
            for callback in callbacks:
                callback()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the changes made so far are on disk: at the end of the
        outermost transaction (never, if it rolls back), or at once outside one. For state
        kept elsewhere that must not run ahead of the journal (the block cache's dirty map)."""
        if self._depth == 0:
            callback()
        else:
            self._after_commit.append(callback)

    def _roll_back(self) -> None:
        """End the open transaction and put the in-memory records back as they were.

        SQLite may have rolled back by itself already (SQLITE_FULL does), so a ROLLBACK that
        finds nothing to end is skipped; the records are restored in every case, or memory
        and disk would disagree from here on.
        """
        undo, self._undo = self._undo, {}
        owners_undo, self._owners_undo = self._owners_undo, {}
        self._after_commit = []
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            for local_id, old in undo.items():
                self._put(local_id, old)
            for key, owner in owners_undo.items():
                self._put_owner(key, owner)

    def _remember(self, local_id: int) -> None:
        if self._depth and local_id not in self._undo:
            self._undo[local_id] = self._records.get(local_id)

    def _put(self, local_id: int, record: FileRecord | None) -> None:
        """Change the in-memory copy (records + remote uuid index) after the SQL succeeded."""
        self._remember(local_id)
        old = self._records.pop(local_id, None)
        for before in self._watches:
            before.setdefault(local_id, old)
        if old is not None:
            if old.remote_uuid is not None:
                self._by_remote.pop(old.remote_uuid, None)
            siblings = self._by_parent.get(old.parent_uuid)
            if siblings is not None:
                siblings.pop(local_id, None)
                if not siblings:
                    del self._by_parent[old.parent_uuid]
        self._dirty.pop(local_id, None)
        if record is not None:
            self._records[local_id] = record
            if record.remote_uuid is not None:
                self._by_remote[record.remote_uuid] = local_id
            self._by_parent.setdefault(record.parent_uuid, {})[local_id] = None
            if _has_something_to_send(record):
                self._dirty[local_id] = None

    # --- file records ---------------------------------------------------------------------

    def new_file(
        self,
        *,
        parent_uuid: str,
        name: str,
        size: int = 0,
        mtime_ns: int = 0,
        dirty: bool = False,
        remote_uuid: str | None = None,
        remote_file_id: str | None = None,
        remote_size: int = 0,
        remote_valid_len: int | None = None,
        last_access: float = 0.0,
        blind: bool = False,
    ) -> FileRecord:
        """Add a record; ``remote_valid_len`` defaults to ``remote_size``."""
        valid = remote_size if remote_valid_len is None else remote_valid_len
        values = (remote_uuid, parent_uuid, name, size, mtime_ns, int(dirty), remote_file_id,
                  remote_size, valid, 0, 0, last_access, int(blind))  # fmt: skip
        cur = self._db.execute(
            "INSERT INTO files (remote_uuid, parent_uuid, name, size, mtime_ns, dirty,"
            " remote_file_id, remote_size, remote_valid_len, generation, deleted, last_access,"
            " blind) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            values,
        )
        assert cur.lastrowid is not None
        record = FileRecord(
            local_id=cur.lastrowid,
            remote_uuid=remote_uuid,
            parent_uuid=parent_uuid,
            name=name,
            size=size,
            mtime_ns=mtime_ns,
            dirty=dirty,
            remote_file_id=remote_file_id,
            remote_size=remote_size,
            remote_valid_len=valid,
            generation=0,
            deleted=False,
            last_access=last_access,
            blind=blind,
        )
        self._put(record.local_id, record)
        return record

    def get(self, local_id: int) -> FileRecord | None:
        return self._records.get(local_id)

    def find_by_remote(self, remote_uuid: str) -> FileRecord | None:
        local_id = self._by_remote.get(remote_uuid)
        return None if local_id is None else self._records.get(local_id)

    def remote_uuids(self) -> Collection[str]:
        """The remote uuids of every record (a live view)."""
        return self._by_remote.keys()

    def records_in(self, parent_uuid: str | None) -> list[FileRecord]:
        """The records whose parent is this folder, in the order all_files() gives them."""
        return [self._records[i] for i in self._by_parent.get(parent_uuid, ())]

    @contextlib.contextmanager
    def watch(self) -> Iterator[RecordsAtStart]:
        """The records as they are now, for as long as the block runs, without copying them
        all: each change made meanwhile keeps the record's first old value aside. A folder
        listing compares what it fetched with the records as they were when it was sent
        (fs/metadata.py); a copy of every record per listing cost 51 ms with 50,000 records."""
        before: dict[int, FileRecord | None] = {}
        self._watches.append(before)
        try:
            yield RecordsAtStart(self, before)
        finally:
            # By identity: list.remove() compares by value, and two watches that saw the same
            # changes (none, say) are equal dicts; watches may end in any order (two folders
            # listed at once), so removing the first equal one could end another's watch.
            for i, watching in enumerate(self._watches):
                if watching is before:
                    del self._watches[i]
                    break

    def update(self, local_id: int, *, bump: bool = False, **fields: Any) -> FileRecord:
        """Change fields of a record; returns the new record. KeyError if it does not exist.

        ``dirty=True`` or ``bump=True`` also increments ``generation``.
        """
        old = self._records[local_id]
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise TypeError(f"unknown FileRecord fields: {sorted(unknown)}")
        if (bump or fields.get("dirty") is True) and "generation" not in fields:
            fields["generation"] = old.generation + 1
        if not fields:
            return old
        # copy + setattr: dataclasses.replace re-validates every field and is 5x slower, and
        # this runs on every write().
        new = copy.copy(old)
        for name, value in fields.items():
            object.__setattr__(new, name, value)
        # Only the columns whose value changes are written (the row on disk always equals the
        # record in memory, see _roll_back): an UPDATE that names `dirty` rewrites its
        # files_pending index entry even when the value stays, which made the UPDATE of every
        # write() into a file already dirty twice as slow (about 29 against 13 µs here).
        changed = {name: value for name, value in fields.items() if getattr(old, name) != value}
        if not changed:
            self._put(local_id, new)
            return new
        sets = ", ".join(f"{name} = ?" for name in changed)
        params = [int(v) if name in _BOOL_FIELDS else v for name, v in changed.items()]
        if "remote_uuid" in changed:
            with self.transaction():
                self._db.execute(f"UPDATE files SET {sets} WHERE local_id = ?", (*params, local_id))
                self._put(local_id, new)
                # The file's owner and mode follow it: to its remote uuid once published, and
                # back to its local id when the remote entry is gone (deleted here, or
                # elsewhere and stored again), so delete() forgets them with the record.
                self.move_owner(
                    old.remote_uuid or local_owner_key(local_id),
                    new.remote_uuid or local_owner_key(local_id),
                )
            return new
        self._db.execute(f"UPDATE files SET {sets} WHERE local_id = ?", (*params, local_id))
        self._put(local_id, new)
        return new

    def delete(self, local_id: int) -> None:
        """Forget a record and its block map (the block cache removes the cache file)."""
        with self.transaction():
            self._db.execute("DELETE FROM files WHERE local_id = ?", (local_id,))
            self._db.execute("DELETE FROM blocks WHERE local_id = ?", (local_id,))
            self._put(local_id, None)
            self.set_owner(local_owner_key(local_id), None)

    def dirty_files(self) -> list[FileRecord]:
        """Records with something to send: new content, or a pending remote delete (one held
        until a last close included)."""
        return [self._records[i] for i in self._dirty]

    def all_files(self) -> list[FileRecord]:
        return list(self._records.values())

    # --- block map (used by the block cache) ------------------------------------------------

    def load_blocks(self) -> Iterator[tuple[int, int, bool]]:
        """Every (local_id, block_no, dirty) row, ordered by file then block."""
        for local_id, block_no, dirty in self._db.execute(
            "SELECT local_id, block_no, dirty FROM blocks ORDER BY local_id, block_no"
        ):
            yield local_id, block_no, bool(dirty)

    def set_blocks(self, local_id: int, block_nos: Iterable[int], dirty: bool) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO blocks (local_id, block_no, dirty) VALUES (?, ?, ?)",
            [(local_id, b, int(dirty)) for b in block_nos],
        )

    def delete_blocks(self, local_id: int, block_nos: Iterable[int]) -> None:
        self._db.executemany(
            "DELETE FROM blocks WHERE local_id = ? AND block_no = ?",
            [(local_id, b) for b in block_nos],
        )

    def delete_blocks_from(self, local_id: int, first_block: int) -> None:
        self._db.execute(
            "DELETE FROM blocks WHERE local_id = ? AND block_no >= ?", (local_id, first_block)
        )

    def clean_blocks(self, local_id: int) -> None:
        self._db.execute("UPDATE blocks SET dirty = 0 WHERE local_id = ? AND dirty", (local_id,))

    # --- orphaned network objects ---------------------------------------------------------

    def add_orphan(
        self,
        file_id: str,
        local_id: int | None,
        reason: str,
        *,
        parent_uuid: str | None = None,
        name: str | None = None,
    ) -> None:
        """Record an object to clean up. 'uncertain' wins: an object once sent to the drive
        is never downgraded to 'unpublished' (which would get it deleted unchecked)."""
        if reason not in (UNPUBLISHED, UNCERTAIN):
            raise ValueError(reason)
        self._db.execute(
            "INSERT INTO orphans (file_id, local_id, reason, parent_uuid, name)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (file_id) DO UPDATE SET"
            " local_id = excluded.local_id, reason = excluded.reason,"
            " parent_uuid = excluded.parent_uuid, name = excluded.name"
            " WHERE excluded.reason = 'uncertain' OR orphans.reason = 'unpublished'",
            (file_id, local_id, reason, parent_uuid, name),
        )

    def orphan_rows(self) -> list[Orphan]:
        """The objects to clean up (see the ``orphans`` table)."""
        rows = self._db.execute("SELECT file_id, local_id, reason, parent_uuid, name FROM orphans")
        return [Orphan(*row) for row in rows]

    def remove_orphan(self, file_id: str) -> None:
        self._db.execute("DELETE FROM orphans WHERE file_id = ?", (file_id,))

    # --- renames over an existing entry (fs/replacement.py) -------------------------------

    def add_replacement(self, row: Replacement) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO replacements (target_uuid, kind, parent_uuid, name,"
            " source_uuid, source_local_id, state, target_content)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            dataclasses.astuple(row),
        )

    def replacements(self) -> list[Replacement]:
        rows = self._db.execute(
            "SELECT target_uuid, kind, parent_uuid, name, source_uuid, source_local_id, state,"
            " target_content FROM replacements"
        )
        return [Replacement(*row) for row in rows]

    def replacement(self, target_uuid: str) -> Replacement | None:
        row = self._db.execute(
            "SELECT target_uuid, kind, parent_uuid, name, source_uuid, source_local_id, state,"
            " target_content FROM replacements WHERE target_uuid = ?",
            (target_uuid,),
        ).fetchone()
        return None if row is None else Replacement(*row)

    def set_replacement_state(self, target_uuid: str, state: str) -> None:
        self._db.execute(
            "UPDATE replacements SET state = ? WHERE target_uuid = ?", (state, target_uuid)
        )

    def remove_replacement(self, target_uuid: str) -> None:
        self._db.execute("DELETE FROM replacements WHERE target_uuid = ?", (target_uuid,))

    # --- owners and modes kept locally (fs/ownership.py) ----------------------------------

    def owner(self, key: str) -> Owner | None:
        return self._owners.get(key)

    def set_owner(self, key: str, owner: Owner | None) -> None:
        """Store (or with None, forget) the local owner/mode of the entry ``key``."""
        if owner is None or owner == Owner():
            if key not in self._owners:
                return
            self._db.execute("DELETE FROM owners WHERE key = ?", (key,))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO owners (key, mode, uid, gid, mtime_ns)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, owner.mode, owner.uid, owner.gid, owner.mtime_ns),
            )
        self._put_owner(key, owner)

    def move_owner(self, old_key: str, new_key: str) -> None:
        """The entry got a new key (published: local id -> remote uuid)."""
        owner = self._owners.get(old_key)
        if owner is None or old_key == new_key:
            return
        with self.transaction():
            self.set_owner(old_key, None)
            self.set_owner(new_key, owner)

    def _put_owner(self, key: str, owner: Owner | None) -> None:
        if self._depth and key not in self._owners_undo:
            self._owners_undo[key] = self._owners.get(key)
        if owner is None or owner == Owner():
            self._owners.pop(key, None)
        else:
            self._owners[key] = owner

    # --- the metadata cache -----------------------------------------------------------------

    def entry_rows(self) -> list[EntryRow]:
        rows = self._db.execute(f"SELECT {_ENTRY_FIELDS} FROM entries")
        return [
            EntryRow(u, ino, p, n, bool(d), size, f, m, c, listed)
            for u, ino, p, n, d, size, f, m, c, listed in rows
        ]

    def save_entries(self, folders: Iterable[str], rows: Iterable[EntryRow]) -> None:
        """Replace what is kept of the entries of ``folders`` with ``rows`` (which also hold
        the folders' own rows, with their listing times), in one commit."""
        with self.transaction():
            for folder in folders:
                self._db.execute("DELETE FROM entries WHERE parent_uuid = ?", (folder,))
            for row in rows:
                # A uuid keeps its inode number; another row holding that number (an entry
                # gone since, kept by a folder not listed again) gives it up.
                self._db.execute("DELETE FROM entries WHERE ino = ? AND uuid != ?",
                                 (row.ino, row.uuid))  # fmt: skip
                self._db.execute(
                    f"INSERT OR REPLACE INTO entries ({_ENTRY_FIELDS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.uuid, row.ino, row.parent_uuid, row.name, int(row.is_dir),
                        row.size, row.file_id, row.mtime_ns, row.ctime_ns, row.listed_at,
                    ),
                )  # fmt: skip

    # --- namespace changes waiting for Internxt (fs/pending.py) ----------------------------

    def add_op(
        self,
        op: str,
        kind: str,
        uuid: str,
        parent_uuid: str,
        name: str,
        *,
        old_parent_uuid: str | None = None,
        mtime_ns: int = 0,
        maybe_sent: bool = False,
    ) -> NamespaceOp:
        cur = self._db.execute(
            "INSERT INTO namespace_ops (op, kind, uuid, parent_uuid, name, old_parent_uuid,"
            " mtime_ns, maybe_sent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (op, kind, uuid, parent_uuid, name, old_parent_uuid, mtime_ns, int(maybe_sent)),
        )
        assert cur.lastrowid is not None
        return NamespaceOp(cur.lastrowid, op, kind, uuid, parent_uuid, name, old_parent_uuid,
                           mtime_ns, maybe_sent)  # fmt: skip

    def ops(self) -> list[NamespaceOp]:
        """The queued namespace changes, oldest first."""
        rows = self._db.execute(f"SELECT {_OP_FIELDS} FROM namespace_ops ORDER BY seq")
        return [NamespaceOp(*row[:-1], maybe_sent=bool(row[-1])) for row in rows]

    def mark_op_sent(self, seq: int, sent: bool = True) -> None:
        """A queued mkdir is being sent by the replay: from now on it may exist remotely
        (``sent`` False: that attempt never left after all)."""
        self._db.execute("UPDATE namespace_ops SET maybe_sent = ? WHERE seq = ?", (int(sent), seq))

    def remove_op(self, seq: int) -> None:
        self._db.execute("DELETE FROM namespace_ops WHERE seq = ?", (seq,))

    def substitute_uuid(self, old: str, new: str) -> None:
        """A folder made offline got its real uuid: every row naming its placeholder names
        the uuid instead, in one commit (records, queued changes, the metadata cache, owners)."""
        with self.transaction():
            for record in list(self._records.values()):
                if record.parent_uuid == old:
                    self.update(record.local_id, parent_uuid=new)
            for column in ("uuid", "parent_uuid", "old_parent_uuid"):
                self._db.execute(
                    f"UPDATE namespace_ops SET {column} = ? WHERE {column} = ?", (new, old)
                )
            # The uuid may be listed already (a folder of that name adopted): ours wins.
            self._db.execute("DELETE FROM entries WHERE uuid = ?", (new,))
            self._db.execute("UPDATE entries SET uuid = ? WHERE uuid = ?", (new, old))
            self._db.execute("UPDATE entries SET parent_uuid = ? WHERE parent_uuid = ?", (new, old))
            self._db.execute("UPDATE orphans SET parent_uuid = ? WHERE parent_uuid = ?", (new, old))
            self.move_owner(old, new)

    # --- mount-wide key/value state -------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bind_account(self, user_uuid: str) -> None:
        """Tie the cache directory to one account; refuse another account's cache."""
        bound = self.get_meta("account")
        if bound is None:
            self.set_meta("account", user_uuid)
        elif bound != user_uuid:
            raise JournalAccountMismatch(
                f"{self.path} holds the state of another Internxt account ({bound}); "
                "use a different --cache-dir for this one"
            )
