"""Hostile cases of the offline replay (fs/pending.py), in-process: a queued move whose target
name is still held on the server when it is sent must land under the name the user asked once
that name is free, not under a marked name (docs/semantics.md, Durability and Conflicts)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pyfuse3
import pytest
import trio

from internxtfs.fs.operations import QUEUE_FAILING_PATIENCE
from internxtfs.internxt.errors import Conflict, RequestRejected, ServerError, Unreachable
from tests.fs_api.conftest import make, serving
from tests.fs_api.test_offline_namespace import _back_online, _fake
from tests.harness.fake_remote import REMOTE_CALLS, ROOT, FakeRemote
from tests.harness.in_process import CTX, InProcess


async def test_a_queued_move_onto_a_name_freed_right_after_its_refusal_takes_it(
    mounted: InProcess, autojump_clock: trio.abc.Clock
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


@pytest.mark.parametrize(("window", "held"), [(None, 1.0), (6.0, 4.0)])
async def test_a_queued_move_onto_a_name_held_for_a_moment_waits_for_it(
    mounted: InProcess, autojump_clock: trio.abc.Clock, window: float | None, held: float
) -> None:
    """Another client made "b" during the outage and deletes it ``held`` seconds after the
    server is back (or a replica still shows it for that long): the move is not stored under a
    marked name on the first refusal; it takes "b" once the name is free. The wait follows
    --replica-window: with 6 s, a name held for 4 s is waited out (a fixed 3 s stored ours
    under a marked name)."""
    fake = _fake(mounted)
    if window is not None:
        fake.replica_window = window
    fake.add_file(ROOT, "a", b"ours")
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("a", "b")
        theirs = fake.add_file(ROOT, "b", b"theirs, for a moment")
        await _replayed_while_held(mounted, "b", after=0.0, held=held, theirs=theirs)


async def _replayed_while_held(
    m: InProcess, name: str, *, after: float, held: float, theirs: str | None = None
) -> None:
    """Internxt answers again; another client holds ``name`` from ``after`` seconds on (or
    already: ``theirs``) and frees it ``held`` seconds later. The queued move of our "ours"
    must take the name."""
    fake = _fake(m)

    async def other_client() -> None:
        await trio.sleep(after)
        holder = theirs or fake.add_file(ROOT, name, b"theirs, for a moment")
        await trio.sleep(held)
        fake.delete_elsewhere(holder)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_client)
        async with _back_online(m):
            assert fake.names(ROOT) == [name] and fake.content(ROOT, name) == b"ours"
    assert await m.listdir() == [name]


async def test_fsync_of_a_file_whose_upload_waits_for_the_queue_stores_it(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """A file written in a folder made offline waits for the folder's queued mkdir. Internxt
    answers again and the file is fsynced (--fsync remote) before the replay has sent the
    mkdir: fsync must return once the file is stored, not at once with nothing stored."""
    fake = _fake(mounted)
    async with serving(mounted):
        fh = await _file_in_a_folder_made_offline(mounted, b"fsynced")
        # The replay's first attempt at the mkdir is refused as Internxt would while busy.
        mounted.remote.fail("create_folder", ServerError("busy", status=500), times=2)
        async with trio.open_nursery() as nursery:
            await nursery.start(mounted.fs.pending.run)
            await mounted.fs.fsync(fh, False)
            folder = fake.folder_at(ROOT, "d")
            assert folder is not None and fake.content(folder.uuid, "f.txt") == b"fsynced"
            nursery.cancel_scope.cancel()
        await mounted.fs.release(fh)


async def _offline_queue(m: InProcess) -> None:
    """Stored: d1/{a,b,c}, d2/ (empty), x, y. Offline: mkdir n, mv d1/a n/a, mv d1 e1, rmdir d2,
    mv x over y, mv e1/b over e1/c, rm n/a... each depending on the one before."""
    fake = _fake(m)
    d1 = fake.add_folder(ROOT, "d1")
    fake.add_folder(ROOT, "d2")
    for name in ("a", "b", "c"):
        fake.add_file(d1, name, f"{name} content".encode())
    fake.add_file(ROOT, "x", b"x content")
    fake.add_file(ROOT, "y", b"y content")
    d1_ino = await m.lookup("d1")
    await m.listdir(d1_ino)
    await m.listdir(await m.lookup("d2"))
    fake.known_offline = True
    n = int((await m.fs.mkdir(1, b"n", 0o755, CTX)).st_ino)
    await m.fs.rename(d1_ino, b"a", n, b"a", 0, CTX)
    await m.rename("d1", "e1")
    await m.fs.rmdir(1, b"d2", CTX)
    await m.rename("x", "y")
    e1 = await m.lookup("e1")
    await m.fs.rename(e1, b"b", e1, b"c", 0, CTX)
    await m.fs.mkdir(n, b"deeper", 0o755, CTX)
    await m.rename("n", "n2")


def _fake_tree(fake: FakeRemote) -> dict[str, bytes | None]:
    """path -> content (None for a folder) of what the fake holds."""
    out: dict[str, bytes | None] = {}

    def walk(folder: str, prefix: str) -> None:
        for sub in [f for f in fake.folders.values() if f.parent_uuid == folder]:
            if sub.status == "EXISTS":
                out[prefix + sub.name + "/"] = None
                walk(sub.uuid, prefix + sub.name + "/")
        for name in fake.names(folder):
            if fake.file_at(folder, name) is not None:
                out[prefix + name] = fake.content(folder, name)

    walk(ROOT, "")
    return out


EXPECTED_AFTER_QUEUE = {
    "e1/": None, "e1/c": b"b content",
    "n2/": None, "n2/a": b"a content", "n2/deeper/": None,
    "y": b"x content",
}  # fmt: skip


async def _replay_with_kth_call_failing(
    m: InProcess, k: int | None, after: bool
) -> tuple[int, dict[str, bytes | None], list[str]]:
    """Queue the changes offline, then replay them with the k-th call to Internxt failing
    (None: none fails). Returns how many calls the replay made, the fake's tree, our listing."""
    fake = _fake(m)
    count = [0]

    def kth(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        count[0] += 1
        if count[0] == k:
            fake.known_offline = True  # the mount takes Internxt for down, for a while
            return True
        return False

    async def outage_ends() -> None:
        while True:
            await trio.sleep(20)
            fake.known_offline = False

    async with serving(m):
        await _offline_queue(m)
        for call in REMOTE_CALLS:
            m.remote.fail(call, Unreachable("no answer"), after=after, when=kth)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outage_ends)
            async with _back_online(m):
                tree = _fake_tree(fake)
            nursery.cancel_scope.cancel()
        listing = await m.listdir()
    assert len(m.remote.failed) == (k is not None)  # the fault was met
    return count[0], tree, listing


async def test_every_call_of_the_replay_meeting_an_outage_lands_the_tree_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The replay of a queue of dependent changes, with its k-th call to Internxt failing for
    lack of an answer, before it was carried out or after (the answer lost), for every k: the
    server ends with exactly the tree the mount showed offline."""

    def fresh(name: str) -> InProcess:
        (tmp_path / name).mkdir()
        return make(tmp_path / name)

    calls, tree, listing = await _replay_with_kth_call_failing(fresh("clean"), None, False)
    assert tree == EXPECTED_AFTER_QUEUE and listing == ["e1", "n2", "y"]
    assert calls > 5, calls
    for k in range(1, calls + 1):
        for after in (False, True):
            _, tree, listing = await _replay_with_kth_call_failing(fresh(f"{k}-{after}"), k, after)
            assert (tree, listing) == (EXPECTED_AFTER_QUEUE, ["e1", "n2", "y"]), (k, after)


@pytest.mark.parametrize("answer", ["refused", "5xx"])
async def test_fsync_of_a_file_waiting_for_a_refused_mkdir_fails_instead_of_hanging(
    mounted: InProcess, autojump_clock: trio.abc.Clock, answer: str
) -> None:
    """As above, but Internxt refuses the queued mkdir for good (it is kept and retried,
    the file waits in it), or answers it only with 5xx while it answers the rest (hostile7:
    fsync waited as long as that lasted): fsync fails with EIO, as for an upload Internxt
    refuses or keeps failing, rather than wait for ever; the data stays, and is stored once
    the mkdir goes through."""
    fake = _fake(mounted)
    async with serving(mounted):
        fh = await _file_in_a_folder_made_offline(mounted, b"kept")
        if answer == "refused":
            error: Exception = RequestRejected("refused", status=400)
        else:
            error = ServerError("busy", status=503)
        mounted.remote.fail("create_folder", error, times=1 << 30)
        async with trio.open_nursery() as nursery:
            await nursery.start(mounted.fs.pending.run)
            start = trio.current_time()
            with trio.fail_after(QUEUE_FAILING_PATIENCE + 10):
                with pytest.raises(pyfuse3.FUSEError) as failed:
                    await mounted.fs.fsync(fh, False)
            assert failed.value.errno == errno.EIO
            if answer == "5xx":  # not before the patience: a moment of errors is waited out
                assert trio.current_time() - start >= QUEUE_FAILING_PATIENCE
            mounted.remote.clear()
            await mounted.fs.pending.wait_replayed()
            assert await mounted.uploader.wait_idle() == {}
            folder = fake.folder_at(ROOT, "d")
            assert folder is not None and fake.content(folder.uuid, "f.txt") == b"kept"
            nursery.cancel_scope.cancel()
        await mounted.fs.release(fh)


async def test_fsync_of_a_file_moved_into_a_folder_made_offline_during_its_upload(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """fsync of a file whose upload is running when the file is moved into a folder made
    offline (queued behind a mkdir the replay is still sending): that upload is not
    published (the file waits for the queue), and fsync returned as if stored, with nothing
    on Internxt and nothing fsynced locally. It must return once the file is stored where
    the user moved it."""
    fake = _fake(mounted)
    fake.add_folder(ROOT, "d")
    started, go = trio.Event(), trio.Event()
    inner_upload = fake.upload

    async def slow_upload(*args: Any, **kwargs: Any) -> str:
        started.set()
        await go.wait()
        return await inner_upload(*args, **kwargs)

    fake.upload = slow_upload  # type: ignore[method-assign]
    async with serving(mounted):
        await mounted.listdir()
        d = await mounted.lookup("d")
        await mounted.listdir(d)
        fake.known_offline = True
        m = int((await mounted.fs.mkdir(1, b"m", 0o755, CTX)).st_ino)
        fake.known_offline = False
        fh, _ = await mounted.create("f.txt", d)
        await mounted.fs.write(fh, 0, b"fsynced")
        mounted.remote.fail("create_folder", ServerError("busy", status=500), times=3)
        returned: list[bytes | None] = []
        fsynced = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(mounted.fs.pending.run)

            async def fsync() -> None:
                await mounted.fs.fsync(fh, False)
                folder = fake.folder_at(ROOT, "m")  # what Internxt holds when fsync returns
                returned.append(None if folder is None else fake.content(folder.uuid, "f.txt"))
                fsynced.set()

            nursery.start_soon(fsync)
            await started.wait()  # the upload runs
            await mounted.fs.rename(d, b"f.txt", m, b"f.txt", 0, CTX)  # queued behind the mkdir
            go.set()
            with trio.fail_after(600):
                await fsynced.wait()
            nursery.cancel_scope.cancel()
        assert returned == [b"fsynced"]
        await mounted.fs.release(fh)


async def test_a_name_held_for_a_moment_late_in_a_long_refusal_is_still_waited_out(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """The server refuses the queued move for 4.5 s while no entry shows at the name (its
    check reads a replica behind a delete elsewhere: REFUSAL_PATIENCE). Then another client
    holds the name for 3 s: the replay (every 2 s) sees it once. The replica window must
    count from when that holder was first seen, not from the first refusal, or ours is
    stored under a marked name for good."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"ours")
    async with serving(mounted):
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("a", "b")
        start = trio.current_time()
        mounted.remote.fail(
            "move_file", Conflict("A file with this name already exists", status=409),
            times=10_000, when=lambda args, kwargs: trio.current_time() < start + 4.5,
        )  # fmt: skip
        await _replayed_while_held(mounted, "b", after=4.5, held=3.0)


async def _file_in_a_folder_made_offline(m: InProcess, data: bytes) -> int:
    """mkdir "d" while Internxt is unreachable (queued), then "d/f.txt" made and written: its
    upload waits for the queued mkdir. Internxt answers again on return; returns the handle."""
    await m.listdir()
    fake = _fake(m)
    fake.known_offline = True
    d = int((await m.fs.mkdir(1, b"d", 0o755, CTX)).st_ino)
    fh, _ = await m.create("f.txt", d)
    await m.fs.write(fh, 0, data)
    fake.known_offline = False
    return fh


async def _file_behind_a_queued_move(m: InProcess, data: bytes) -> int:
    """The stored "a" renamed to "b" while Internxt is unreachable (queued: the root is held
    by the queue), then "f.txt" made and written in the root: its upload waits for the queue.
    Returns its handle; Internxt stays unreachable until the caller says otherwise."""
    await m.listdir()
    _fake(m).known_offline = True
    await m.rename("a", "b")
    fh, _ = await m.create("f.txt")
    await m.fs.write(fh, 0, data)
    return fh


async def test_fsync_behind_a_move_waiting_out_a_replica_is_not_failed_early(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """The queued move's first send meets a 5xx, then Internxt refuses it as taken for 20 s
    while no entry shows at the name (a replica behind a delete elsewhere: the replay waits
    that out, REFUSAL_PATIENCE). Internxt answers all along, so a file waiting behind the
    queue is not "failing": its fsync must wait and return once stored, not fail with EIO
    after QUEUE_FAILING_PATIENCE as if the server kept erring."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"moved")
    async with serving(mounted):
        fh = await _file_behind_a_queued_move(mounted, b"fsynced")
        fake.known_offline = False
        mounted.remote.fail("move_file", ServerError("busy", status=503), times=1)
        start = trio.current_time()
        mounted.remote.fail(
            "move_file", Conflict("A file with this name already exists", status=409),
            times=10_000, when=lambda args, kwargs: trio.current_time() < start + 20,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(mounted.fs.pending.run)
            with trio.fail_after(120):
                await mounted.fs.fsync(fh, False)
            assert trio.current_time() - start >= 20
            assert fake.content(ROOT, "f.txt") == b"fsynced"
            assert fake.content(ROOT, "b") == b"moved"
            nursery.cancel_scope.cancel()
        await mounted.fs.release(fh)


@pytest.mark.parametrize("between", ["5xx", "nothing"])
async def test_fsync_behind_a_mkdir_met_by_a_conflict_nothing_explains_is_not_left_hanging(
    mounted: InProcess, autojump_clock: trio.abc.Clock, between: str
) -> None:
    """(Review of 1ac7f83.) The queued mkdir meets 409 while no folder of that name shows
    (``_make_folder`` re-raises the Conflict: "a replica does not show it yet"), for ever,
    with 5xx in between or not. Unlike a move's _NotYet, nothing bounds that wait
    (no REFUSAL_PATIENCE): since failing_since is reset by every Conflict, the fsync
    behind it never returns. Before 1ac7f83 the "5xx" case failed with EIO after
    QUEUE_FAILING_PATIENCE; the "nothing" case hung before too."""
    async with serving(mounted):
        fh = await _file_in_a_folder_made_offline(mounted, b"kept")
        calls = [0]

        def odd(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
            calls[0] += 1
            return between == "5xx" and calls[0] % 2 == 1

        mounted.remote.fail("create_folder", ServerError("busy", status=503),
                            times=1 << 30, when=odd)  # fmt: skip
        mounted.remote.fail("create_folder", Conflict("Folder already exists", status=409),
                            times=1 << 30)  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(mounted.fs.pending.run)
            with trio.fail_after(600):
                with pytest.raises(pyfuse3.FUSEError) as failed:
                    await mounted.fs.fsync(fh, False)
            assert failed.value.errno == errno.EIO
            nursery.cancel_scope.cancel()
        await mounted.fs.release(fh)


async def test_fsync_behind_a_move_onto_a_name_another_client_keeps_replacing_ends(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """(Review of 1ac7f83.) Another client replaces "b" every 2 s (an editor's atomic save:
    a new entry, a new uuid, each time), so the name is held all along, each holder for less
    than the replica window. _landed_or_held waits the window out per holder set, so the
    replay meets _NotYet for ever; since _NotYet resets failing_since, the fsync of a file
    behind the queue never returns (before 1ac7f83: EIO after QUEUE_FAILING_PATIENCE).
    Either the replay or the fsync must end."""
    fake = _fake(mounted)
    fake.add_file(ROOT, "a", b"ours")
    async with serving(mounted):
        fh = await _file_behind_a_queued_move(mounted, b"fsynced")
        holder = [fake.add_file(ROOT, "b", b"theirs 0")]

        async def other_client() -> None:
            n = 0
            while True:
                await trio.sleep(2)
                n += 1
                fake.delete_elsewhere(holder[0])
                holder[0] = fake.add_file(ROOT, "b", f"theirs {n}".encode())

        fake.known_offline = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_client)
            await nursery.start(mounted.fs.pending.run)
            with trio.fail_after(600):
                try:
                    await mounted.fs.fsync(fh, False)
                except pyfuse3.FUSEError as exc:
                    assert exc.errno == errno.EIO
            nursery.cancel_scope.cancel()
        await mounted.fs.release(fh)
