"""Conflict rule 1 before a delete of ours (internxtfs/fs/conflicts.py, ``changed_since_known``):
a delete that goes out later than the user's call never takes a version another client stored
in place (same entry, new content) after the unlink or the rename over; a delete sent at once
costs no extra request. The e2e side (real mount, emulator, outage, kill -9) is
tests/e2e/test_delete_check.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

from internxtfs.internxt.errors import ServerError, Unreachable
from tests.fs_api.conftest import make, serving
from tests.harness.fake_remote import ROOT, FakeRemote
from tests.harness.in_process import InProcess, build


def _fake(m: InProcess) -> FakeRemote:
    return m.remote.inner  # type: ignore[no-any-return]


async def _settled(m: InProcess) -> None:
    """Wait until every pending upload and delete is done, retries after failures included."""
    for _ in range(10):
        if await m.uploader.wait_idle() == {}:
            return
    raise AssertionError("still failing")


def _boom() -> ServerError:
    return ServerError("injected failure", status=500)


def _count_meta(m: InProcess) -> list[str]:
    """The uuids ``file_meta`` is asked about from now on."""
    fake = _fake(m)
    asked: list[str] = []
    inner = fake.file_meta

    async def file_meta(uuid: str, **kw: Any) -> Any:
        asked.append(uuid)
        return await inner(uuid, **kw)

    fake.file_meta = file_meta  # type: ignore[method-assign]
    return asked


def _replaced_while_the_delete_fails(m: InProcess, uuid: str, data: bytes) -> None:
    """The next delete of ``uuid`` fails (an outage, a 5xx), and meanwhile another client
    points the entry at new content."""

    def when(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        if args[1] != uuid:
            return False
        _fake(m).replace_elsewhere(uuid, data)
        return True

    m.remote.fail("delete", _boom(), when=when)


async def _stored(m: InProcess, name: str, data: bytes) -> str:
    await m.write_file(name, data)
    assert await m.uploader.wait_idle() == {}
    entry = _fake(m).file_at(ROOT, name)
    assert entry is not None
    return entry.uuid


async def test_a_delete_sent_at_once_costs_no_extra_request(mounted: InProcess) -> None:
    async with serving(mounted):
        await _stored(mounted, "a.txt", b"ours")
        asked = _count_meta(mounted)
        await mounted.unlink("a.txt")
        assert await mounted.uploader.wait_idle() == {}
    assert _fake(mounted).names(ROOT) == []
    assert asked == []


async def test_a_retried_delete_keeps_a_version_stored_in_place_meanwhile(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        uuid = await _stored(mounted, "a.txt", b"ours")
        _replaced_while_the_delete_fails(mounted, uuid, b"theirs, stored after the unlink")
        await mounted.unlink("a.txt")
        await _settled(mounted)  # retried after the backoff
        assert mounted.journal.all_files() == []  # nothing left to send
        # Its name is free here, so it stays under it, and shows again at the next listing.
        mounted.fs.meta.invalidate(mounted.fs.table.get(1))  # type: ignore[arg-type]
        assert await mounted.listdir() == ["a.txt"]
    assert fake.names(ROOT) == ["a.txt"]
    assert fake.file_at(ROOT, "a.txt").uuid == uuid  # type: ignore[union-attr]
    assert fake.content(ROOT, "a.txt") == b"theirs, stored after the unlink"


async def test_a_retried_delete_of_unchanged_content_is_sent(mounted: InProcess) -> None:
    async with serving(mounted):
        uuid = await _stored(mounted, "a.txt", b"ours")
        asked = _count_meta(mounted)
        mounted.remote.fail("delete", _boom())
        await mounted.unlink("a.txt")
        await _settled(mounted)
    assert _fake(mounted).names(ROOT) == []
    assert asked == [uuid]  # one check, before the retry


async def test_our_own_publish_whose_answer_was_lost_is_not_taken_for_another_clients(
    mounted: InProcess,
) -> None:
    """The entry holds an object of ours whose replace was never confirmed: the retried delete
    must still go (it is ours, not another client's version)."""
    async with serving(mounted):
        uuid = await _stored(mounted, "a.txt", b"v1")
        mounted.remote.fail("replace_file", Unreachable("answer lost"), after=True)
        ino = await mounted.lookup("a.txt")
        fh = await mounted.open(ino, flags=os.O_RDWR)
        await mounted.fs.write(fh, 0, b"v2")
        await mounted.fs.release(fh)
        await mounted.uploader.wait_idle()  # the replace landed, its answer did not come
        assert _fake(mounted).content(ROOT, "a.txt") == b"v2"
        mounted.remote.fail("delete", _boom(), when=lambda args, kw: args[1] == uuid)
        await mounted.unlink("a.txt")
        await _settled(mounted)
    assert _fake(mounted).names(ROOT) == []


async def test_our_new_file_under_the_name_keeps_theirs_beside(mounted: InProcess) -> None:
    """Unlinked, replaced in place elsewhere while our delete waits, and a new file of ours
    under the same name: ours takes the name, theirs is kept beside it, neither is lost."""
    fake = _fake(mounted)
    async with serving(mounted):
        uuid = await _stored(mounted, "a.txt", b"old")
        mounted.remote.fail("delete", _boom(), times=3, when=lambda args, kw: args[1] == uuid)
        await mounted.unlink("a.txt")
        await mounted.uploader.wait_idle()
        fake.replace_elsewhere(uuid, b"theirs")
        await mounted.write_file("a.txt", b"our new file")
        assert await mounted.uploader.wait_idle() == {}
    names = fake.names(ROOT)
    assert len(names) == 2 and "a.txt" in names, names
    [kept] = [n for n in names if n != "a.txt"]
    assert kept.startswith("a (internxtfs conflict ") and kept.endswith(").txt")
    assert fake.content(ROOT, "a.txt") == b"our new file"
    assert fake.file_at(ROOT, kept).uuid == uuid  # type: ignore[union-attr]
    assert fake.content(ROOT, kept) == b"theirs"


async def test_a_rename_overs_late_target_delete_keeps_a_version_stored_in_place(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        target = await _stored(mounted, "a.txt", b"old target")
        await _stored(mounted, "new.txt", b"renamed over it")
        _replaced_while_the_delete_fails(mounted, target, b"theirs, stored in place")
        await mounted.rename("new.txt", "a.txt")
        # The background pass meets the failure; the next one (flush does the same) checks.
        while fake.file_at(ROOT, "a.txt") is None or mounted.fs.replacements.pending():
            await mounted.fs.replacements.resolve_all()
    names = fake.names(ROOT)
    assert fake.content(ROOT, "a.txt") == b"renamed over it"
    [kept] = [n for n in names if n != "a.txt"]
    assert kept.startswith("a (internxtfs conflict ") and kept.endswith(").txt"), names
    assert fake.file_at(ROOT, kept).uuid == target  # type: ignore[union-attr]
    assert fake.content(ROOT, kept) == b"theirs, stored in place"


async def test_a_rename_overs_target_deleted_at_once_costs_no_extra_request(
    mounted: InProcess,
) -> None:
    async with serving(mounted):
        target = await _stored(mounted, "a.txt", b"old target")
        await _stored(mounted, "new.txt", b"renamed over it")
        asked = _count_meta(mounted)
        await mounted.rename("new.txt", "a.txt")
        assert await mounted.fs.replacements.resolve_all() == 0
    assert _fake(mounted).names(ROOT) == ["a.txt"]
    assert target not in asked


async def test_a_delete_from_an_earlier_run_is_checked_even_when_flush_sends_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """kill -9 with a delete journaled; another client replaces the file in place; the next
    mount's flush (which schedules every pending delete anew) must still check it."""
    first = make(tmp_path)
    fake = _fake(first)
    async with serving(first):
        uuid = await _stored(first, "a.txt", b"ours")
        first.remote.fail("delete", _boom(), times=100)  # never sent in this run
        await first.unlink("a.txt")
        await first.uploader.wait_idle()
    first.remote.clear()
    fake.replace_elsewhere(uuid, b"theirs")
    again = build(tmp_path, first.remote)
    async with serving(again):
        await _settled(again)  # flush: schedules it at once
    assert fake.names(ROOT) == ["a.txt"] and fake.content(ROOT, "a.txt") == b"theirs"
    assert again.journal.all_files() == []


async def test_a_file_unlinked_while_open_keeps_a_version_stored_in_place_beside(
    mounted: InProcess,
) -> None:
    """Its entry waits aside (a hidden name) until the last close; another client replaces it
    meanwhile: at the close it is not deleted but given a visible conflict name."""
    fake = _fake(mounted)
    async with serving(mounted):
        ino = await mounted.write_file("a.txt", b"ours")
        assert await mounted.uploader.wait_idle() == {}
        uuid = fake.file_at(ROOT, "a.txt").uuid  # type: ignore[union-attr]
        fh = await mounted.open(ino)
        await mounted.unlink("a.txt")
        fake.replace_elsewhere(uuid, b"theirs")
        await mounted.fs.release(fh)
        await _settled(mounted)
    [kept] = fake.names(ROOT)
    assert kept.startswith(f"unlinked {uuid[:8]} (internxtfs conflict "), kept
    assert fake.content(ROOT, kept) == b"theirs"


async def test_an_offline_rename_over_keeps_the_targets_version_stored_in_place_beside(
    mounted: InProcess, autojump_clock: trio.abc.Clock
) -> None:
    """Offline, mv over a stored file is queued as the target's delete and a move
    (fs/pending.py). Another client stores a new version of the target in place before
    Internxt answers again: the replayed move takes the name, theirs is kept beside it."""
    fake = _fake(mounted)
    async with serving(mounted):
        target = await _stored(mounted, "a.txt", b"old target")
        await _stored(mounted, "new.txt", b"renamed over it")
        fake.known_offline = True
        mounted.remote.fail("delete", Unreachable("down"), times=1000)
        await mounted.rename("new.txt", "a.txt")
        assert mounted.fs.pending.queued() == 1
        await trio.sleep(30)  # the outage goes on
        fake.replace_elsewhere(target, b"theirs, stored in place")
        mounted.remote.clear()
        fake.known_offline = False
        async with trio.open_nursery() as nursery:
            await nursery.start(mounted.fs.pending.run)
            with trio.fail_after(600):
                await mounted.fs.pending.wait_replayed()
                await _settled(mounted)
            nursery.cancel_scope.cancel()
    names = fake.names(ROOT)
    assert fake.content(ROOT, "a.txt") == b"renamed over it", names
    [kept] = [n for n in names if n != "a.txt"]
    assert kept.startswith("a (internxtfs conflict ") and kept.endswith(").txt"), names
    assert fake.file_at(ROOT, kept).uuid == target  # type: ignore[union-attr]
    assert fake.content(ROOT, kept) == b"theirs, stored in place"
