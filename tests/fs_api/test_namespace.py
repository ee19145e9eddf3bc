"""rename(2) over a file, unlink while open, and a conflict with another client, through the
handlers over the in-memory remote (tier 2: no kernel)."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from internxtfs.fs.lifecycle import FileState
from internxtfs.fs.replacement import aside_name
from tests.fs_api.conftest import make, serving
from tests.harness.fake_remote import ROOT, FakeRemote
from tests.harness.in_process import InProcess, build


def _fake(m: InProcess) -> FakeRemote:
    return m.remote.inner  # type: ignore[no-any-return]


async def test_rename_over_a_stored_file_leaves_the_new_content_alone_under_the_name(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        await mounted.write_file("a", b"new content")
        await mounted.write_file("b", b"old content")
        assert await mounted.uploader.wait_idle() == {}
        await mounted.rename("a", "b")
        assert await mounted.listdir() == ["b"]
        assert await mounted.read_all(await mounted.lookup("b")) == b"new content"
        assert await mounted.fs.replacements.resolve_all() == 0  # the old target's delete
    assert fake.names(ROOT) == ["b"] and fake.content(ROOT, "b") == b"new content"
    assert list(fake.objects.values()) == [b"new content"]  # the old object went with it


async def test_rename_over_a_file_not_stored_yet_sends_only_the_source(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        await mounted.write_file("a", b"stored")
        assert await mounted.uploader.wait_idle() == {}
        await mounted.write_file("b", b"never sent")
        await mounted.rename("a", "b")
        assert await mounted.uploader.wait_idle() == {}
    assert fake.names(ROOT) == ["b"] and fake.content(ROOT, "b") == b"stored"
    assert not any(call.startswith("upload 10") for call in fake.calls)  # "never sent" was not


async def test_unlink_while_open_keeps_the_content_readable_until_the_last_close(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    data = os.urandom(300_000)
    async with serving(mounted):
        ino = await mounted.write_file("f", data)
        assert await mounted.uploader.wait_idle() == {}
        uuid = fake.file_at(ROOT, "f").uuid  # type: ignore[union-attr]
        fh = await mounted.open(ino)
        await mounted.unlink("f")
        assert await mounted.listdir() == []
        # Moved aside, so the name is free for a new file at once.
        assert fake.names(ROOT) == [aside_name(uuid)]
        await mounted.write_file("f", b"another file")
        # What the descriptor reads comes from the entry kept aside, not the cache.
        local_id = mounted.fs.table.get(ino).local_id  # type: ignore[union-attr]
        mounted.cache.invalidate(local_id)
        assert await mounted.fs.read(fh, 0, len(data)) == data
        await mounted.fs.release(fh)
        assert await mounted.uploader.wait_idle() == {}
    assert fake.names(ROOT) == ["f"] and fake.content(ROOT, "f") == b"another file"
    assert data not in fake.objects.values()
    assert mounted.journal.get(local_id) is None  # its record and cache went too
    assert len(mounted.fs.locks) == 0  # no file lock left behind


async def test_unlink_in_trash_mode_moves_the_entry_to_the_trash(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    mounted = make(tmp_path, delete_mode="trash")
    fake = _fake(mounted)
    async with serving(mounted):
        await mounted.write_file("f", b"keep me in the trash")
        assert await mounted.uploader.wait_idle() == {}
        uuid = fake.file_at(ROOT, "f").uuid  # type: ignore[union-attr]
        await mounted.unlink("f")
        assert await mounted.uploader.wait_idle() == {}
    assert fake.files[uuid].status == "TRASHED" and fake.names(ROOT) == []
    assert b"keep me in the trash" in fake.objects.values()


async def test_a_file_changed_elsewhere_while_it_had_unsent_changes_keeps_both(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        ino = await mounted.write_file("notes.txt", b"base")
        assert await mounted.uploader.wait_idle() == {}
        uuid = fake.file_at(ROOT, "notes.txt").uuid  # type: ignore[union-attr]
        fh = await mounted.open(ino, os.O_WRONLY)
        await mounted.fs.write(fh, 0, b"ours")
        fake.replace_elsewhere(uuid, b"theirs")
        await mounted.fs.release(fh)
        assert await mounted.uploader.wait_idle() == {}
    names = fake.names(ROOT)
    assert len(names) == 2 and "notes.txt" in names
    ours = next(n for n in names if n != "notes.txt")
    assert ours.startswith("notes (internxtfs conflict ") and ours.endswith(").txt")
    assert fake.content(ROOT, "notes.txt") == b"theirs"  # theirs keeps the name
    assert fake.content(ROOT, ours) == b"ours"


async def test_a_files_lifecycle_through_write_upload_unlink_while_open_and_close(
    mounted: InProcess,
) -> None:
    """The states of fs/lifecycle.py, as the journal holds them at each step."""
    fake = _fake(mounted)

    def state(local_id: int) -> FileState | None:
        record = mounted.journal.get(local_id)
        return None if record is None else record.state

    async with serving(mounted):
        ino = await mounted.write_file("f", b"first")
        local_id = mounted.fs.table.get(ino).local_id  # type: ignore[union-attr]
        assert local_id is not None and state(local_id) is FileState.NEW
        assert await mounted.uploader.wait_idle() == {}
        assert state(local_id) is FileState.CLEAN
        fh = await mounted.open(ino, os.O_WRONLY)
        await mounted.fs.write(fh, 0, b"second")
        await mounted.fs.flush(fh)
        assert state(local_id) is FileState.DIRTY
        await mounted.fs.fsync(fh, False)
        assert state(local_id) is FileState.CLEAN
        await mounted.unlink("f")
        # Open: the entry is kept aside and nothing is sent until the last close.
        assert state(local_id) is FileState.HELD
        assert mounted.uploader.stats()["pending_deletes"] == 0
        await mounted.fs.release(fh)
        assert state(local_id) is FileState.DELETE_PENDING
        assert await mounted.uploader.wait_idle() == {}
        assert state(local_id) is None  # the delete was sent, then the record went
    assert fake.names(ROOT) == []


async def test_a_file_held_open_at_a_crash_is_deleted_by_the_next_mount(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    first = make(tmp_path)
    fake = _fake(first)
    async with serving(first):
        ino = await first.write_file("f", b"content")
        assert await first.uploader.wait_idle() == {}
        await first.open(ino)
        await first.unlink("f")
        local_id = first.fs.table.get(ino).local_id  # type: ignore[union-attr]
        assert local_id is not None
        assert first.journal.get(local_id).state is FileState.HELD  # type: ignore[union-attr]
    # kill -9 with the file still open: the next mount on the same cache (no descriptor
    # survives it) sends the delete of the entry kept aside and forgets the file.
    again = build(tmp_path, first.remote)
    assert again.journal.get(local_id).state is FileState.HELD  # type: ignore[union-attr]
    async with serving(again):
        assert again.journal.get(local_id).state is FileState.DELETE_PENDING  # type: ignore[union-attr]
        assert await again.uploader.wait_idle() == {}
    assert again.journal.get(local_id) is None
    assert fake.names(ROOT) == [] and fake.objects == {}
