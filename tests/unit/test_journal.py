"""Journal: records, transactions, schema version and damage detection."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from internxtfs.fs.journal import (
    ASIDE,
    SCHEMA_VERSION,
    EntryRow,
    Journal,
    JournalAccountMismatch,
    JournalDamaged,
    JournalVersionError,
    Orphan,
    Owner,
    Replacement,
    _has_something_to_send,
    local_owner_key,
)
from internxtfs.fs.lifecycle import FileState

# What every schema before 12 lacked: a rename over's known target content (fs/replacement.py).
BEFORE_12 = "ALTER TABLE replacements DROP COLUMN target_content;"
# What every schema before 11 lacked: the blind mark of files (created where the folder's
# content was unknown, fs/conflicts.py).
BEFORE_11 = BEFORE_12 + "ALTER TABLE files DROP COLUMN blind;"
# What every schema before 9 lacked: the queue of namespace changes (fs/pending.py).
BEFORE_9 = BEFORE_11 + "DROP TABLE IF EXISTS namespace_ops;"
# The files table as every schema before 8 had it: no held column (fs/lifecycle.py).
BEFORE_8 = BEFORE_9 + "ALTER TABLE files DROP COLUMN held;"
# The files table as every schema before 6 had it (with pending_generation).
OLD_FILES = BEFORE_8 + "ALTER TABLE files ADD COLUMN pending_generation INTEGER;"


def test_records_roundtrip_and_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state.db")
    r = j.new_file(parent_uuid="p", name="a.txt", size=5, mtime_ns=7, dirty=True)
    assert j.get(r.local_id) == r
    r2 = j.update(r.local_id, remote_uuid="u1", size=9)
    assert r2.size == 9 and r2.generation == r.generation  # update bumps nothing by itself
    assert j.find_by_remote("u1") == r2
    r3 = j.update(r.local_id, dirty=True)
    assert r3.generation == r2.generation + 1  # dirty=True is a change the uploader must see
    j.set_meta("k", "v")
    # Not closed: like kill -9, the WAL holds the commits.
    j2 = Journal(tmp_path / "state.db")
    assert j2.get(r.local_id) == r3
    assert j2.get_meta("k") == "v"
    assert [x.local_id for x in j2.dirty_files()] == [r.local_id]
    j2.delete(r.local_id)
    assert j2.get(r.local_id) is None and j2.find_by_remote("u1") is None


def test_update_writes_only_the_columns_that_change(tmp_path: Path) -> None:
    """Every write() into a dirty file updates its record; naming the unchanged ``dirty``
    in that UPDATE rewrote the pending-files index entry each time (half its cost, issue 12).
    What reaches the disk must be the same: a reopened journal sees every change."""
    j = Journal(tmp_path / "state.db")
    r = j.new_file(parent_uuid="p", name="a", size=0, dirty=True)
    statements: list[str] = []
    j._db.set_trace_callback(statements.append)
    for size in (4096, 8192):
        r = j.update(r.local_id, dirty=True, size=size)
    unchanged = j.update(r.local_id, dirty=True, size=8192, name="a")
    j._db.set_trace_callback(None)
    updates = [s for s in statements if s.startswith("UPDATE files")]
    assert len(updates) == 3
    assert all("dirty" not in s and "name" not in s for s in updates)
    assert unchanged.generation == r.generation + 1  # dirty=True still bumps
    assert all("generation" in s for s in updates)
    reopened = Journal(tmp_path / "state.db")
    assert reopened.get(r.local_id) == unchanged
    assert [x.local_id for x in reopened.dirty_files()] == [r.local_id]
    # A record that becomes clean and dirty again goes through the index both ways.
    j.update(r.local_id, dirty=False)
    assert Journal(tmp_path / "state.db").dirty_files() == []
    j.update(r.local_id, dirty=True)
    assert [x.local_id for x in Journal(tmp_path / "state.db").dirty_files()] == [r.local_id]


def test_transaction_rolls_back_memory_too(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state.db")
    r = j.new_file(parent_uuid="p", name="a")
    with pytest.raises(RuntimeError), j.transaction():
        j.update(r.local_id, name="b", remote_uuid="x")
        j.new_file(parent_uuid="p", name="c")
        raise RuntimeError
    assert j.get(r.local_id) == r
    assert len(j.all_files()) == 1 and j.find_by_remote("x") is None
    assert len(Journal(tmp_path / "state.db").all_files()) == 1


def test_dirty_files_follow_every_change_of_a_record(tmp_path: Path) -> None:
    """dirty_files() is kept as an index (the uploader asks for it at every change while a
    flush waits): it must equal a scan of every record after each kind of change, in the
    records' order, rolled-back transactions and a reopen included."""
    j = Journal(tmp_path / "state.db")

    def scanned(journal: Journal) -> list[int]:
        return [r.local_id for r in journal.all_files() if _has_something_to_send(r)]

    def check() -> None:
        assert [r.local_id for r in j.dirty_files()] == scanned(j)

    a = j.new_file(parent_uuid="p", name="a", dirty=True)
    b = j.new_file(parent_uuid="p", name="b", remote_uuid="ub")
    c = j.new_file(parent_uuid="p", name="c", dirty=True, remote_uuid="uc")
    check()
    j.update(b.local_id, dirty=True)  # clean -> dirty
    j.update(a.local_id, dirty=False, remote_uuid="ua")  # published
    check()
    j.update(c.local_id, deleted=True)  # unlinked with its entry: a delete to send
    check()
    assert c.local_id in [r.local_id for r in j.dirty_files()]
    with pytest.raises(RuntimeError), j.transaction():
        j.update(b.local_id, dirty=False)
        j.update(a.local_id, dirty=True)
        j.delete(c.local_id)
        raise RuntimeError
    check()
    j.delete(c.local_id)
    check()
    assert [r.local_id for r in Journal(tmp_path / "state.db").dirty_files()] == scanned(j)


def test_records_by_folder_and_as_they_were_when_a_watch_began(tmp_path: Path) -> None:
    """records_in() and watch() replace scans of every record in each folder listing
    (fs/metadata.py): records_in() must equal a scan by parent, in the same order, and
    watch() must give each record as it was when it began, whatever happened since."""
    j = Journal(tmp_path / "state.db")

    def check() -> None:
        for parent in ("p", "q", "r"):
            scan = [r.local_id for r in j.all_files() if r.parent_uuid == parent]
            assert [r.local_id for r in j.records_in(parent)] == scan, parent

    a = j.new_file(parent_uuid="p", name="a", dirty=True)
    b = j.new_file(parent_uuid="p", name="b", remote_uuid="ub", remote_file_id="o1")
    check()
    with j.watch() as at_start:
        j.update(a.local_id, remote_uuid="ua", dirty=False)  # published meanwhile
        j.update(b.local_id, remote_file_id="o2")
        j.update(b.local_id, remote_file_id="o3", parent_uuid="q")  # the first old value stays
        c = j.new_file(parent_uuid="p", name="c")  # made meanwhile: not there at the start
        with pytest.raises(RuntimeError), j.transaction():
            j.update(c.local_id, parent_uuid="r")
            j.delete(a.local_id)
            raise RuntimeError
        check()
        with j.watch() as inner:
            j.delete(c.local_id)
            assert j.get(c.local_id) is None
        assert at_start.get(a.local_id) == a
        assert at_start.get(b.local_id) == b
        assert at_start.get(c.local_id) is None
        kept = inner.get(c.local_id)
        assert kept is not None and kept.name == "c"
    check()
    assert j._watches == []
    assert [r.local_id for r in Journal(tmp_path / "state.db").records_in("q")] == [b.local_id]


def test_watches_may_end_in_any_order(tmp_path: Path) -> None:
    """Two folder listings in flight at once: the one started last may end first. Ending it
    must leave the other's watch in place (watches are told apart by identity, not by the
    old values they hold: two that saw the same changes are equal)."""
    j = Journal(tmp_path / "state.db")
    a = j.new_file(parent_uuid="p", name="a", dirty=True)
    first = j.watch()
    at_first = first.__enter__()
    second = j.watch()
    second.__enter__()
    second.__exit__(None, None, None)  # the second listing is done first
    j.update(a.local_id, remote_uuid="ua", dirty=False)  # published meanwhile
    assert at_first.get(a.local_id) == a
    first.__exit__(None, None, None)
    assert j._watches == []


def test_unknown_field_rejected(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state.db")
    r = j.new_file(parent_uuid="p", name="a")
    with pytest.raises(TypeError):
        j.update(r.local_id, colour="red")


def test_newer_schema_refused(tmp_path: Path) -> None:
    Journal(tmp_path / "state.db").close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(JournalVersionError):
        Journal(tmp_path / "state.db")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_db_detected(tmp_path: Path, damage: str) -> None:
    j = Journal(tmp_path / "state.db")
    for i in range(2000):
        j.new_file(parent_uuid="p", name=f"file-{i}" * 5, size=i)
    j.close()
    path = tmp_path / "state.db"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(data[:4096] + b"\xa5" * (len(data) - 4096))
    else:
        path.write_bytes(b"")
    with pytest.raises(JournalDamaged):
        Journal(path)


def test_bind_account(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state.db")
    j.bind_account("user-1")
    j.bind_account("user-1")
    with pytest.raises(JournalAccountMismatch):
        j.bind_account("user-2")


def test_orphans(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state.db")
    j.add_orphan("f1", 3, "unpublished")
    assert j.orphan_rows() == [Orphan("f1", 3, "unpublished")]
    j.remove_orphan("f1")
    assert j.orphan_rows() == []


def test_disk_full_rolls_back_memory_and_disk_alike(tmp_path: Path) -> None:
    """SQLITE_FULL (the cache disk is full) in the middle of a transaction, or at its COMMIT:
    the records in memory go back to what is on disk, and the journal works on afterwards."""
    j = Journal(tmp_path / "state.db")
    kept = j.new_file(parent_uuid="p", name="kept.txt", size=1, dirty=True)
    pages = j._db.execute("PRAGMA page_count").fetchone()[0]
    j._db.execute(f"PRAGMA max_page_count = {pages}")  # no room to grow: like a full disk
    with pytest.raises(sqlite3.Error) as full, j.transaction():
        j.update(kept.local_id, size=2, name="renamed.txt")
        for i in range(500):  # enough rows to need a new page
            j.new_file(parent_uuid="p", name=f"n{i}" + "x" * 200)
    assert full.value.sqlite_errorcode == sqlite3.SQLITE_FULL
    assert j.get(kept.local_id) == kept
    assert [r.name for r in j.all_files()] == ["kept.txt"]
    j._db.execute("PRAGMA max_page_count = 1073741823")
    with j.transaction():
        j.update(kept.local_id, size=3)
    reopened = Journal(tmp_path / "state.db")
    assert [(r.name, r.size) for r in reopened.all_files()] == [("kept.txt", 3)]


def test_failed_commit_is_undone_and_on_commit_callbacks_dropped(tmp_path: Path) -> None:
    """COMMIT itself fails and leaves SQLite's transaction open (as a full disk can): it is
    rolled back, memory follows, and what waited for the commit never runs."""
    j = Journal(tmp_path / "state.db")
    kept = j.new_file(parent_uuid="p", name="kept.txt", size=1, dirty=True)
    # A deferred constraint is checked only at COMMIT: a way to make exactly COMMIT fail.
    j._db.execute("PRAGMA foreign_keys=ON")
    j._db.execute("CREATE TABLE t_parent (id INTEGER PRIMARY KEY)")
    j._db.execute(
        "CREATE TABLE t_child (pid INTEGER REFERENCES t_parent(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    ran: list[str] = []
    with pytest.raises(sqlite3.IntegrityError), j.transaction():
        j.update(kept.local_id, name="renamed.txt")
        j.on_commit(lambda: ran.append("after"))
        j._db.execute("INSERT INTO t_child VALUES (42)")
    assert not j._db.in_transaction
    assert j.get(kept.local_id) == kept and ran == []
    with j.transaction():
        j.update(kept.local_id, size=5)
        j.on_commit(lambda: ran.append("after"))
        assert ran == []  # not before the commit
    assert ran == ["after"]
    j.on_commit(lambda: ran.append("now"))  # outside a transaction: at once
    assert ran == ["after", "now"]
    assert Journal(tmp_path / "state.db").get(kept.local_id).size == 5


def test_uncertain_orphan_is_never_downgraded(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state.db")
    j.add_orphan("obj", 3, "uncertain", parent_uuid="p", name="f.txt")
    j.add_orphan("obj", 3, "unpublished")  # would get it deleted without a look
    (row,) = j.orphan_rows()
    assert (row.reason, row.parent_uuid, row.name) == ("uncertain", "p", "f.txt")
    j.add_orphan("other", 4, "unpublished")
    j.add_orphan("other", 4, "uncertain", parent_uuid="q", name="g")
    assert Orphan("other", 4, "uncertain", "q", "g") in j.orphan_rows()


def test_schema_1_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    j.add_orphan("obj", 3, "uncertain")
    j.close()
    db = sqlite3.connect(path)  # back to what version 1 wrote
    db.executescript(
        "CREATE TABLE o1 (file_id TEXT PRIMARY KEY, local_id INTEGER, reason TEXT NOT NULL);"
        "INSERT INTO o1 SELECT file_id, local_id, reason FROM orphans;"
        "DROP TABLE orphans; ALTER TABLE o1 RENAME TO orphans;"
        + OLD_FILES
        + "DROP TABLE replacements; DROP TABLE owners;"
        + "UPDATE schema_version SET version = 1;"
    )
    db.close()
    upgraded = Journal(path)
    assert upgraded.orphan_rows() == [Orphan("obj", 3, "uncertain")]
    assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )
    assert upgraded.replacements() == []


def test_schema_2_gains_the_replacements_table(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Journal(path).close()
    db = sqlite3.connect(path)  # back to what version 2 wrote: no rename-over state
    db.executescript(
        OLD_FILES
        + "DROP TABLE replacements; DROP TABLE owners;"
        + "UPDATE schema_version SET version = 2;"
    )
    db.close()
    upgraded = Journal(path)
    row = Replacement("t", "file", "p", "n.txt", "s", 4, ASIDE)
    upgraded.add_replacement(row)
    assert upgraded.replacements() == [row]
    assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )


def test_schema_3_gains_the_owners_table(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    r = j.new_file(parent_uuid="p", name="a")
    j.close()
    db = sqlite3.connect(path)  # back to what version 3 wrote: no owners
    db.executescript("DROP TABLE owners;" + OLD_FILES + "UPDATE schema_version SET version = 3;")
    db.close()
    upgraded = Journal(path)
    assert upgraded.get(r.local_id) == r
    assert upgraded.owner("u") is None
    upgraded.set_owner("u", Owner(0o700, 1000, None))
    assert Journal(path).owner("u") == Owner(0o700, 1000, None)
    assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )


def test_schema_4_gains_folder_mtimes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    j.set_owner("u", Owner(0o700, 1000, None))
    j.close()
    db = sqlite3.connect(path)  # back to what version 4 wrote: owners without mtime_ns
    db.executescript(
        "ALTER TABLE owners DROP COLUMN mtime_ns;"
        + OLD_FILES
        + "UPDATE schema_version SET version = 4;"
    )
    db.close()
    upgraded = Journal(path)
    assert upgraded.owner("u") == Owner(0o700, 1000, None)
    upgraded.set_owner("folder", Owner(mtime_ns=1_500_000_000_123_456_789))
    upgraded.close()
    assert Journal(path).owner("folder") == Owner(mtime_ns=1_500_000_000_123_456_789)


def test_schema_6_gains_the_metadata_cache(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    r = j.new_file(parent_uuid="p", name="a")
    j.close()
    db = sqlite3.connect(path)  # back to what version 6 wrote: no kept listings
    db.executescript("DROP TABLE entries;" + BEFORE_8 + "UPDATE schema_version SET version = 6;")
    db.close()
    upgraded = Journal(path)
    assert upgraded.get(r.local_id) == r
    assert upgraded.entry_rows() == []
    row = EntryRow("f", 7, "root", "a.txt", False, 3, "obj", 1_000_000_123, 1_000_000_456, None)
    folder = EntryRow("root", 1, None, "", True, 0, None, 5, 5, 1234.5)
    upgraded.save_entries(["root"], [folder, row])
    upgraded.close()
    assert sorted(Journal(path).entry_rows(), key=lambda r: r.ino) == [folder, row]


def test_kept_entries_of_a_folder_are_replaced_and_keep_their_inode(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state.db")
    a = EntryRow("a", 2, "root", "a", False, 1, None, 0, 0, None)
    b = EntryRow("b", 3, "root", "b", False, 1, None, 0, 0, None)
    j.save_entries(["root"], [a, b])
    # b is gone from the folder's listing; c takes inode 3 (b's number is free again).
    c = EntryRow("c", 3, "root", "c", False, 1, None, 0, 0, None)
    j.save_entries(["root"], [a, c])
    assert sorted(j.entry_rows(), key=lambda r: r.uuid) == [a, c]


def test_owner_rows_follow_the_file_and_survive_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    r = j.new_file(parent_uuid="p", name="a", dirty=True)
    j.set_owner(local_owner_key(r.local_id), Owner(0o600, 7, 8))
    j.set_owner("folder", Owner(0o1777, None, None))
    j.update(r.local_id, remote_uuid="u1")  # published: the row moves to its uuid
    assert j.owner(local_owner_key(r.local_id)) is None
    assert j.owner("u1") == Owner(0o600, 7, 8)
    with pytest.raises(RuntimeError), j.transaction():
        j.set_owner("u1", Owner(0o777, 0, 0))
        j.set_owner("folder", None)
        raise RuntimeError
    assert j.owner("u1") == Owner(0o600, 7, 8) and j.owner("folder") == Owner(0o1777)
    # Not closed: like kill -9, the WAL holds the commits.
    j2 = Journal(path)
    assert j2.owner("u1") == Owner(0o600, 7, 8) and j2.owner("folder") == Owner(0o1777)
    r2 = j2.new_file(parent_uuid="p", name="b")
    j2.set_owner(local_owner_key(r2.local_id), Owner(0o644, 1, 1))
    j2.delete(r2.local_id)
    assert j2.owner(local_owner_key(r2.local_id)) is None
    j2.update(r.local_id, remote_uuid=None)  # remote entry deleted: back to the local key
    assert j2.owner("u1") is None
    assert j2.owner(local_owner_key(r.local_id)) == Owner(0o600, 7, 8)
    j2.update(r.local_id, remote_uuid="u2")
    assert j2.owner("u2") == Owner(0o600, 7, 8)
    j2.set_owner("u2", None)
    assert Journal(path).owner("u2") is None


def test_schema_5_loses_the_pending_generation_column(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    r = j.new_file(parent_uuid="p", name="a", dirty=True)
    r = j.update(r.local_id, pending_file_id="obj")
    j.close()
    db = sqlite3.connect(path)  # back to what version 5 wrote
    db.executescript(OLD_FILES + "UPDATE files SET pending_generation = 1;")
    db.executescript("UPDATE schema_version SET version = 5;")
    db.close()
    upgraded = Journal(path)
    assert upgraded.get(r.local_id) == r
    columns = [row[1] for row in upgraded._db.execute("PRAGMA table_info(files)")]
    assert "pending_generation" not in columns and "pending_file_id" in columns
    assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )
    upgraded.update(r.local_id, pending_file_id=None)
    upgraded.close()
    assert Journal(path).get(r.local_id).pending_file_id is None  # type: ignore[union-attr]


def test_schema_7_gains_the_held_state_of_files(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    new = j.new_file(parent_uuid="p", name="a", dirty=True)
    clean = j.new_file(parent_uuid="p", name="b", remote_uuid="u1")
    deleting = j.new_file(parent_uuid="p", name="c", remote_uuid="u2")
    deleting = j.update(deleting.local_id, deleted=True)
    j.close()
    db = sqlite3.connect(path)  # back to what version 7 wrote: no held column
    db.executescript(BEFORE_8 + "UPDATE schema_version SET version = 7;")
    db.close()
    upgraded = Journal(path)
    assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )
    # Every record keeps its state: nothing was held when version 7 wrote the cache.
    assert [upgraded.get(r.local_id) for r in (new, clean, deleting)] == [new, clean, deleting]
    assert [upgraded.get(r.local_id).state for r in (new, clean, deleting)] == [  # type: ignore[union-attr]
        FileState.NEW,
        FileState.CLEAN,
        FileState.DELETE_PENDING,
    ]
    held = upgraded.update(clean.local_id, deleted=True, held=True, name="aside")
    assert held.state is FileState.HELD
    upgraded.close()
    assert Journal(path).get(clean.local_id) == held


def test_schema_7_and_8_gain_the_queue_of_namespace_changes(tmp_path: Path) -> None:
    for version in (7, 8):
        path = tmp_path / f"state-{version}.db"
        j = Journal(path)
        r = j.new_file(parent_uuid="p", name="a")
        j.close()
        db = sqlite3.connect(path)  # back to what that version wrote: no queued changes
        older = BEFORE_8.removeprefix(BEFORE_9) if version == 7 else ""
        db.executescript(f"{BEFORE_9} {older} UPDATE schema_version SET version = {version};")
        db.close()
        upgraded = Journal(path)
        assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
            SCHEMA_VERSION,
        )
        assert upgraded.get(r.local_id) == r
        assert upgraded.ops() == []
        upgraded.close()
    upgraded = Journal(path)
    assert upgraded.ops() == []
    upgraded.add_op("mkdir", "folder", "offline-1", "root", "d", mtime_ns=5)
    upgraded.add_op("move", "file", "f-uuid", "offline-1", "b", old_parent_uuid="root")
    upgraded.close()
    assert [(o.op, o.uuid, o.parent_uuid) for o in Journal(path).ops()] == [
        ("mkdir", "offline-1", "root"),
        ("move", "f-uuid", "offline-1"),
    ]


def test_a_placeholder_becomes_the_real_uuid_everywhere_in_one_commit(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state.db")
    inside = j.new_file(parent_uuid="offline-1", name="f", dirty=True)
    elsewhere = j.new_file(parent_uuid="root", name="g", dirty=True)
    j.add_op("mkdir", "folder", "offline-1", "root", "d")
    j.add_op("mkdir", "folder", "offline-2", "offline-1", "e")
    j.add_op("move", "folder", "offline-1", "root", "d2", old_parent_uuid="root")
    j.set_owner("offline-1", Owner(mode=0o700))
    j.save_entries(
        ["root", "offline-1"],
        [
            EntryRow("offline-1", 5, "root", "d", True, 0, None, 1, 1, 10.0),
            EntryRow("offline-2", 6, "offline-1", "e", True, 0, None, 1, 1, 10.0),
        ],
    )
    j.substitute_uuid("offline-1", "real")
    for journal in (j, Journal(tmp_path / "state.db")):
        assert journal.get(inside.local_id).parent_uuid == "real"  # type: ignore[union-attr]
        assert journal.get(elsewhere.local_id).parent_uuid == "root"  # type: ignore[union-attr]
        assert [(o.uuid, o.parent_uuid) for o in journal.ops()] == [
            ("real", "root"),
            ("offline-2", "real"),
            ("real", "root"),
        ]
        assert journal.owner("real") == Owner(mode=0o700) and journal.owner("offline-1") is None
        rows = {r.uuid: r for r in journal.entry_rows()}
        assert rows["real"].ino == 5 and rows["offline-2"].parent_uuid == "real"
        assert "offline-1" not in rows


def test_schema_9_gains_the_maybe_sent_mark_of_queued_changes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    j.close()
    db = sqlite3.connect(path)  # back to what version 9 wrote: queue rows without the mark
    db.executescript(
        "ALTER TABLE namespace_ops DROP COLUMN maybe_sent;"
        + BEFORE_11
        + "INSERT INTO namespace_ops (op, kind, uuid, parent_uuid, name, old_parent_uuid,"
        " mtime_ns) VALUES ('mkdir', 'folder', 'offline-1', 'root', 'd', NULL, 5);"
        "UPDATE schema_version SET version = 9;"
    )
    db.close()
    upgraded = Journal(path)
    [op] = upgraded.ops()
    assert (op.op, op.uuid, op.maybe_sent) == ("mkdir", "offline-1", False)
    upgraded.add_op("mkdir", "folder", "offline-2", "root", "e", maybe_sent=True)
    assert [o.maybe_sent for o in upgraded.ops()] == [False, True]
    assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )


def test_schema_10_gains_the_blind_mark_of_files(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    j = Journal(path)
    r = j.new_file(parent_uuid="p", name="a", dirty=True)
    j.close()
    db = sqlite3.connect(path)  # back to what version 10 wrote: no blind column
    db.executescript(BEFORE_11 + "UPDATE schema_version SET version = 10;")
    db.close()
    upgraded = Journal(path)
    assert upgraded.get(r.local_id) == r and not r.blind
    made = upgraded.new_file(parent_uuid="p", name="b", blind=True)
    assert Journal(path).get(made.local_id) == made and made.blind
    assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )


def test_schema_11_gains_the_known_content_of_a_rename_overs_target(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Journal(path).close()
    db = sqlite3.connect(path)  # back to what version 11 wrote: rows without target_content
    db.executescript(
        BEFORE_12
        + "INSERT INTO replacements VALUES ('t', 'file', 'p', 'n.txt', 's', 4, 'replaced');"
        "UPDATE schema_version SET version = 11;"
    )
    db.close()
    upgraded = Journal(path)
    # A row from before: its target is deleted unchecked, as that version did.
    assert upgraded.replacements() == [Replacement("t", "file", "p", "n.txt", "s", 4, "replaced")]
    row = Replacement("u", "file", "p", "m.txt", "s2", None, ASIDE, '{"obj": 3}')
    upgraded.add_replacement(row)
    assert Journal(path).replacement("u") == row
    assert upgraded._db.execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )


@pytest.mark.parametrize("seed", range(20))
def test_dirty_index_equals_a_scan_after_random_changes(tmp_path: Path, seed: int) -> None:
    """(Review of ad0ecae.) Random new/update/delete/substitute_uuid, inside transactions
    that commit or roll back (nested too), and reopens: dirty_files() and records_in() always
    equal a scan of every record, in the records' order."""
    import random

    rnd = random.Random(seed)
    path = tmp_path / "state.db"
    j = Journal(path)

    def check(journal: Journal) -> None:
        scanned = [r.local_id for r in journal.all_files() if _has_something_to_send(r)]
        assert [r.local_id for r in journal.dirty_files()] == scanned
        # The parent index too (records_in, a listing's merge).
        for parent in {r.parent_uuid for r in journal.all_files()}:
            in_folder = [r.local_id for r in journal.all_files() if r.parent_uuid == parent]
            assert [r.local_id for r in journal.records_in(parent)] == in_folder

    def step() -> None:
        ids = [r.local_id for r in j.all_files()]
        kind = rnd.choice(["new", "update", "update", "update", "delete", "substitute"])
        if kind == "new" or not ids:
            j.new_file(parent_uuid=rnd.choice(["p", "q"]), name=f"n{rnd.random()}",
                       dirty=rnd.random() < 0.5,
                       remote_uuid=rnd.choice([None, f"u{rnd.random()}"]))  # fmt: skip
        elif kind == "update":
            i = rnd.choice(ids)
            fields: dict[str, object] = {}
            choices: list[tuple[str, list[object]]] = [
                ("dirty", [True, False]),
                ("deleted", [True, False]),
                ("held", [True, False]),
                ("remote_uuid", [None, f"r{i}"]),
                ("pending_file_id", [None, "pf"]),
                ("name", ["x", "y"]),
            ]
            for name, values in choices:
                if rnd.random() < 0.4:
                    fields[name] = rnd.choice(values)
            j.update(i, bump=rnd.random() < 0.2, **fields)
        elif kind == "delete":
            j.delete(rnd.choice(ids))
        else:
            j.substitute_uuid(rnd.choice(["p", "q"]), rnd.choice(["p", "q"]))

    for _ in range(60):
        if rnd.random() < 0.3:
            fail = rnd.random() < 0.5
            with contextlib.suppress(RuntimeError), j.transaction():
                for _ in range(rnd.randint(1, 5)):
                    if rnd.random() < 0.3:
                        with contextlib.suppress(RuntimeError), j.transaction():
                            step()
                            if rnd.random() < 0.3:
                                raise RuntimeError  # an inner block: rolls the outer back
                    step()
                if fail:
                    raise RuntimeError
        else:
            step()
        check(j)
        if rnd.random() < 0.05:
            j.close()
            j = Journal(path)
            check(j)
