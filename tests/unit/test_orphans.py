"""Orphan sweeper: which network objects may be deleted, and when (fs/orphans.py).

The end-to-end proof (crash, remount, flush, the bridge's usage back to the drive's) is in
``tests/e2e/test_durability.py``; these cases pin the rules, including the ones a crash test
cannot reach cheaply (a record gone, a drive entry that still points at the object).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from internxtfs.fs.journal import Journal
from internxtfs.fs.orphans import OrphanSweeper
from internxtfs.internxt.errors import NotFound, Unreachable


@dataclass
class Entry:
    file_id: str | None
    uuid: str = ""
    folder: str = ""
    name: str = ""


class FakeNetwork:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.fail: Exception | None = None
        self.existing: set[str] = set()

    async def info(self, file_id: str) -> str:
        if file_id not in self.existing:
            raise NotFound(f"Bucket entry {file_id} not found", status=404)
        return file_id

    async def delete(self, file_id: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.deleted.append(file_id)


class FakeDrive:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.trashed: list[str] = []

    def add(self, uuid: str, folder: str, name: str, file_id: str) -> None:
        self.entries[uuid] = Entry(file_id, uuid, folder, name)

    async def file_meta(self, uuid: str) -> Entry:
        if uuid not in self.entries:
            raise NotFound("File not found", status=404)
        return self.entries[uuid]

    async def files_exist(self, folder_uuid: str, names: list[str]) -> list[Entry]:
        return [e for e in self.entries.values() if e.folder == folder_uuid and e.name in names]

    async def delete_file(self, uuid: str) -> None:
        del self.entries[uuid]

    async def trash(self, items: list[tuple[str, str]]) -> None:
        for uuid, _ in items:
            self.trashed.append(uuid)
            del self.entries[uuid]


def make_parts(
    tmp_path: Path, delete_mode: str = "permanent"
) -> tuple[Journal, FakeNetwork, FakeDrive, OrphanSweeper]:
    journal = Journal(tmp_path / "state.db")
    network, drive = FakeNetwork(), FakeDrive()
    locks: dict[int, trio.Lock] = {}
    sweeper = OrphanSweeper(
        journal,
        network,
        drive,
        lambda i: locks.setdefault(i, trio.Lock()),
        delete_mode=delete_mode,
        interval=3600,
    )
    return journal, network, drive, sweeper


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Journal, FakeNetwork, FakeDrive, OrphanSweeper]:
    return make_parts(tmp_path)


async def test_unpublished_objects_go_at_once(parts: tuple) -> None:
    journal, network, _, sweeper = parts
    journal.add_orphan("never-sent", None, "unpublished")
    assert await sweeper.sweep() == 1
    assert network.deleted == ["never-sent"] and journal.orphans() == []
    assert sweeper.stats() == {"orphans": 0, "orphans_deleted": 1}


async def test_uncertain_object_waits_for_the_file_to_be_published_again(parts: tuple) -> None:
    journal, network, drive, sweeper = parts
    record = journal.new_file(parent_uuid="p", name="f", size=3, mtime_ns=1, dirty=True)
    journal.add_orphan("maybe", record.local_id, "uncertain")
    assert await sweeper.sweep() == 0  # still dirty: the entry may point at it
    journal.update(record.local_id, dirty=False, remote_uuid="E", remote_file_id="new")
    drive.entries["E"] = Entry("maybe")  # ... and the drive says it does
    assert await sweeper.sweep() == 0
    assert network.deleted == [] and journal.orphans() == []  # referenced: not an orphan


async def test_uncertain_object_goes_once_the_entry_points_elsewhere(parts: tuple) -> None:
    journal, network, drive, sweeper = parts
    record = journal.new_file(parent_uuid="p", name="f", size=3, mtime_ns=1, dirty=False)
    journal.update(record.local_id, remote_uuid="E", remote_file_id="new")
    journal.add_orphan("maybe", record.local_id, "uncertain")
    drive.entries["E"] = Entry("new")
    network.fail = Unreachable("down")
    assert await sweeper.sweep() == 0
    assert journal.orphans() == [("maybe", record.local_id, "uncertain")]  # tried again later
    network.fail = None
    assert await sweeper.sweep() == 1
    assert network.deleted == ["maybe"] and journal.orphans() == []


async def test_uncertain_object_of_a_vanished_file_is_kept_while_it_exists(
    parts: tuple,
) -> None:
    journal, network, _, sweeper = parts
    journal.add_orphan("unknown", 12345, "uncertain")
    network.existing.add("unknown")
    assert await sweeper.sweep() == 0
    assert network.deleted == [] and len(journal.orphans()) == 1
    assert sweeper.stats()["orphans"] == 1
    network.existing.clear()  # its entry was deleted, and the object with it
    assert await sweeper.sweep() == 0
    assert network.deleted == [] and journal.orphans() == []


async def test_ghost_of_a_lost_create_goes_once_the_file_is_stored_elsewhere(
    parts: tuple,
) -> None:
    """A create landed (entry G at p/f.txt -> "lost") but its answer never came; the file was
    then renamed to q/g.txt and stored there as E -> "new". G is a ghost of the old name: it
    goes, and its object with it; the file's own entry stays."""
    journal, network, drive, sweeper = parts
    record = journal.new_file(parent_uuid="q", name="g.txt", size=3, mtime_ns=1, dirty=False)
    journal.update(record.local_id, remote_uuid="E", remote_file_id="new")
    journal.add_orphan("lost", record.local_id, "uncertain", parent_uuid="p", name="f.txt")
    drive.add("G", "p", "f.txt", "lost")
    drive.add("E", "q", "g.txt", "new")
    assert await sweeper.sweep() == 1
    assert sorted(drive.entries) == ["E"] and network.deleted == ["lost"]
    assert journal.orphans() == []


async def test_ghost_of_an_unlinked_file_goes_to_the_trash_in_trash_mode(tmp_path: Path) -> None:
    journal, network, drive, sweeper = make_parts(tmp_path, delete_mode="trash")
    journal.add_orphan("lost", 999, "uncertain", parent_uuid="p", name="f.txt")
    drive.add("G", "p", "f.txt", "lost")
    network.existing.add("lost")
    assert await sweeper.sweep() == 0
    # The trash holds the entry and so the object: the object itself is not deleted.
    assert drive.trashed == ["G"] and network.deleted == [] and journal.orphans() == []


async def test_the_file_own_entry_is_never_taken_for_a_ghost(parts: tuple) -> None:
    """The lost create was adopted (the same entry E now points at "new"): nothing at the
    aimed-at place but the file's own entry, which stays."""
    journal, network, drive, sweeper = parts
    record = journal.new_file(parent_uuid="p", name="f.txt", size=3, mtime_ns=1, dirty=False)
    journal.update(record.local_id, remote_uuid="E", remote_file_id="new")
    journal.add_orphan("lost", record.local_id, "uncertain", parent_uuid="p", name="f.txt")
    drive.add("E", "p", "f.txt", "new")
    assert await sweeper.sweep() == 1
    assert sorted(drive.entries) == ["E"] and network.deleted == ["lost"]


async def test_a_failing_sweep_never_ends_the_task(parts: tuple) -> None:
    journal, network, _, sweeper = parts
    journal.add_orphan("x", None, "unpublished")
    network.fail = RuntimeError("anything at all")
    assert await sweeper.sweep() == 0
    journal.close()  # even the journal failing is only logged
    assert await sweeper.sweep() == 0
