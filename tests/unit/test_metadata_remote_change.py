"""Metadata: a file whose content another client replaced in place, vs. our own fresh upload.

Internxt overwrites keep the entry's uuid and point it at a new network object (our uploader
does that too). A listing that shows a new object for a file we hold clean cached blocks of
must drop those blocks; a listing fetched while our own uploader published must not undo it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trio

from internxtfs.fs.inodes import InodeTable
from internxtfs.fs.journal import Journal
from internxtfs.fs.metadata import Metadata

ROOT = "root-uuid"
FILE = "file-uuid"


@dataclass
class Entry:
    uuid: str
    name: str
    size: int
    file_id: str | None
    modified: float = 1_600_000_000.0
    created: float = 1_600_000_000.0


class Drive:
    """Serves one file entry; ``gate`` (when set) holds the file listing in flight."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.gate: trio.Event | None = None
        self.started = trio.Event()

    async def list_folders(self, folder_uuid: str) -> list[Entry]:
        return []

    async def list_files(self, folder_uuid: str) -> list[Entry]:
        entry = self.entry  # what the server answered when the request was made
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return [entry]


def _setup(tmp_path: Path, drive: Drive) -> tuple[Journal, InodeTable, Metadata, list[int]]:
    journal = Journal(tmp_path / "state.db")
    table = InodeTable(ROOT, 0)
    invalidated: list[int] = []
    clock = [0.0]
    meta = Metadata(drive, table, journal, 1.0, lambda: clock[0], invalidated.append)
    # A file we have read before: a clean record pointing at the object we cached blocks of.
    journal.new_file(
        parent_uuid=ROOT,
        name="f.bin",
        size=10,
        mtime_ns=1_600_000_000_000_000_000,
        remote_uuid=FILE,
        remote_file_id="old-object",
        remote_size=10,
    )
    return journal, table, meta, invalidated


async def test_content_replaced_elsewhere_drops_cached_blocks(tmp_path: Path) -> None:
    drive = Drive(Entry(FILE, "f.bin", 25, "new-object", modified=1_600_000_100.0))
    journal, table, meta, invalidated = _setup(tmp_path, drive)
    root = table.get(1)
    assert root is not None
    node = await meta.lookup(root, "f.bin")
    assert node is not None
    (record,) = journal.all_files()
    assert invalidated == [record.local_id]
    assert (record.remote_file_id, record.remote_size, record.remote_valid_len) == (
        "new-object",
        25,
        25,
    )
    assert (record.size, record.dirty) == (25, False)
    assert (node.size, node.file_id, node.mtime_ns) == (25, "new-object", 1_600_000_100 * 10**9)


async def test_listing_older_than_our_upload_changes_nothing(tmp_path: Path) -> None:
    drive = Drive(Entry(FILE, "f.bin", 10, "old-object"))
    journal, table, meta, invalidated = _setup(tmp_path, drive)
    root = table.get(1)
    assert root is not None
    (record,) = journal.all_files()
    drive.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(meta.lookup, root, "f.bin")
        await drive.started.wait()
        # Our uploader publishes new content while the (now stale) listing is in flight.
        journal.update(record.local_id, size=40, remote_file_id="ours", remote_size=40)
        journal.update(record.local_id, remote_valid_len=40)
        drive.gate.set()
    node = await meta.lookup(root, "f.bin")
    assert node is not None
    assert invalidated == []
    current = journal.get(record.local_id)
    assert current is not None
    assert (current.remote_file_id, current.size) == ("ours", 40)
    assert (node.size, node.file_id) == (40, "ours")


async def test_listing_older_than_our_delete_of_an_emptied_file_keeps_it_empty(
    tmp_path: Path,
) -> None:
    """An emptied file is deleted and created anew (Internxt cannot replace to empty). A
    listing fetched before the delete, merged after it, must not bring the old size back."""
    drive = Drive(Entry(FILE, "f.bin", 10, "old-object"))
    journal, table, meta, _ = _setup(tmp_path, drive)
    root = table.get(1)
    assert root is not None
    (record,) = journal.all_files()
    node = await meta.lookup(root, "f.bin")
    assert node is not None and node.size == 10
    root.listed_at = -10.0  # the listing is older than the TTL
    drive.started = trio.Event()
    node.size = 0  # truncated to 0 on the mount
    journal.update(record.local_id, size=0, dirty=True)
    drive.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(meta.children, root)
        await drive.started.wait()
        # The uploader deletes the entry and has not created the empty one yet.
        journal.update(record.local_id, remote_uuid=None)
        drive.gate.set()
    assert root.children == {"f.bin": node.ino}
    assert node.size == 0
