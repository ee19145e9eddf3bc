"""Metadata: the first listing of a folder shown from the metadata cache, under replica lag.

A folder restored from the metadata cache (a remount) is listed again in the background; that
listing waits out the lag of our own writes in the folder first, and then wins over the kept
view. A file of ours published while it waited is in neither the (lagging) listing nor the
files not uploaded yet: it must not vanish from the folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from internxtfs.fs.inodes import ROOT_INODE, InodeTable, Node
from internxtfs.fs.journal import EntryRow, Journal
from internxtfs.fs.metadata import SAVED_CLEANLY, Metadata
from tests.unit.test_metadata_remote_change import Entry

ROOT = "root-uuid"
WINDOW = 1.0


class LaggingDrive:
    """Lists the root as it was ``WINDOW`` seconds ago (a read replica), and remembers our
    writes as internxt/consistency.py does (its window is the replicas' lag here)."""

    def __init__(self) -> None:
        self.folder_written = -1e9
        self.entries_written: dict[str, float] = {}
        self.files: list[tuple[float, Entry]] = []
        self.listings = 0

    def create(self, uuid: str, name: str) -> None:
        now = trio.current_time()
        self.files.append((now, Entry(uuid, name, 1, f"obj-{uuid}")))
        self.folder_written = now
        self.entries_written[uuid] = now

    def listing_lag(self, folder_uuid: str) -> float:
        return max(0.0, self.folder_written + WINDOW - trio.current_time())

    def recently_written(self, uuid: str) -> bool:
        return trio.current_time() - self.entries_written.get(uuid, -1e9) < WINDOW

    def recently_deleted(self, uuid: str) -> bool:
        return False

    def offline(self) -> bool:
        return False

    async def list_folders(self, folder_uuid: str) -> list[Entry]:
        return []

    async def list_files(self, folder_uuid: str) -> list[Entry]:
        self.listings += 1
        now = trio.current_time()
        return [entry for written, entry in self.files if written <= now - WINDOW]


def _restored_root(tmp_path: Path, drive: LaggingDrive) -> tuple[Journal, Metadata, Node]:
    """The mount's start over a metadata cache that holds the root's view (empty) of a
    last run that ended cleanly: a warm start."""
    journal = _cache(tmp_path)
    return journal, *_start(journal, drive)


def _cache(tmp_path: Path) -> Journal:
    journal = Journal(tmp_path / "state.db")
    journal.save_entries(
        [ROOT],
        [EntryRow(ROOT, ROOT_INODE, None, "", True, 0, None, 0, 0, time.time() - 60)],
    )
    journal.set_meta(SAVED_CLEANLY, "1")
    return journal


def _start(journal: Journal, drive: LaggingDrive) -> tuple[Metadata, Node]:
    table = InodeTable(ROOT, 0)
    meta = Metadata(drive, table, journal, 30.0, trio.current_time)  # type: ignore[arg-type]
    assert meta.restore() == 1
    root = table.get(ROOT_INODE)
    assert root is not None
    return meta, root


def _stored(journal: Journal, drive: LaggingDrive, uuid: str, name: str) -> None:
    """Our uploader publishes a new file in the root."""
    journal.new_file(parent_uuid=ROOT, name=name, size=1, remote_uuid=uuid,
                     remote_file_id=f"obj-{uuid}", remote_size=1)  # fmt: skip
    drive.create(uuid, name)


async def test_a_file_published_while_a_restored_folders_listing_waits_stays(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    drive = LaggingDrive()
    journal, meta, root = _restored_root(tmp_path, drive)
    # A file stored in the root a moment ago: its listing waits for the replicas first.
    _stored(journal, drive, "A", "a.txt")

    async def publish_b() -> None:
        # Meanwhile another file of ours is stored there (its upload ends during that wait).
        await trio.sleep(WINDOW / 2)
        _stored(journal, drive, "B", "b.txt")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish_b)
        await meta.children(root, ask_server=True)
    assert drive.listings == 1
    assert sorted(root.children or {}) == ["a.txt", "b.txt"]


async def test_an_entry_the_crash_recovery_moved_away_is_not_listed_by_its_old_record(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A file the last run stored here, whose entry the crash recovery of this run moved
    away a moment ago (a rename cut short by the crash): its record, not updated yet, still
    names this folder, and must not bring it back (nor hide what holds its name now)."""
    drive = LaggingDrive()
    journal = _cache(tmp_path)
    journal.new_file(parent_uuid=ROOT, name="moved.txt", size=1, remote_uuid="M",
                     remote_file_id="obj-M", remote_size=1)  # fmt: skip
    meta, root = _start(journal, drive)
    _stored(journal, drive, "A", "a.txt")  # (a write in the root: its listing waits)

    async def recover() -> None:
        await trio.sleep(WINDOW / 2)
        drive.entries_written["M"] = trio.current_time()  # moved elsewhere: not listed here

    async with trio.open_nursery() as nursery:
        nursery.start_soon(recover)
        await meta.children(root, ask_server=True)
    assert drive.listings == 1
    assert sorted(root.children or {}) == ["a.txt"]


def test_a_file_republished_after_the_last_save_is_restored_by_its_record(
    tmp_path: Path,
) -> None:
    """The last run published new content of a file after its last save of the metadata
    cache, then crashed: the kept row names the old object, the record the new one. The
    record is newer (rows are saved from the records): the view shows it, and the cache is
    still used (before the listing-scan change this raised AttributeError in _merge and the
    mount listed every folder again)."""
    journal = Journal(tmp_path / "state.db")
    journal.save_entries(
        [ROOT],
        [
            EntryRow(ROOT, ROOT_INODE, None, "", True, 0, None, 0, 0, time.time() - 60),
            EntryRow("F", 2, ROOT, "f.txt", False, 10, "old-object", 0, 0, None),
        ],
    )
    journal.new_file(parent_uuid=ROOT, name="f.txt", size=40, remote_uuid="F",
                     remote_file_id="ours", remote_size=40, dirty=False)  # fmt: skip
    table = InodeTable(ROOT, 0)
    meta = Metadata(LaggingDrive(), table, journal, 30.0, time.monotonic)  # type: ignore[arg-type]
    assert meta.restore() == 1
    root = table.get(ROOT_INODE)
    assert root is not None and root.children is not None
    node = table.get(root.children["f.txt"])
    assert node is not None
    assert (node.size, node.file_id) == (40, "ours")
