"""Metadata: the first listing of a folder shown from the metadata cache, under replica lag.

A folder restored from the metadata cache (a remount) is listed again in the background; that
listing waits out the lag of our own writes in the folder first, and then wins over the kept
view. A file of ours published while it waited is in neither the (lagging) listing nor the
files not uploaded yet: it must not vanish from the folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import trio

from internxtfs.fs.inodes import ROOT_INODE, InodeTable
from internxtfs.fs.journal import EntryRow, Journal
from internxtfs.fs.metadata import SAVED_CLEANLY, Metadata

ROOT = "root-uuid"
WINDOW = 1.0


@dataclass
class Entry:
    uuid: str
    name: str
    size: int
    file_id: str | None
    modified: float = 1_600_000_000.0
    created: float = 1_600_000_000.0
    status: str = "EXISTS"
    folder_uuid: str = ROOT


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


async def test_a_file_published_while_a_restored_folders_listing_waits_stays(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    journal = Journal(tmp_path / "state.db")
    # The last run kept the root's view (empty) and ended cleanly: a warm start.
    journal.save_entries(
        [ROOT],
        [EntryRow(ROOT, ROOT_INODE, None, "", True, 0, None, 0, 0, time.time() - 60)],
    )
    journal.set_meta(SAVED_CLEANLY, "1")
    drive = LaggingDrive()
    table = InodeTable(ROOT, 0)
    meta = Metadata(drive, table, journal, 30.0, trio.current_time)  # type: ignore[arg-type]
    assert meta.restore() == 1
    root = table.get(ROOT_INODE)
    assert root is not None
    # A file stored in the root a moment ago: its listing waits for the replicas first.
    journal.new_file(parent_uuid=ROOT, name="a.txt", size=1, remote_uuid="A",
                     remote_file_id="obj-A", remote_size=1)  # fmt: skip
    drive.create("A", "a.txt")

    async def publish_b() -> None:
        # Meanwhile another file of ours is stored there (its upload ends during that wait).
        await trio.sleep(WINDOW / 2)
        journal.new_file(parent_uuid=ROOT, name="b.txt", size=1, remote_uuid="B",
                         remote_file_id="obj-B", remote_size=1)  # fmt: skip
        drive.create("B", "b.txt")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish_b)
        await meta.children(root, ask_server=True)
    assert drive.listings == 1
    assert sorted(root.children or {}) == ["a.txt", "b.txt"]
