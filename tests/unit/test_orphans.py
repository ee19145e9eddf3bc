"""Orphan sweeper: which network objects may be deleted, and when (fs/orphans.py).

The end-to-end proof (crash, remount, flush, the bridge's usage back to the drive's) is in
``tests/e2e/test_durability.py``; these cases pin the rules, including the ones a crash test
cannot reach cheaply (a record gone, a drive entry that still points at the object).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from internxtfs.fs.journal import Journal, Orphan
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.modes import DeleteMode
from internxtfs.fs.orphans import OrphanSweeper
from internxtfs.internxt.errors import Unreachable
from tests.harness.fake_remote import FailingRemote, FakeRemote

Parts = tuple[Journal, FailingRemote, FakeRemote, OrphanSweeper]


def make_parts(tmp_path: Path, delete_mode: str = "permanent") -> Parts:
    journal = Journal(tmp_path / "state.db")
    fake = FakeRemote(delete_mode=DeleteMode(delete_mode))
    remote = FailingRemote(fake)
    sweeper = OrphanSweeper(journal, remote, KeyedLock(), interval=3600)
    return journal, remote, fake, sweeper


def deleted(fake: FakeRemote) -> list[str]:
    """Objects the sweeper deleted itself."""
    return [call.split()[1] for call in fake.calls if call.startswith("delete_object ")]


def existing(fake: FakeRemote) -> list[str]:
    return sorted(uuid for uuid, entry in fake.files.items() if entry.status == "EXISTS")


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return make_parts(tmp_path)


async def test_unpublished_objects_go_at_once(parts: tuple) -> None:
    journal, _, fake, sweeper = parts
    journal.add_orphan("never-sent", None, "unpublished")
    assert await sweeper.sweep() == 1
    assert deleted(fake) == ["never-sent"] and journal.orphan_rows() == []
    assert sweeper.stats() == {"orphans": 0, "orphans_deleted": 1}


async def test_uncertain_object_waits_for_the_file_to_be_published_again(parts: tuple) -> None:
    journal, _, fake, sweeper = parts
    record = journal.new_file(parent_uuid="p", name="f", size=3, mtime_ns=1, dirty=True)
    journal.add_orphan("maybe", record.local_id, "uncertain")
    assert await sweeper.sweep() == 0  # still dirty: the entry may point at it
    journal.update(record.local_id, dirty=False, remote_uuid="E", remote_file_id="new")
    fake.add_file("p", "f", b"abc", uuid="E", file_id="maybe")  # ... and the drive says so
    assert await sweeper.sweep() == 0
    assert deleted(fake) == [] and journal.orphan_rows() == []  # referenced: not an orphan


async def test_uncertain_object_goes_once_the_entry_points_elsewhere(parts: tuple) -> None:
    journal, remote, fake, sweeper = parts
    record = journal.new_file(parent_uuid="p", name="f", size=3, mtime_ns=1, dirty=False)
    journal.update(record.local_id, remote_uuid="E", remote_file_id="new")
    journal.add_orphan("maybe", record.local_id, "uncertain")
    fake.add_file("p", "f", b"abc", uuid="E", file_id="new")
    remote.fail("delete_object", Unreachable("down"))
    assert await sweeper.sweep() == 0
    # Tried again later.
    assert journal.orphan_rows() == [Orphan("maybe", record.local_id, "uncertain")]
    assert await sweeper.sweep() == 1
    assert deleted(fake) == ["maybe"] and journal.orphan_rows() == []


async def test_uncertain_object_of_a_vanished_file_is_kept_while_it_exists(
    parts: tuple,
) -> None:
    journal, _, fake, sweeper = parts
    journal.add_orphan("unknown", 12345, "uncertain")
    fake.objects["unknown"] = b"abc"
    assert await sweeper.sweep() == 0
    assert deleted(fake) == [] and len(journal.orphan_rows()) == 1
    assert sweeper.stats()["orphans"] == 1
    del fake.objects["unknown"]  # its entry was deleted, and the object with it
    assert await sweeper.sweep() == 0
    assert deleted(fake) == [] and journal.orphan_rows() == []


async def test_ghost_of_a_lost_create_goes_once_the_file_is_stored_elsewhere(
    parts: tuple,
) -> None:
    """A create landed (entry G at p/f.txt -> "lost") but its answer never came; the file was
    then renamed to q/g.txt and stored there as E -> "new". G is a ghost of the old name: it
    goes, and its object with it; the file's own entry stays."""
    journal, _, fake, sweeper = parts
    record = journal.new_file(parent_uuid="q", name="g.txt", size=3, mtime_ns=1, dirty=False)
    journal.update(record.local_id, remote_uuid="E", remote_file_id="new")
    journal.add_orphan("lost", record.local_id, "uncertain", parent_uuid="p", name="f.txt")
    fake.add_file("p", "f.txt", b"old", uuid="G", file_id="lost")
    fake.add_file("q", "g.txt", b"new", uuid="E", file_id="new")
    assert await sweeper.sweep() == 1
    assert existing(fake) == ["E"] and deleted(fake) == ["lost"]
    assert journal.orphan_rows() == []


async def test_ghost_of_an_unlinked_file_goes_to_the_trash_in_trash_mode(tmp_path: Path) -> None:
    journal, _, fake, sweeper = make_parts(tmp_path, delete_mode="trash")
    journal.add_orphan("lost", 999, "uncertain", parent_uuid="p", name="f.txt")
    fake.add_file("p", "f.txt", b"old", uuid="G", file_id="lost")
    assert await sweeper.sweep() == 0
    # The trash holds the entry and so the object: the object itself is not deleted.
    assert fake.files["G"].status == "TRASHED" and "lost" in fake.objects
    assert deleted(fake) == [] and journal.orphan_rows() == []


async def test_the_file_own_entry_is_never_taken_for_a_ghost(parts: tuple) -> None:
    """The lost create was adopted (the same entry E now points at "new"): nothing at the
    aimed-at place but the file's own entry, which stays."""
    journal, _, fake, sweeper = parts
    record = journal.new_file(parent_uuid="p", name="f.txt", size=3, mtime_ns=1, dirty=False)
    journal.update(record.local_id, remote_uuid="E", remote_file_id="new")
    journal.add_orphan("lost", record.local_id, "uncertain", parent_uuid="p", name="f.txt")
    fake.add_file("p", "f.txt", b"new", uuid="E", file_id="new")
    assert await sweeper.sweep() == 1
    assert existing(fake) == ["E"] and deleted(fake) == ["lost"]


async def test_a_failing_sweep_never_ends_the_task(parts: tuple) -> None:
    journal, remote, _, sweeper = parts
    journal.add_orphan("x", None, "unpublished")
    remote.fail("delete_object", RuntimeError("anything at all"), times=2)
    assert await sweeper.sweep() == 0
    journal.close()  # even the journal failing is only logged
    assert await sweeper.sweep() == 0
