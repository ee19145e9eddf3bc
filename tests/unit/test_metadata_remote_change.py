"""Metadata: a file whose content another client replaced in place, vs. our own fresh upload.

Internxt overwrites keep the entry's uuid and point it at a new network object (our uploader
does that too). A listing that shows a new object for a file we hold clean cached blocks of
must drop those blocks; a listing fetched while our own uploader published must not undo it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from internxtfs.fs.inodes import InodeTable, Node
from internxtfs.fs.journal import Journal
from internxtfs.fs.metadata import Metadata
from internxtfs.internxt.errors import NotFound
from tests.harness.fake_remote import NoLag

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
    status: str = "EXISTS"
    folder_uuid: str = ROOT


class Drive(NoLag):
    """Serves one file entry; ``gate`` (when set) holds the file listing or meta in flight;
    ``entry`` None: the file is gone (its meta is 404)."""

    def __init__(self, entry: Entry | None) -> None:
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
        return [] if entry is None else [entry]

    async def file_meta(self, uuid: str) -> Entry:
        entry = self.entry
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if entry is None or entry.uuid != uuid:
            raise NotFound("File not found", status=404)
        return entry


def _setup(tmp_path: Path, drive: Drive) -> tuple[Journal, InodeTable, Metadata, list[int]]:
    journal = Journal(tmp_path / "state.db")
    table = InodeTable(ROOT, 0)
    invalidated: list[int] = []
    clock = [100.0]  # monotonic time is far from 0 (invalidate() sets listed_at to 0)

    def changed(node: Node, local_id: int) -> Node:
        invalidated.append(local_id)
        return node

    meta = Metadata(drive, table, journal, 1.0, lambda: clock[0], changed)
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
    await _published_while_listed(tmp_path, Drive(Entry(FILE, "f.bin", 10, "old-object")))


async def _published_while_listed(
    tmp_path: Path,
    drive: Drive,
    meanwhile: Callable[[InodeTable, Metadata], Awaitable[None]] | None = None,
) -> Journal:
    """Our uploader publishes new content of f.bin while the root's (now stale) listing is
    in flight (after ``meanwhile`` ran): the listing must change nothing, and the view shows
    our content."""
    journal, table, meta, invalidated = _setup(tmp_path, drive)
    root = table.get(1)
    assert root is not None
    (record,) = journal.all_files()
    drive.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(meta.lookup, root, "f.bin")
        await drive.started.wait()
        if meanwhile is not None:
            await meanwhile(table, meta)
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
    return journal


# --- a read met a missing network object: the entry is read again (refresh_file) ----------


async def _looked_up(tmp_path: Path) -> tuple[Drive, Journal, InodeTable, Metadata, list[int]]:
    drive = Drive(Entry(FILE, "f.bin", 10, "old-object"))
    journal, table, meta, invalidated = _setup(tmp_path, drive)
    root = table.get(1)
    assert root is not None
    assert await meta.lookup(root, "f.bin") is not None
    assert invalidated == []
    return drive, journal, table, meta, invalidated


async def test_missing_object_reads_the_new_content_from_the_entry(tmp_path: Path) -> None:
    drive, journal, table, meta, invalidated = await _looked_up(tmp_path)
    node = table.by_uuid(FILE)
    assert node is not None
    drive.entry = Entry(FILE, "f.bin", 25, "new-object", modified=1_600_000_100.0)
    assert await meta.refresh_file(node) == "replaced"
    (record,) = journal.all_files()
    assert invalidated == [record.local_id]
    assert (record.remote_file_id, record.size, record.remote_valid_len) == ("new-object", 25, 25)
    assert (node.size, node.file_id, node.mtime_ns) == (25, "new-object", 1_600_000_100 * 10**9)


@pytest.mark.parametrize("status", ["gone", "TRASHED", "DELETED"])
async def test_missing_object_of_a_deleted_file_lists_the_folder_again(
    tmp_path: Path, status: str
) -> None:
    drive, journal, table, meta, invalidated = await _looked_up(tmp_path)
    node, root = table.by_uuid(FILE), table.get(1)
    assert node is not None and root is not None and meta.is_fresh(root)
    drive.entry = None if status == "gone" else Entry(FILE, "f.bin", 10, "old", status=status)
    assert await meta.refresh_file(node) == "gone"
    assert not meta.is_fresh(root)  # the next lookup asks the server, whatever the TTL
    assert invalidated == []
    (record,) = journal.all_files()
    assert record.remote_file_id == "old-object"
    if status == "gone":
        assert await meta.lookup(root, "f.bin") is None


async def test_missing_object_never_overrides_unsent_or_newer_local_content(
    tmp_path: Path,
) -> None:
    drive, journal, table, meta, invalidated = await _looked_up(tmp_path)
    node = table.by_uuid(FILE)
    assert node is not None and node.local_id is not None
    drive.entry = Entry(FILE, "f.bin", 25, "new-object")
    # Unsent changes here: the uploader's conflict handling keeps both, not this refresh.
    journal.update(node.local_id, dirty=True)
    assert await meta.refresh_file(node) == "kept"
    drive.entry = None  # nor when the file was deleted elsewhere: stored again, not dropped
    assert await meta.refresh_file(node) == "kept"
    drive.entry = Entry(FILE, "f.bin", 25, "new-object")
    journal.update(node.local_id, dirty=False)
    # Our own upload published while the meta request was in flight: its answer is older.
    drive.gate = trio.Event()
    drive.started = trio.Event()
    found: list[str] = []

    async def refresh() -> None:
        found.append(await meta.refresh_file(node))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresh)
        await drive.started.wait()
        journal.update(node.local_id, size=40, remote_file_id="ours", remote_size=40)
        drive.gate.set()
    assert found == ["kept"]
    assert invalidated == []
    record = journal.get(node.local_id)
    assert record is not None and (record.remote_file_id, record.size) == ("ours", 40)


async def test_missing_object_that_the_entry_still_names_changes_nothing(tmp_path: Path) -> None:
    _, _, table, meta, invalidated = await _looked_up(tmp_path)
    node = table.by_uuid(FILE)
    assert node is not None
    # Lost on the network, not replaced: nothing to change, the read's ESTALE stands.
    assert await meta.refresh_file(node) == "kept"
    assert invalidated == []


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


async def test_missing_object_right_after_our_own_write_is_not_taken_for_theirs(
    tmp_path: Path,
) -> None:
    """A read replica may answer the meta of a file we changed a moment ago with the version
    before our change: within the window that answer is not another client's replacement."""
    drive, journal, table, meta, invalidated = await _looked_up(tmp_path)
    node = table.by_uuid(FILE)
    assert node is not None
    meta.recently_written = lambda uuid: uuid == FILE
    drive.entry = Entry(FILE, "f.bin", 7, "older-object")
    assert await meta.refresh_file(node) == "kept"
    assert invalidated == []
    (record,) = journal.all_files()
    assert record.remote_file_id == "old-object"


SUB = "sub-uuid"


class _TwoFolders(Drive):
    """Drive, plus an empty folder ``SUB`` whose listing answers at once."""

    async def list_files(self, folder_uuid: str) -> list[Entry]:
        if folder_uuid == SUB:
            return []
        return await super().list_files(folder_uuid)


async def test_listing_older_than_our_upload_changes_nothing_while_another_folder_is_listed(
    tmp_path: Path,
) -> None:
    """Two listings in flight at once (Journal.watch nests): the one of another folder,
    started after ours and done before it, must not end our watch of the records."""

    async def list_sub(table: InodeTable, meta: Metadata) -> None:
        sub = table.new_node(is_dir=True, parent=1, name="sub", uuid=SUB)
        assert await meta.lookup(sub, "anything") is None  # listed while root's is in flight

    journal = await _published_while_listed(
        tmp_path, _TwoFolders(Entry(FILE, "f.bin", 10, "old-object")), list_sub
    )
    assert getattr(journal, "_watches", []) == []
