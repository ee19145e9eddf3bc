"""The namespace while Internxt is known to be down (fs/pending.py), in-process: mkdir, rename and
rmdir are queued, nothing reaches the server with a placeholder, and the replay follows the
conflict rules on what the server holds once it answers (docs/semantics.md, Durability)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pyfuse3
import trio

from internxtfs.fs.conflicts import RECOVERY_FOLDER
from internxtfs.fs.inodes import ROOT_INODE
from internxtfs.fs.pending import REFUSAL_PATIENCE, is_placeholder
from internxtfs.fs.replacement import ASIDE_PREFIX
from internxtfs.internxt.errors import Conflict, Unprocessable, Unreachable
from tests.fs_api.conftest import serving
from tests.harness.fake_remote import DELETED, EXISTS, ROOT, FakeRemote
from tests.harness.in_process import CTX, InProcess


def _fake(m: InProcess) -> FakeRemote:
    return m.remote.inner  # type: ignore[no-any-return]


async def _mkdir(m: InProcess, name: str, parent: int = ROOT_INODE) -> int:
    return int((await m.fs.mkdir(parent, name.encode(), 0o755, CTX)).st_ino)


@asynccontextmanager
async def _back_online(m: InProcess) -> AsyncIterator[None]:
    """Internxt answers again: the replay runs, then everything is stored."""
    _fake(m).known_offline = False
    async with trio.open_nursery() as nursery:
        await nursery.start(m.fs.pending.run)
        with trio.fail_after(600):
            await m.fs.pending.wait_replayed()
            assert await m.uploader.wait_idle() == {}
        yield
        nursery.cancel_scope.cancel()


async def test_mkdir_offline_is_queued_and_its_files_wait_for_it(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        fake.known_offline = True
        d = await _mkdir(mounted, "d")
        sub = await _mkdir(mounted, "sub", d)
        await mounted.write_file("f.txt", b"made offline", parent=sub)
        assert is_placeholder(mounted.fs.table.get(d).uuid)  # type: ignore[union-attr]
        assert await mounted.listdir() == ["d"] and await mounted.listdir(sub) == ["f.txt"]
        await trio.sleep(60)  # the uploader's quiet period and more: nothing is sent
        assert fake.names(ROOT) == [] and not any("create" in c for c in fake.calls)
        assert mounted.fs.pending.queued() == 2
        async with _back_online(mounted):
            folder = fake.folder_at(ROOT, "d")
            assert folder is not None
            inner = fake.folder_at(folder.uuid, "sub")
            assert inner is not None and fake.content(inner.uuid, "f.txt") == b"made offline"
            # The inodes keep their numbers and now name the real folders.
            assert mounted.fs.table.get(d).uuid == folder.uuid  # type: ignore[union-attr]
            assert mounted.journal.ops() == []


async def test_replayed_mkdir_adopts_a_folder_made_elsewhere_meanwhile(mounted: InProcess) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        fake.known_offline = True
        d = await _mkdir(mounted, "d")
        await mounted.write_file("mine.txt", b"ours", parent=d)
        theirs = fake.add_folder(ROOT, "d")
        fake.add_file(theirs, "theirs.txt", b"theirs")
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["d"]  # one folder, as mkdir -p would leave it
            assert fake.content(theirs, "mine.txt") == b"ours"
            assert fake.content(theirs, "theirs.txt") == b"theirs"


async def test_replayed_mkdir_whose_parent_was_deleted_elsewhere_goes_to_recovery(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    parent = fake.add_folder(ROOT, "p")
    async with serving(mounted):
        p = await mounted.lookup("p")
        await mounted.listdir(p)
        fake.known_offline = True
        d = await _mkdir(mounted, "d", p)
        await mounted.write_file("kept.txt", b"not lost", parent=d)
        fake.folders[parent].status = DELETED
        async with _back_online(mounted):
            recovery = fake.folder_at(ROOT, RECOVERY_FOLDER)
            assert recovery is not None
            [name] = fake.names(recovery.uuid)
            assert name.startswith("d (recovered ")
            kept = fake.folder_at(recovery.uuid, name)
            assert kept is not None and fake.content(kept.uuid, "kept.txt") == b"not lost"


async def test_queued_rename_onto_a_name_taken_elsewhere_keeps_both(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"ours")
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("a", "b")
        assert fake.names(ROOT) == ["a"] and await mounted.listdir() == ["b"]
        fake.add_file(ROOT, "b", b"theirs")
        async with _back_online(mounted):
            names = fake.names(ROOT)
            assert len(names) == 2 and "b" in names and "a" not in names
            [ours] = [n for n in names if n != "b"]
            assert ours.startswith("b (internxtfs conflict ")
            assert fake.content(ROOT, ours) == b"ours" and fake.content(ROOT, "b") == b"theirs"


async def test_queued_rename_of_a_folder_and_of_a_file_into_it(mounted: InProcess) -> None:
    fake = _fake(mounted)
    fake.add_folder(ROOT, "d")
    fake.add_file(ROOT, "f", b"content")
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("d", "e")
        e = await mounted.lookup("e")
        await mounted.fs.rename(ROOT_INODE, b"f", e, b"g", 0, CTX)
        assert await mounted.listdir() == ["e"] and await mounted.listdir(e) == ["g"]
        assert sorted(fake.names(ROOT)) == ["d", "f"]
        async with _back_online(mounted):
            folder = fake.folder_at(ROOT, "e")
            assert fake.names(ROOT) == ["e"] and folder is not None
            assert fake.content(folder.uuid, "g") == b"content"


async def test_queued_rmdir_keeps_a_folder_filled_elsewhere_meanwhile(mounted: InProcess) -> None:
    fake = _fake(mounted)
    empty = fake.add_folder(ROOT, "empty")
    filled = fake.add_folder(ROOT, "filled")
    async with serving(mounted):
        await mounted.listdir()
        for name in ("empty", "filled"):
            await mounted.listdir(await mounted.lookup(name))
        fake.known_offline = True
        await mounted.fs.rmdir(ROOT_INODE, b"empty", CTX)
        await mounted.fs.rmdir(ROOT_INODE, b"filled", CTX)
        assert await mounted.listdir() == []
        fake.add_file(filled, "new.txt", b"put there elsewhere")
        async with _back_online(mounted):
            assert fake.folder_at(ROOT, "empty") is None
            assert fake.content(filled, "new.txt") == b"put there elsewhere"
            assert empty not in {f.uuid for f in fake.folders.values() if f.status != DELETED}


async def test_mkdir_then_rmdir_offline_sends_nothing(mounted: InProcess) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        fake.known_offline = True
        await _mkdir(mounted, "tmp")
        await mounted.fs.rmdir(ROOT_INODE, b"tmp", CTX)
        assert mounted.fs.pending.queued() == 0 and await mounted.listdir() == []
        async with _back_online(mounted):
            assert fake.names(ROOT) == [] and not any("create" in c for c in fake.calls)


async def test_a_queued_move_refused_as_replica_lag_would_is_tried_again(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """After a restart, the replay's move of a file stored a moment before may meet 422 "can
    not be moved" (the replica does not show the file yet). It is tried again, not dropped:
    dropping it undid the user's rename (hostile test, kill -9 under a lag)."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"content")
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("a", "b")
        mounted.remote.fail(
            "move_file", Unprocessable("File can not be moved", status=422), times=3
        )
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["b"] and fake.content(ROOT, "b") == b"content"
        assert mounted.remote.failed.count("move_file") == 3
        # Housekeeping: when its refusals began is forgotten once the move is sent.
        assert mounted.fs.pending._first_met == {}


async def test_a_queued_move_of_a_file_deleted_meanwhile_is_dropped_at_once(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"content")
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("a", "b")
        entry = fake.file_at(ROOT, "a")
        assert entry is not None
        await fake.delete_file(entry.uuid)  # by another client, during the outage
        start = trio.current_time()
        async with _back_online(mounted):
            assert fake.names(ROOT) == []
        assert trio.current_time() - start < REFUSAL_PATIENCE


async def test_a_mkdir_whose_create_may_have_landed_is_removed_by_a_later_rmdir(
    mounted: InProcess,
) -> None:
    """The create was carried out and its answer lost as Internxt went away: mkdir is queued
    (the replay adopts the folder). An rmdir before the replay must then be sent too, not
    cancel the pair locally: the folder stayed on the server (hostile test)."""
    fake = _fake(mounted)

    def outage_starts(args: object, kwargs: object) -> bool:
        fake.known_offline = True
        return True

    async with serving(mounted):
        await mounted.listdir()
        mounted.remote.fail(
            "create_folder", Unreachable("connection lost"), after=True, when=outage_starts
        )
        await _mkdir(mounted, "ghost")
        assert fake.folder_at(ROOT, "ghost") is not None  # it landed
        await mounted.fs.rmdir(ROOT_INODE, b"ghost", CTX)
        assert mounted.fs.pending.queued() == 2
        async with _back_online(mounted):
            assert fake.folder_at(ROOT, "ghost") is None


def _listings_fail_while_offline(m: InProcess, *calls: str) -> None:
    """Listings (and ``calls``) get no answer while ``known_offline`` (the fake answers them
    otherwise)."""
    fake = _fake(m)
    for call in ("list_folders", "list_files", *calls):
        m.remote.fail(
            call, Unreachable("connection refused"), times=1 << 30,
            when=lambda args, kwargs: fake.known_offline,
        )  # fmt: skip


async def test_a_folder_never_listed_takes_new_files_offline_and_the_replay_keeps_both(
    mounted: InProcess,
) -> None:
    """A fresh mount, the server down: the root was never listed. New files and a mkdir there
    succeed (its view shows this mount's own entries); once the server answers, a name that
    was taken there keeps both versions, a folder of that name is adopted (mkdir -p), and the
    root's real listing merges in."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "taken.txt", b"theirs")
    backup = fake.add_folder(ROOT, "backup")
    fake.add_file(backup, "old.bin", b"their old")
    _listings_fail_while_offline(mounted)
    async with serving(mounted):
        fake.known_offline = True
        assert await mounted.listdir() == []  # nothing this mount knows of
        await mounted.write_file("taken.txt", b"ours")
        await mounted.write_file("new.txt", b"new")
        d = await _mkdir(mounted, "backup")
        await mounted.write_file("old.bin", b"our old", parent=d)
        await mounted.write_file("fresh.bin", b"fresh", parent=d)
        assert await mounted.listdir() == ["backup", "new.txt", "taken.txt"]
        assert not any("create" in c for c in fake.calls)
        async with _back_online(mounted):
            names = fake.names(ROOT)
            [ours] = [n for n in names if n.startswith("taken (internxtfs conflict ")]
            assert sorted(names) == sorted(["backup", "new.txt", "taken.txt", ours])
            assert fake.content(ROOT, "taken.txt") == b"theirs"
            assert fake.content(ROOT, ours) == b"ours"
            assert fake.content(ROOT, "new.txt") == b"new"
            [old_ours] = [n for n in fake.names(backup) if n.startswith("old (internxtfs")]
            assert fake.content(backup, "old.bin") == b"their old"
            assert fake.content(backup, old_ours) == b"our old"
            assert fake.content(backup, "fresh.bin") == b"fresh"
            # The real listing merges in: what the server held shows now.
            mounted.fs.meta.invalidate(mounted.fs.table.get(ROOT_INODE))  # type: ignore[arg-type]
            assert "taken.txt" in await mounted.listdir()
            assert "old.bin" in await mounted.listdir(d)


def _shown(names: list[str]) -> list[str]:
    """Without the entries kept aside (under a hidden name) while a file is open."""
    return [n for n in names if not n.startswith(ASIDE_PREFIX)]


async def test_rename_of_a_folder_over_an_empty_stored_folder_offline(mounted: InProcess) -> None:
    """POSIX rename of a folder over an empty folder, offline: queued as an rmdir and a move.
    The replay removes the target (the server lists it empty) and moves ours into its name."""
    fake = _fake(mounted)
    a = fake.add_folder(ROOT, "a")
    fake.add_file(a, "x", b"in a")
    b = fake.add_folder(ROOT, "b")
    async with serving(mounted):
        await mounted.listdir()
        await mounted.listdir(await mounted.lookup("a"))
        await mounted.listdir(await mounted.lookup("b"))
        fake.known_offline = True
        await mounted.rename("a", "b")
        assert await mounted.listdir() == ["b"]
        assert await mounted.listdir(await mounted.lookup("b")) == ["x"]
        assert sorted(fake.names(ROOT)) == ["a", "b"]  # nothing sent yet
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["b"]
            folder = fake.folder_at(ROOT, "b")
            assert folder is not None and folder.uuid == a
            assert fake.content(a, "x") == b"in a"
            assert fake.folders[b].status == DELETED


async def test_rename_of_a_folder_over_one_filled_elsewhere_meanwhile_keeps_both(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    fake = _fake(mounted)
    a = fake.add_folder(ROOT, "a")
    fake.add_file(a, "x", b"ours")
    b = fake.add_folder(ROOT, "b")
    async with serving(mounted):
        await mounted.listdir()
        await mounted.listdir(await mounted.lookup("b"))
        fake.known_offline = True
        await mounted.rename("a", "b")
        fake.add_file(b, "y", b"theirs, put there during the outage")
        async with _back_online(mounted):
            names = fake.names(ROOT)
            [ours] = [n for n in names if n != "b"]
            assert ours.startswith("b (internxtfs conflict ") and len(names) == 2
            assert fake.content(b, "y") == b"theirs, put there during the outage"
            assert fake.content(a, "x") == b"ours"
            assert fake.folders[a].name == ours


async def test_rename_over_an_open_file_offline(mounted: InProcess) -> None:
    """The target is open: its descriptor keeps reading it; its entry is moved aside (queued)
    and deleted at the last close, and the source takes the name."""
    fake = _fake(mounted)
    old = fake.add_file(ROOT, "old", b"old content")
    fake.add_file(ROOT, "new", b"new content")
    async with serving(mounted):
        await mounted.listdir()
        fh = await mounted.open(await mounted.lookup("old"))
        assert await mounted.fs.read(fh, 0, 100) == b"old content"
        fake.known_offline = True
        await mounted.rename("new", "old")
        assert await mounted.listdir() == ["old"]
        assert await mounted.read_all(await mounted.lookup("old")) == b"new content"
        assert await mounted.fs.read(fh, 0, 100) == b"old content"
        async with _back_online(mounted):
            assert _shown(fake.names(ROOT)) == ["old"]
            assert fake.content(ROOT, "old") == b"new content"
            assert fake.files[old].status == EXISTS  # kept aside while open
            await mounted.fs.release(fh)
            with trio.fail_after(600):
                assert await mounted.uploader.wait_idle() == {}
            assert fake.files[old].status != EXISTS
            assert fake.names(ROOT) == ["old"]


async def test_unlink_of_an_open_stored_file_offline(mounted: InProcess) -> None:
    """unlink of a stored file still open, offline: the name is free at once (a new file
    takes it), the descriptor keeps reading, and the old entry goes at the last close."""
    fake = _fake(mounted)
    old = fake.add_file(ROOT, "f", b"the old file")
    _listings_fail_while_offline(mounted, "move_file")
    async with serving(mounted):
        await mounted.listdir()
        fh = await mounted.open(await mounted.lookup("f"))
        assert await mounted.fs.read(fh, 0, 100) == b"the old file"
        fake.known_offline = True
        await mounted.unlink("f")
        assert await mounted.listdir() == []
        await mounted.write_file("f", b"a new file")
        assert await mounted.fs.read(fh, 0, 100) == b"the old file"
        async with _back_online(mounted):
            assert _shown(fake.names(ROOT)) == ["f"] and fake.content(ROOT, "f") == b"a new file"
            await mounted.fs.release(fh)
            with trio.fail_after(600):
                assert await mounted.uploader.wait_idle() == {}
            assert fake.files[old].status != EXISTS
            assert fake.names(ROOT) == ["f"] and fake.content(ROOT, "f") == b"a new file"


async def test_symlink_into_a_folder_made_offline(mounted: InProcess) -> None:
    """symlink with the server down, into a folder made offline (a placeholder id): kept in
    the journal as its NAME.rclonelink file, shown as the link at once, stored after the
    folder once the server answers."""
    fake = _fake(mounted)
    async with serving(mounted):
        fake.known_offline = True
        d = await _mkdir(mounted, "d")
        attrs = await mounted.fs.symlink(d, b"ln", b"../elsewhere/file", CTX)
        assert await mounted.listdir(d) == ["ln"]
        assert await mounted.fs.readlink(attrs.st_ino, CTX) == b"../elsewhere/file"
        async with _back_online(mounted):
            folder = fake.folder_at(ROOT, "d")
            assert folder is not None
            assert fake.names(folder.uuid) == ["ln.rclonelink"]
            assert fake.content(folder.uuid, "ln.rclonelink") == b"../elsewhere/file"
            mounted.fs.meta.invalidate(mounted.fs.table.get(d))  # type: ignore[arg-type]
            assert await mounted.listdir(d) == ["ln"]  # a link still, once listed
            ino = await mounted.lookup("ln", d)
            assert mounted.fs.table.get(ino).is_link  # type: ignore[union-attr]
            assert await mounted.fs.readlink(ino, CTX) == b"../elsewhere/file"


async def test_an_rmdir_while_the_replay_sends_its_mkdir_is_sent_too(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """The replay sends a queued mkdir, which lands with its answer lost (the outage goes on);
    an rmdir then must not cancel the pair locally: the folder would stay on the server (seen
    as a flaky e2e test, test_a_mkdir_whose_answer_was_lost_then_rmdir_leaves_no_folder)."""
    fake = _fake(mounted)
    async with serving(mounted), trio.open_nursery() as nursery:
        await mounted.listdir()
        fake.known_offline = True
        sent = trio.Event()

        def sending(args: object, kwargs: object) -> bool:
            sent.set()
            return True

        mounted.remote.fail(
            "create_folder", Unreachable("connection lost"), after=True, when=sending
        )
        await _mkdir(mounted, "ghost")
        await nursery.start(mounted.fs.pending.run)
        with trio.fail_after(60):
            await sent.wait()
        assert fake.folder_at(ROOT, "ghost") is not None  # it landed
        await mounted.fs.rmdir(ROOT_INODE, b"ghost", CTX)
        fake.known_offline = False
        with trio.fail_after(600):
            await mounted.fs.pending.wait_replayed()
        assert fake.folder_at(ROOT, "ghost") is None
        nursery.cancel_scope.cancel()


async def test_mkdir_then_rmdir_while_the_replay_is_refused_sends_nothing(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """The replay tries the queued mkdir during the outage and the connection is refused:
    nothing left, so an rmdir still cancels the pair and nothing is ever sent."""
    fake = _fake(mounted)
    refused = Unreachable("connection refused")
    refused.sent = False
    async with serving(mounted), trio.open_nursery() as nursery:
        await mounted.listdir()
        fake.known_offline = True
        tried = trio.Event()

        def trying(args: object, kwargs: object) -> bool:
            tried.set()
            return True

        mounted.remote.fail("create_folder", refused, when=trying)
        await _mkdir(mounted, "tmp")
        await nursery.start(mounted.fs.pending.run)
        with trio.fail_after(60):
            await tried.wait()
        await mounted.fs.rmdir(ROOT_INODE, b"tmp", CTX)
        assert mounted.fs.pending.queued() == 0
        fake.known_offline = False
        await trio.sleep(60)
        assert fake.names(ROOT) == [] and not any("create_folder" in c for c in fake.calls)
        nursery.cancel_scope.cancel()


async def test_a_folder_never_listed_renamed_offline_is_listed_once_its_rename_is_sent(
    mounted: InProcess,
) -> None:
    """A folder seen in its parent's listing but never opened, renamed offline: its view holds
    only our own entries while the rename waits, and its real listing shows as soon as the
    rename is sent (not a --dir-cache-ttl later)."""
    fake = _fake(mounted)
    d = fake.add_folder(ROOT, "d")
    fake.add_file(d, "x", b"in d")
    _listings_fail_while_offline(mounted)
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("d", "e")
        e = await mounted.lookup("e")
        assert await mounted.listdir(e) == []  # never listed: nothing known of it
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["e"]
            assert await mounted.listdir(e) == ["x"]
            assert await mounted.read_all(await mounted.lookup("x", e)) == b"in d"


async def test_rm_rf_offline_of_a_folder_never_listed_keeps_what_the_server_holds(
    mounted: InProcess,
) -> None:
    """rm -rf of folders seen in their parent's listing but never opened, during an outage:
    their partial views are empty, so rm removes each with one rmdir. What the server holds
    in one was never shown to the user: once the server answers, that folder is kept with all
    of it, and shows again; the one the server holds empty is deleted. (A plain rmdir, or
    find -empty -delete, cannot be told from rm -rf here: deleting unseen content for it
    would lose files no one asked to remove.)"""
    fake = _fake(mounted)
    d = fake.add_folder(ROOT, "d")
    fake.add_file(d, "a", b"old a")
    sub = fake.add_folder(d, "sub")
    fake.add_file(sub, "b", b"old b")
    empty = fake.add_folder(ROOT, "empty")
    _listings_fail_while_offline(mounted)
    async with serving(mounted):
        assert await mounted.listdir() == ["d", "empty"]
        fake.known_offline = True
        for name in ("d", "empty"):  # rm -rf: opendir (our partial view is empty), then rmdir
            assert await mounted.listdir(await mounted.lookup(name)) == []
            await mounted.fs.rmdir(ROOT_INODE, name.encode(), CTX)
        assert await mounted.listdir() == []
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["d"]
            assert fake.folders[empty].status != EXISTS
            assert fake.content(d, "a") == b"old a" and fake.content(sub, "b") == b"old b"
            mounted.fs.meta.invalidate(mounted.fs.table.get(ROOT_INODE))  # type: ignore[arg-type]
            assert await mounted.listdir() == ["d"]
            assert await mounted.listdir(await mounted.lookup("d")) == ["a", "sub"]


def _mtime_only() -> Any:
    """The fields a kernel passes for lutimes of the mtime alone (pyfuse3's are read-only)."""
    fields = dict.fromkeys(
        ("update_atime", "update_ctime", "update_gid", "update_mode", "update_size",
         "update_uid"), False,
    )  # fmt: skip
    return SimpleNamespace(update_mtime=True, **fields)


async def test_lutimes_of_a_stored_link_offline_is_kept_and_stored_once_back(
    mounted: InProcess,
) -> None:
    """touch -h (rsync -a, tar -x) on a link stored on the server, during an outage: it
    answered EIO (the time is stored by uploading the target again, sent at once). Now it
    succeeds and the time is stored with the link once the server answers, whether the
    target was read before or not."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "read.rclonelink", b"../a/target")
    fake.add_file(ROOT, "unread.rclonelink", b"never read here")
    _listings_fail_while_offline(mounted, "upload", "download_range", "replace_file")
    async with serving(mounted):
        assert await mounted.listdir() == ["read", "unread"]
        read = await mounted.lookup("read")
        assert await mounted.fs.readlink(read, CTX) == b"../a/target"
        unread = await mounted.lookup("unread")
        fake.known_offline = True
        for ino, when in ((read, 1_500_000_000_123_000_000), (unread, 1_400_000_000_500_000_000)):
            attr = pyfuse3.EntryAttributes()
            attr.st_mtime_ns = when
            got = await mounted.fs.setattr(ino, attr, _mtime_only(), None, CTX)
            assert got.st_mtime_ns == when
        assert (await mounted.fs.getattr(read, CTX)).st_mtime_ns == 1_500_000_000_123_000_000
        async with _back_online(mounted):
            for name, target, when in (
                ("read.rclonelink", b"../a/target", 1_500_000_000.123),
                ("unread.rclonelink", b"never read here", 1_400_000_000.5),
            ):
                entry = fake.file_at(ROOT, name)
                assert entry is not None and entry.modified == when
                assert fake.content(ROOT, name) == target
            assert fake.names(ROOT) == ["read.rclonelink", "unread.rclonelink"]
            assert await mounted.fs.readlink(read, CTX) == b"../a/target"
            assert await mounted.fs.readlink(unread, CTX) == b"never read here"


async def test_rename_over_whose_move_aside_gets_no_answer_is_queued(mounted: InProcess) -> None:
    """A rename over a stored file whose first step (moving the target aside) reaches a
    server that then stops answering: the move may have landed or not. The rename succeeds
    (queued: the target's delete by uuid and the source's move), and once the server answers
    the name holds the source whichever it was, with nothing left aside. Before, EIO."""
    fake = _fake(mounted)
    made = {
        landed: (
            fake.add_file(ROOT, f"doc{landed}", b"old"),
            fake.add_file(ROOT, f"new{landed}", b"new"),
        )
        for landed in (True, False)
    }
    for landed in (True, False):
        old, new = made[landed]
        async with serving(mounted):
            await mounted.listdir()

            def hangs(args: tuple[Any, ...], kwargs: object, uuid: str = old) -> bool:
                if args[0] != uuid:
                    return False
                fake.known_offline = True  # the call's timeout: the outage is known
                return True

            mounted.remote.fail("move_file", Unreachable("read timeout"), after=landed, when=hangs)
            await mounted.rename(f"new{landed}", f"doc{landed}")
            assert f"doc{landed}" in await mounted.listdir()
            assert f"new{landed}" not in await mounted.listdir()
            ino = await mounted.lookup(f"doc{landed}")
            assert await mounted.read_all(ino) == b"new"
            assert (fake.files[old].name != f"doc{landed}") is landed
            async with _back_online(mounted):
                assert fake.content(ROOT, f"doc{landed}") == b"new"
                assert fake.files[new].name == f"doc{landed}"
                assert fake.files[old].status != EXISTS
                assert mounted.journal.replacements() == []
        mounted.remote.clear()
    assert fake.names(ROOT) == ["docFalse", "docTrue"]


async def test_a_queued_move_into_a_folder_deleted_elsewhere_goes_to_recovery(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """mv a d/b offline, and another client deletes d meanwhile: Internxt refuses the move for
    good (its destination is gone). The move was dropped after REFUSAL_PATIENCE, undoing the
    user's rename on the server without a trace in the mount. Now the entry goes where a
    file made in a folder deleted elsewhere goes: /internxtfs-recovered/, under its new name
    marked ``(recovered DATE)``, and the mount shows it there."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"content")
    d = fake.add_folder(ROOT, "d")
    async with serving(mounted):
        await mounted.listdir()
        d_ino = await mounted.lookup("d")
        await mounted.listdir(d_ino)
        fake.known_offline = True
        await mounted.fs.rename(ROOT_INODE, b"a", d_ino, b"b", 0, CTX)
        fake.folders[d].status = DELETED  # by another client, during the outage
        start = trio.current_time()
        async with _back_online(mounted):
            recovery = fake.folder_at(ROOT, RECOVERY_FOLDER)
            assert recovery is not None
            [name] = fake.names(recovery.uuid)
            assert name.startswith("b (recovered ") and fake.content(recovery.uuid, name) == (
                b"content"
            )
            assert fake.names(ROOT) == [RECOVERY_FOLDER]
            assert trio.current_time() - start >= REFUSAL_PATIENCE
            mounted.fs.meta.invalidate(mounted.fs.table.get(ROOT_INODE))  # type: ignore[arg-type]
            assert await mounted.listdir() == [RECOVERY_FOLDER]
            r = await mounted.lookup(RECOVERY_FOLDER)
            assert await mounted.listdir(r) == [name]
            assert await mounted.read_all(await mounted.lookup(name, r)) == b"content"


async def test_a_queued_move_refused_for_good_shows_the_entry_where_the_server_keeps_it(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """A queued rename Internxt keeps refusing while both the entry and its destination
    exist: the entry keeps its place on the server, and the mount shows it there again at
    once (before, it went on showing the new name until the folders' listings expired),
    with the refusal in ``status``."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"content")
    fake.add_folder(ROOT, "d")
    async with serving(mounted):
        await mounted.listdir()
        d_ino = await mounted.lookup("d")
        await mounted.listdir(d_ino)
        fake.known_offline = True
        await mounted.fs.rename(ROOT_INODE, b"a", d_ino, b"b", 0, CTX)
        mounted.remote.fail(
            "move_file", Unprocessable("File can not be moved", status=422), times=1 << 30
        )
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["a", "d"] and fake.content(ROOT, "a") == b"content"
            assert await mounted.listdir(d_ino) == []
            assert await mounted.listdir() == ["a", "d"]
            assert await mounted.read_all(await mounted.lookup("a")) == b"content"
            assert "can not be moved" in (mounted.fs.pending.stats()["namespace_error"] or "")


async def test_a_queued_rename_over_a_file_whose_delete_just_landed_keeps_no_conflict_copy(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """A rename over a stored file made offline is the target's unlink (a pending delete of
    the uploader) and a queued move. Replayed, the move may meet the target still on the name
    while the uploader sends that delete; by the time the replay looks, the delete has landed
    and a read replica behind it still lists the target. That entry is our own deleted one,
    not another client's file: the move is made again, no conflict copy (seen under a 1 s
    replica lag, test_offline_namespace.py's kill -9 test)."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "b", b"new")
    fake.add_file(ROOT, "c", b"old")
    target = fake.file_at(ROOT, "c")
    assert target is not None
    deleted: set[str] = set()
    move_file, files_exist = fake.move_file, fake.files_exist

    async def move_meeting_the_delete(uuid: str, folder: str, name: str) -> Any:
        if not deleted:
            # The uploader's delete of the target was on its way: it lands just after the
            # server found the name taken.
            await mounted.uploader.settle_deletes_at(ROOT, "c")
            deleted.add(target.uuid)
            raise Conflict("A file with this name already exists", status=409)
        return await move_file(uuid, folder, name)

    async def lagging_files_exist(folder: str, names: Any, **kwargs: Any) -> list[Any]:
        # A replica behind our delete: the target still holds its name there.
        found = await files_exist(folder, names, **kwargs)
        return [*found, target.entry()] if target.uuid in deleted else found

    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("b", "c")
        assert await mounted.listdir() == ["c"]
        fake.move_file = move_meeting_the_delete  # type: ignore[method-assign]
        fake.files_exist = lagging_files_exist  # type: ignore[method-assign]
        fake.recently_deleted = lambda uuid: uuid in deleted  # type: ignore[method-assign]
        async with _back_online(mounted):
            assert fake.names(ROOT) == ["c"]
            assert fake.content(ROOT, "c") == b"new"
