"""Hostile cases of the offline replay (fs/pending.py), in-process: a queued move whose target
name is still held on the server when it is sent must land under the name the user asked once
that name is free, not under a marked name (docs/semantics.md, Durability and Conflicts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from internxtfs.internxt.errors import Conflict, ServerError
from tests.fs_api.conftest import serving
from tests.harness.fake_remote import ROOT, FakeRemote
from tests.harness.in_process import CTX, InProcess


def _fake(m: InProcess) -> FakeRemote:
    return m.remote.inner  # type: ignore[no-any-return]


@asynccontextmanager
async def _back_online(m: InProcess) -> AsyncIterator[None]:
    _fake(m).known_offline = False
    async with trio.open_nursery() as nursery:
        await nursery.start(m.fs.pending.run)
        with trio.fail_after(600):
            await m.fs.pending.wait_replayed()
            assert await m.uploader.wait_idle() == {}
        yield
        nursery.cancel_scope.cancel()


async def test_a_queued_move_onto_a_name_freed_right_after_its_refusal_takes_it(
    mounted: InProcess,
) -> None:
    """The server refuses the move (the name is taken), and the other client's entry is gone
    by the time the replay looks at who holds the name: ours takes the name."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"ours")
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("a", "c")  # queued
        theirs = fake.add_file(ROOT, "c", b"theirs, deleted a moment later")

        def freed_after_the_refusal(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
            fake.delete_elsewhere(theirs)
            return True

        mounted.remote.fail(
            "move_file", Conflict("A file with this name already exists", status=409),
            when=freed_after_the_refusal,
        )  # fmt: skip
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["c"] and fake.content(ROOT, "c") == b"ours"
        assert await mounted.listdir() == ["c"]


async def test_a_queued_move_onto_a_name_held_for_a_moment_waits_for_it(
    mounted: InProcess,
) -> None:
    """Another client made "b" during the outage and deletes it one second after the server is
    back (or a replica still shows it for that second): the move is not stored under a marked
    name on the first refusal; it takes "b" once the name is free."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"ours")
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("a", "b")
        theirs = fake.add_file(ROOT, "b", b"theirs, for a moment")

        async def other_client() -> None:
            await trio.sleep(1.0)
            fake.delete_elsewhere(theirs)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_client)
            async with _back_online(mounted):
                assert fake.names(ROOT) == ["b"] and fake.content(ROOT, "b") == b"ours"
        assert await mounted.listdir() == ["b"]


async def test_fsync_of_a_file_whose_upload_waits_for_the_queue_stores_it(
    mounted: InProcess,
) -> None:
    """A file written in a folder made offline waits for the folder's queued mkdir. Internxt
    answers again and the file is fsynced (--fsync remote) before the replay has sent the
    mkdir: fsync must return once the file is stored, not at once with nothing stored."""
    fake = _fake(mounted)
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        d = int((await mounted.fs.mkdir(1, b"d", 0o755, CTX)).st_ino)
        fh, _ = await mounted.create("f.txt", d)
        await mounted.fs.write(fh, 0, b"fsynced")
        fake.known_offline = False
        # The replay's first attempt at the mkdir is refused as Internxt would while busy.
        mounted.remote.fail("create_folder", ServerError("busy", status=500), times=2)
        async with trio.open_nursery() as nursery:
            await nursery.start(mounted.fs.pending.run)
            await mounted.fs.fsync(fh, False)
            folder = fake.folder_at(ROOT, "d")
            assert folder is not None and fake.content(folder.uuid, "f.txt") == b"fsynced"
            nursery.cancel_scope.cancel()
        await mounted.fs.release(fh)
