"""A failure of every call the filesystem makes to Internxt, injected with FailingRemote
(tier 2: no kernel). What each must leave: the handler answers an errno (never an exception
that ends the mount), nothing half-done shows locally or remotely, and the same operation
works once the server answers again; background work (uploads, deletes) keeps the change and
retries it by itself."""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pyfuse3
import pytest
import trio
import trio.testing

from internxtfs.fs.inodes import ROOT_INODE
from internxtfs.internxt.errors import RequestRejected, ServerError, Unreachable
from tests.fs_api.conftest import serving
from tests.fs_api.test_offline_namespace import _back_online
from tests.harness.fake_remote import ROOT, FakeRemote
from tests.harness.in_process import CTX, InProcess


def _boom() -> ServerError:
    return ServerError("injected failure", status=500)


def _fake(m: InProcess) -> FakeRemote:
    return m.remote.inner  # type: ignore[no-any-return]


async def _fails_with(errno_: int, call: Awaitable[object]) -> None:
    with pytest.raises(pyfuse3.FUSEError) as failure:
        await call
    assert failure.value.errno == errno_


# --- handlers that wait for the server: EIO, nothing changed, works again afterwards -----------


@pytest.mark.parametrize("call", ["list_files", "list_folders"])
async def test_listing(mounted: InProcess, call: str) -> None:
    _fake(mounted).add_file(ROOT, "f", b"x")
    mounted.remote.fail(call, _boom())
    await _fails_with(errno.EIO, mounted.lookup("f"))
    assert await mounted.lookup("f") > ROOT_INODE


async def test_mkdir_whose_retries_are_spent_is_queued(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    # 5xx until the call's budget ran out (the server answers, badly): queued, as in an
    # outage, so that `cp -r` goes on; the replay sends it once the server takes it, and the
    # file made in the folder meanwhile follows.
    fake = _fake(mounted)
    async with serving(mounted):
        mounted.remote.fail("create_folder", _boom())
        d = int((await mounted.fs.mkdir(ROOT_INODE, b"d", 0o755, CTX)).st_ino)
        assert await mounted.listdir() == ["d"] and fake.names(ROOT) == []
        assert mounted.fs.pending.queued() == 1
        await mounted.write_file("f", b"inside", parent=d)
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["d"] and mounted.fs.pending.queued() == 0
        folder = fake.folder_at(ROOT, "d")
        assert folder is not None and fake.content(folder.uuid, "f") == b"inside"


async def test_mkdir_refused_is_not_queued(mounted: InProcess) -> None:
    # A refusal (4xx) is the server's answer: the errno, nothing queued.
    mounted.remote.fail("create_folder", RequestRejected("refused", status=400))
    await _fails_with(errno.EINVAL, mounted.fs.mkdir(ROOT_INODE, b"d", 0o755, CTX))
    assert await mounted.listdir() == [] and mounted.fs.pending.queued() == 0


async def test_mkdir_whose_answer_is_lost(mounted: InProcess) -> None:
    # The folder was created; the handler could not know. Queued with its create marked as
    # maybe sent: the replay finds the folder and adopts it (one folder, as mkdir -p).
    mounted.remote.fail("create_folder", Unreachable("answer lost"), after=True)
    await mounted.fs.mkdir(ROOT_INODE, b"d", 0o755, CTX)
    assert _fake(mounted).names(ROOT) == ["d"]
    async with _back_online(mounted):
        assert _fake(mounted).names(ROOT) == ["d"] and await mounted.listdir() == ["d"]
    mounted.fs.meta.invalidate(mounted.fs.table.get(ROOT_INODE))  # type: ignore[arg-type]
    await _fails_with(errno.EEXIST, mounted.fs.mkdir(ROOT_INODE, b"d", 0o755, CTX))


async def test_rmdir(mounted: InProcess) -> None:
    _fake(mounted).add_folder(ROOT, "d")
    mounted.remote.fail("delete", _boom())
    await _fails_with(errno.EIO, mounted.fs.rmdir(ROOT_INODE, b"d", CTX))
    assert await mounted.listdir() == ["d"] and _fake(mounted).names(ROOT) == ["d"]
    await mounted.fs.rmdir(ROOT_INODE, b"d", CTX)
    assert await mounted.listdir() == [] and _fake(mounted).names(ROOT) == []


@pytest.mark.parametrize("call", ["rename_folder", "move_folder"])
async def test_rename_of_a_folder(mounted: InProcess, call: str) -> None:
    fake = _fake(mounted)
    fake.add_folder(ROOT, "d")
    dest = fake.add_folder(ROOT, "into")
    into = await mounted.lookup("into")
    new_parent = ROOT_INODE if call == "rename_folder" else into
    mounted.remote.fail(call, _boom())
    rename = mounted.fs.rename(ROOT_INODE, b"d", new_parent, b"e", 0, CTX)
    await _fails_with(errno.EIO, rename)
    assert await mounted.listdir() == ["d", "into"] and fake.names(ROOT) == ["d", "into"]
    await mounted.fs.rename(ROOT_INODE, b"d", new_parent, b"e", 0, CTX)
    where = ROOT if call == "rename_folder" else dest
    assert "e" in fake.names(where) and "d" not in fake.names(ROOT)


async def test_rename_of_a_stored_file(mounted: InProcess) -> None:
    _fake(mounted).add_file(ROOT, "a", b"content")
    mounted.remote.fail("move_file", _boom())
    await _fails_with(errno.EIO, mounted.rename("a", "b"))
    assert await mounted.listdir() == ["a"] and _fake(mounted).names(ROOT) == ["a"]
    await mounted.rename("a", "b")
    assert await mounted.listdir() == ["b"] and _fake(mounted).names(ROOT) == ["b"]


@pytest.mark.parametrize("step", ["target aside", "source onto the name"])
async def test_rename_over_a_stored_file(mounted: InProcess, step: str) -> None:
    """Either step of a rename over failing leaves the target under its name."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"source")
    fake.add_file(ROOT, "b", b"target")
    await mounted.listdir()
    if step == "target aside":
        mounted.remote.fail("move_file", _boom(), when=lambda args, kw: args[2] != "b")
    else:
        mounted.remote.fail("move_file", _boom(), when=lambda args, kw: args[2] == "b")
    await _fails_with(errno.EIO, mounted.rename("a", "b"))
    assert fake.names(ROOT) == ["a", "b"] and fake.content(ROOT, "b") == b"target"
    assert await mounted.read_all(await mounted.lookup("b")) == b"target"
    await mounted.rename("a", "b")
    assert await mounted.fs.replacements.resolve_all() == 0
    assert fake.names(ROOT) == ["b"] and fake.content(ROOT, "b") == b"source"


async def test_rename_onto_a_name_another_client_took(mounted: InProcess) -> None:
    """The move meets Conflict, and the check of what holds the name fails: EIO, and the
    other client's file is untouched."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"ours")
    await mounted.listdir()
    fake.add_file(ROOT, "b", b"theirs")  # after our listing
    mounted.remote.fail("files_exist", _boom())
    await _fails_with(errno.EIO, mounted.rename("a", "b"))
    assert fake.content(ROOT, "b") == b"theirs" and fake.content(ROOT, "a") == b"ours"


@pytest.mark.parametrize("call", ["usage", "limit"])
async def test_statfs(mounted: InProcess, call: str) -> None:
    mounted.remote.fail(call, _boom())
    await _fails_with(errno.EIO, mounted.fs.statfs(CTX))
    assert (await mounted.fs.statfs(CTX)).f_blocks == (1 << 40) // 4096


async def test_read_of_content_not_cached(mounted: InProcess) -> None:
    _fake(mounted).add_file(ROOT, "f", b"remote bytes")
    ino = await mounted.lookup("f")
    mounted.remote.fail("download_range", Unreachable("down"))
    fh = await mounted.open(ino)
    await _fails_with(errno.EIO, mounted.fs.read(fh, 0, 100))
    assert await mounted.fs.read(fh, 0, 100) == b"remote bytes"
    await mounted.fs.release(fh)


async def test_symlink_whose_upload_retries_are_spent_is_stored_later(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    # Nothing shows on the server yet: the link is kept as a new file, as offline.
    async with serving(mounted):
        mounted.remote.fail("upload", _boom())
        await mounted.fs.symlink(ROOT_INODE, b"l", b"target", CTX)
        assert await mounted.listdir() == ["l"] and _fake(mounted).names(ROOT) == []
        assert await mounted.uploader.wait_idle() == {}
        assert _fake(mounted).content(ROOT, "l.rclonelink") == b"target"


async def test_symlink_whose_create_fails(mounted: InProcess) -> None:
    # The entry may have landed (its answer lost): not made again beside it, EIO.
    mounted.remote.fail("create_file", _boom())
    symlink = mounted.fs.symlink(ROOT_INODE, b"l", b"target", CTX)
    await _fails_with(errno.EIO, symlink)
    assert await mounted.listdir() == [] and _fake(mounted).names(ROOT) == []
    await mounted.fs.symlink(ROOT_INODE, b"l", b"target", CTX)
    assert _fake(mounted).content(ROOT, "l.rclonelink") == b"target"


# --- background work: the change is kept and sent again ----------------------------------------


async def _retried(
    mounted: InProcess, call: str, change: Callable[[], Awaitable[None]], times: int = 1
) -> None:
    """``change`` leaves work for the uploader; its first ``call`` fails: the failure shows
    in status, and the next attempt completes it."""
    mounted.remote.fail(call, _boom(), times=times)
    async with serving(mounted):
        await change()
        failed = await mounted.uploader.wait_idle()
        assert len(failed) == 1 and isinstance(next(iter(failed.values())), ServerError)
        assert len(mounted.uploader.stats()["errors"]) == 1
        assert await mounted.uploader.wait_idle() == {}
        assert mounted.uploader.stats()["errors"] == {}
    assert mounted.remote.failed == [call] * times


@pytest.mark.parametrize("call", ["file_limits", "upload", "create_file"])
async def test_upload_of_a_new_file(mounted: InProcess, call: str) -> None:
    async def change() -> None:
        await mounted.write_file("f", b"new file")

    # The per-file cap is asked once at start (a failure there is only logged), then before
    # the upload.
    await _retried(mounted, call, change, times=2 if call == "file_limits" else 1)
    assert _fake(mounted).content(ROOT, "f") == b"new file"


@pytest.mark.parametrize("call", ["file_meta", "replace_file"])
async def test_upload_of_a_changed_file(mounted: InProcess, call: str) -> None:
    fake = _fake(mounted)
    fake.add_file(ROOT, "f", b"version 1")
    ino = await mounted.lookup("f")

    async def change() -> None:
        fh = await mounted.open(ino, os.O_WRONLY)
        await mounted.fs.write(fh, 8, b"2")
        await mounted.fs.release(fh)

    await _retried(mounted, call, change)
    assert fake.content(ROOT, "f") == b"version 2" and fake.names(ROOT) == ["f"]


async def test_delete_after_unlink(mounted: InProcess) -> None:
    fake = _fake(mounted)
    fake.add_file(ROOT, "f", b"to delete")

    async def change() -> None:
        await mounted.unlink("f")
        assert await mounted.listdir() == []  # at once, while the delete is pending

    await _retried(mounted, "delete", change)
    assert fake.names(ROOT) == []


async def test_fsync_remote_reports_the_failed_upload(mounted: InProcess) -> None:
    mounted.remote.fail("upload", _boom())
    async with serving(mounted):
        fh, _ = await mounted.create("f")
        await mounted.fs.write(fh, 0, b"data")
        await _fails_with(errno.EIO, mounted.fs.fsync(fh, False))
        await mounted.fs.fsync(fh, False)
        assert _fake(mounted).content(ROOT, "f") == b"data"
        await mounted.fs.release(fh)


@pytest.mark.parametrize("call", ["object_exists", "delete_object"])
async def test_orphan_sweep(mounted: InProcess, call: str) -> None:
    fake = _fake(mounted)
    fake.objects["orphan"] = b"left behind"
    if call == "delete_object":
        mounted.journal.add_orphan("orphan", None, "unpublished")
    else:
        mounted.journal.add_orphan("orphan", 999, "uncertain")
        del fake.objects["orphan"]  # gone with its entry: the row goes once that is known
    mounted.remote.fail(call, _boom())
    assert await mounted.sweeper.sweep() == 0
    assert len(mounted.journal.orphan_rows()) == 1  # kept for the next sweep
    await mounted.sweeper.sweep()
    assert mounted.journal.orphan_rows() == [] and "orphan" not in fake.objects


async def test_rename_over_a_folder_whose_outcome_cannot_be_checked(mounted: InProcess) -> None:
    """The move onto the name fails and so does the check of where the source is: the target
    stays journaled aside, shown under its name, and is put back in the background."""
    fake = _fake(mounted)
    fake.add_folder(ROOT, "d")
    fake.add_folder(ROOT, "e")
    await mounted.listdir()
    mounted.remote.fail("rename_folder", _boom(), when=lambda args, kw: args[1] == "e")
    mounted.remote.fail("folder_meta", _boom())
    await _fails_with(errno.EIO, mounted.rename("d", "e"))
    mounted.fs.meta.invalidate(mounted.fs.table.get(ROOT_INODE))  # type: ignore[arg-type]
    assert await mounted.listdir() == ["d", "e"]
    assert await mounted.fs.replacements.resolve_all() == 0
    assert fake.names(ROOT) == ["d", "e"]


async def test_recovery_of_a_file_whose_folder_was_deleted_elsewhere(mounted: InProcess) -> None:
    fake = _fake(mounted)
    folder = fake.add_folder(ROOT, "d")
    recovered = fake.add_folder(ROOT, "internxtfs-recovered")  # from an earlier recovery
    d = await mounted.lookup("d")

    async def change() -> None:
        await mounted.write_file("f.txt", b"unsent", parent=d)
        fake.folders[folder].status = "DELETED"

    await _retried(mounted, "folders_exist", change)
    assert fake.names(recovered) == [f"f (recovered {mounted.journal.all_files()[0].local_id}).txt"]


def _rename_over_that_cannot_put_its_target_back(mounted: InProcess) -> None:
    """Every move onto "b" fails: the source's move in, then the target's move back."""
    mounted.remote.fail("move_file", _boom(), times=1000, when=lambda args, kw: args[2] == "b")


async def test_a_rename_over_a_name_whose_earlier_rename_is_unsettled(mounted: InProcess) -> None:
    """A rename over "b" fails and cannot put the old "b" back (it stays aside, journaled).
    The next rename over "b" settles that one first, then replaces "b" as asked."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"first")
    fake.add_file(ROOT, "b", b"old")
    fake.add_file(ROOT, "c", b"second")
    await mounted.listdir()
    _rename_over_that_cannot_put_its_target_back(mounted)
    await _fails_with(errno.EIO, mounted.rename("a", "b"))
    assert await mounted.listdir() == ["a", "b", "c"]  # the old "b" shows while aside
    mounted.remote.clear()
    await mounted.rename("c", "b")
    assert await mounted.fs.replacements.resolve_all() == 0
    assert fake.names(ROOT) == ["a", "b"]
    assert fake.content(ROOT, "b") == b"second" and fake.content(ROOT, "a") == b"first"


async def test_a_background_pass_never_settles_a_row_a_new_rename_took_over(
    mounted: InProcess,
) -> None:
    """The background pass is checking the failed first rename (is "a" on "b"?) when a
    second rename over "b" starts: the second waits for that row, so the pass cannot put
    the old "b" back onto the name the second rename has filled (it kept it as "b
    (internxtfs restored)", content the user had replaced)."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"first")
    fake.add_file(ROOT, "b", b"old")
    fake.add_file(ROOT, "c", b"second")
    a_uuid = fake.file_at(ROOT, "a").uuid  # type: ignore[union-attr]
    await mounted.listdir()
    _rename_over_that_cannot_put_its_target_back(mounted)
    await _fails_with(errno.EIO, mounted.rename("a", "b"))
    mounted.remote.clear()

    release = trio.Event()
    plain_meta = fake.file_meta

    async def slow_meta(uuid: str, **kwargs: Any) -> Any:
        if uuid == a_uuid:
            await release.wait()  # the pass's check of the first rename, held here
        return await plain_meta(uuid, **kwargs)

    fake.file_meta = slow_meta  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mounted.fs.replacements.resolve_all)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(mounted.rename, "c", "b")
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert await mounted.fs.replacements.resolve_all() == 0
    assert fake.names(ROOT) == ["a", "b"]
    assert fake.content(ROOT, "b") == b"second" and fake.content(ROOT, "a") == b"first"
