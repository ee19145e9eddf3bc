"""Uploader against fake network/drive objects, on trio's autojump clock (deterministic)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.journal import FileRecord, Journal, Orphan
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.remote import InternxtRemote
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt.errors import Conflict, NotFound, QuotaExceeded, ServerError, Unreachable

MiB = 1024 * 1024


class FakeNetwork:
    def __init__(self, seconds_per_mib: float = 0.1) -> None:
        self.objects: dict[str, bytes] = {}
        self.seconds_per_mib = seconds_per_mib
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[int] = []
        self.fail_next: list[Exception] = []
        self.during: Callable[[], Awaitable[None]] | None = None  # runs mid-upload
        self._ids = itertools.count(1)

    async def upload(
        self,
        read: Callable[[int, int], Awaitable[bytes]],
        size: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> str:
        assert size > 0, "the network is never called for 0 bytes"
        self.calls.append(size)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(0.01 + self.seconds_per_mib * size / MiB)
            if self.fail_next:
                raise self.fail_next.pop(0)
            data = b"".join([await read(off, 64 * 1024) for off in range(0, size, 64 * 1024)])
            assert len(data) == size
            if self.during is not None:  # after the data is sent, before finish returns
                hook, self.during = self.during, None
                await hook()
            file_id = f"obj{next(self._ids)}"
            self.objects[file_id] = data
            return file_id
        finally:
            self.in_flight -= 1


@dataclass
class Entry:
    uuid: str
    folder: str
    name: str
    size: int
    file_id: str | None
    modified: float
    status: str = "EXISTS"


class FakeDrive:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.log: list[str] = []
        self.fail_next: list[Exception] = []
        self.fail_name: dict[str, Exception] = {}  # fails the next create of that name
        self.fail_delete: list[Exception] = []
        self.deletes_in_flight = 0
        self.max_deletes_in_flight = 0
        self._ids = itertools.count(1)

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    async def create_file(
        self,
        folder_uuid: str,
        name: str,
        size: int,
        file_id: str | None,
        ctime: float | None = None,
        mtime: float | None = None,
    ) -> Entry:
        self.log.append(f"create {name}")
        await trio.sleep(0.01)
        self._maybe_fail()
        if name in self.fail_name:
            raise self.fail_name.pop(name)
        assert (file_id is None) == (size == 0)
        if any(e.folder == folder_uuid and e.name == name for e in self.entries.values()):
            raise Conflict("File already exists", status=409)
        entry = Entry(f"uuid{next(self._ids)}", folder_uuid, name, size, file_id, mtime or 0.0)
        self.entries[entry.uuid] = entry
        return entry

    async def replace_file(
        self, uuid: str, file_id: str | None, size: int, mtime: float | None = None
    ) -> Entry:
        self.log.append(f"replace {uuid}")
        assert file_id is not None and size > 0  # Internxt cannot replace to empty
        await trio.sleep(0.01)
        self._maybe_fail()
        if uuid not in self.entries:
            raise NotFound("gone", status=404)
        entry = self.entries[uuid]
        entry.file_id, entry.size, entry.modified = file_id, size, mtime or 0.0
        return entry

    async def file_meta(self, uuid: str, stale: object = None) -> Entry:
        if uuid not in self.entries:
            raise NotFound("File not found", status=404)
        return self.entries[uuid]

    async def file_limits(self) -> int | None:
        return None  # no per-file cap

    async def delete_file(self, uuid: str) -> None:
        self.log.append(f"delete {uuid}")
        self.deletes_in_flight += 1
        self.max_deletes_in_flight = max(self.max_deletes_in_flight, self.deletes_in_flight)
        try:
            await trio.sleep(0.01)
            if self.fail_delete:
                raise self.fail_delete.pop(0)
        finally:
            self.deletes_in_flight -= 1
        if self.entries.pop(uuid, None) is None:
            raise NotFound("gone", status=404)


class Setup:
    def __init__(self, tmp_path: Path, **kwargs: object) -> None:
        self.journal = Journal(tmp_path / "state.db")
        self.cache = BlockCache(tmp_path, self.journal, 1 << 40, self.fetch)
        self.network = FakeNetwork()
        self.drive = FakeDrive()
        # The real adapter over these fakes: they model timing and concurrency, which the
        # in-memory FakeRemote (tests/harness/fake_remote.py) does not.
        remote = InternxtRemote(self.drive, self.network)  # type: ignore[arg-type]
        self.locks = KeyedLock()
        self.uploader = Uploader(self.journal, self.cache, remote, locks=self.locks, **kwargs)  # type: ignore[arg-type]

    async def fetch(self, record: FileRecord, offset: int, length: int) -> bytes:
        return self.network.objects[record.remote_file_id or ""][offset : offset + length]

    async def new_file(self, name: str, data: bytes, folder: str = "root") -> int:
        record = self.journal.new_file(parent_uuid=folder, name=name, mtime_ns=10**18, dirty=True)
        await self.cache.write(record.local_id, 0, data)
        return record.local_id

    def remote_content(self, local_id: int) -> bytes:
        record = self.journal.get(local_id)
        assert record is not None and record.remote_uuid is not None
        entry = self.drive.entries[record.remote_uuid]
        return b"" if entry.file_id is None else self.network.objects[entry.file_id]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path, quiet_period=1.0)


async def test_create_then_replace(setup: Setup, autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a.txt", b"one")
        setup.uploader.schedule(fid)
        assert await setup.uploader.wait_idle(fid) == {}
        record = setup.journal.get(fid)
        assert record is not None and not record.dirty and record.remote_uuid == "uuid1"
        assert record.remote_size == record.remote_valid_len == 3
        assert setup.remote_content(fid) == b"one"
        assert setup.drive.entries["uuid1"].modified == 1e9

        await setup.cache.write(fid, 3, b"-two")
        setup.uploader.schedule(fid)
        await setup.uploader.wait_idle(fid)
        assert setup.drive.log == ["create a.txt", "replace uuid1"]
        assert setup.remote_content(fid) == b"one-two"
        assert setup.cache.stats()["bytes_dirty"] == 0
        nursery.cancel_scope.cancel()


async def test_quiet_period(setup: Setup, autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a", b"x")
        setup.uploader.schedule(fid)
        await trio.sleep(0.6)
        setup.uploader.schedule(fid)  # closed again: the quiet period starts over
        await trio.sleep(0.6)
        assert setup.network.calls == []
        await trio.sleep(0.6)
        assert setup.network.calls == [1]
        nursery.cancel_scope.cancel()


async def test_zero_byte_file_skips_network(setup: Setup, autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        record = setup.journal.new_file(parent_uuid="root", name="empty", dirty=True)
        setup.uploader.schedule(record.local_id)
        await setup.uploader.wait_idle(record.local_id)
        assert setup.network.calls == []
        assert setup.drive.entries["uuid1"].file_id is None
        nursery.cancel_scope.cancel()


async def test_parallel_uploads_bounded(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    s = Setup(tmp_path, concurrency=3, quiet_period=0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        ids = [await s.new_file(f"f{i}", b"x" * 1000) for i in range(10)]
        for fid in ids:
            s.uploader.schedule(fid)
        assert await s.uploader.wait_idle() == {}
        assert s.network.max_in_flight == 3
        assert all(s.remote_content(fid) == b"x" * 1000 for fid in ids)
        nursery.cancel_scope.cancel()


async def test_concurrency_follows_file_size(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Small files (a few round trips each) may fill up to `small_concurrency` slots; files
    at or over `small_file_threshold` stay within `concurrency`, also alongside small ones."""
    s = Setup(
        tmp_path, concurrency=2, small_concurrency=6, small_file_threshold=4096, quiet_period=0.0
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        heavy = [await s.new_file(f"h{i}", b"H" * 8192) for i in range(4)]
        small = [await s.new_file(f"s{i}", b"s" * 100) for i in range(12)]
        sizes: list[list[int]] = []
        upload = s.network.upload

        async def watched(
            read: Callable[[int, int], Awaitable[bytes]],
            size: int,
            progress: Callable[[int, int], None] | None = None,
        ) -> str:
            sizes.append(sorted(s.uploader._running.values()))  # the slots taken
            return await upload(read, size, progress)

        s.network.upload = watched  # type: ignore[method-assign]
        for fid in heavy + small:
            s.uploader.schedule(fid)
        assert await s.uploader.wait_idle() == {}
        assert s.network.max_in_flight == 6
        assert max(sum(1 for x in running if x >= 4096) for running in sizes) == 2
        assert all(s.remote_content(fid) == b"s" * 100 for fid in small)
        assert all(s.remote_content(fid) == b"H" * 8192 for fid in heavy)
        nursery.cancel_scope.cancel()


async def test_small_files_not_stuck_behind_big(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    s = Setup(tmp_path, concurrency=2, quiet_period=0.0, big_file_threshold=MiB)
    s.network.seconds_per_mib = 10.0
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        big = [await s.new_file(f"big{i}", b"B" * 2 * MiB) for i in range(3)]
        for fid in big:
            s.uploader.schedule(fid)
        await trio.sleep(0.1)
        small = await s.new_file("small", b"s")
        start = trio.current_time()
        s.uploader.schedule(small)
        await s.uploader.wait_idle(small)
        assert trio.current_time() - start < 1.0  # not after the 20 s big uploads
        assert s.network.in_flight == 1  # one big one still going: only concurrency-1 big
        await s.uploader.wait_idle()
        assert s.network.max_in_flight == 2
        nursery.cancel_scope.cancel()


async def test_change_during_upload_is_not_published_and_reuploaded(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a", b"first")

        async def write_meanwhile() -> None:
            await setup.cache.write(fid, 0, b"FIRST")

        setup.network.during = write_meanwhile
        setup.uploader.schedule(fid)
        assert await setup.uploader.wait_idle(fid) == {}
        assert setup.network.calls == [5, 5]
        assert setup.drive.log == ["create a"]  # the mixed first object was never published
        assert setup.remote_content(fid) == b"FIRST"
        assert setup.journal.orphan_rows() == [Orphan("obj1", fid, "unpublished")]
        assert not setup.journal.get(fid).dirty  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()


async def test_change_during_publish_keeps_file_dirty(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a", b"12345")
        real_create = setup.drive.create_file

        async def create_and_write(*args: object, **kwargs: object) -> Entry:
            entry = await real_create(*args, **kwargs)  # type: ignore[arg-type]
            await setup.cache.truncate(fid, 2)  # lands while the create is answered
            return entry

        setup.drive.create_file = create_and_write  # type: ignore[method-assign]
        setup.uploader.schedule(fid)
        await trio.sleep(1.5)
        record = setup.journal.get(fid)
        assert record is not None and record.dirty and record.remote_uuid == "uuid1"
        assert record.remote_valid_len <= 2  # truncated bytes of the new object never count
        assert await setup.cache.read(fid, 0, 10) == b"12"
        setup.drive.create_file = real_create  # type: ignore[method-assign]
        await setup.uploader.wait_idle(fid)
        assert setup.remote_content(fid) == b"12"
        assert setup.drive.log[-1] == "replace uuid1"
        nursery.cancel_scope.cancel()


async def test_failures_stay_queued_and_retry(setup: Setup, autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a", b"data")
        setup.network.fail_next = [ServerError("503", status=503), QuotaExceeded("full")]
        setup.uploader.schedule(fid, immediate=True)
        with pytest.raises(ServerError):
            await setup.uploader.wait_idle(fid)
        stats = setup.uploader.stats()
        assert stats["pending_files"] == 1 and stats["errors"][fid]["attempts"] == 1
        assert setup.journal.get(fid).dirty  # type: ignore[union-attr]
        with pytest.raises(QuotaExceeded):
            await setup.uploader.wait_idle(fid)  # fsync retries at once
        assert setup.uploader.stats()["errors"][fid]["quota"]
        await trio.sleep(20)  # backoff: retried on its own
        assert setup.remote_content(fid) == b"data"
        assert setup.uploader.stats()["errors"] == {}
        assert setup.uploader.stats()["retries"] == 2
        nursery.cancel_scope.cancel()


async def test_failed_publish_reuses_uploaded_object(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a", b"data")
        setup.drive.fail_next = [ServerError("502", status=502)]
        setup.uploader.schedule(fid)
        await trio.sleep(30)
        assert setup.remote_content(fid) == b"data"
        assert setup.network.calls == [4]  # uploaded once, published on the retry
        nursery.cancel_scope.cancel()


async def test_rename_before_publish_uses_new_name(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("tmp-123", b"content")

        async def rename() -> None:
            async with setup.locks.hold(fid):
                setup.journal.update(fid, parent_uuid="other", name="final")

        setup.network.during = rename
        setup.uploader.schedule(fid)
        await setup.uploader.wait_idle(fid)
        entry = setup.drive.entries["uuid1"]
        assert (entry.folder, entry.name) == ("other", "final")
        nursery.cancel_scope.cancel()


async def test_unlink_during_upload_publishes_nothing(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("gone", b"content")

        async def unlink() -> None:
            async with setup.locks.hold(fid):
                setup.cache.drop(fid)
                setup.journal.delete(fid)

        setup.network.during = unlink
        setup.uploader.schedule(fid)
        assert await setup.uploader.wait_idle(fid) == {}
        assert setup.drive.entries == {}
        assert setup.journal.orphan_rows() == [Orphan("obj1", fid, "unpublished")]
        nursery.cancel_scope.cancel()


async def test_conflict_hook(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    seen: list[str] = []

    async def adopt(record: FileRecord, error: Conflict) -> str | None:
        seen.append(record.name)
        return "uuid1"

    s = Setup(tmp_path, quiet_period=0.0, on_conflict=adopt)
    await s.drive.create_file("root", "a", 3, "old")
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        fid = await s.new_file("a", b"new")
        s.uploader.schedule(fid)
        await s.uploader.wait_idle(fid)
        assert seen == ["a"]
        assert s.journal.get(fid).remote_uuid == "uuid1"  # type: ignore[union-attr]
        assert s.remote_content(fid) == b"new"
        nursery.cancel_scope.cancel()


async def test_emptied_file_is_deleted_and_created_never_replaced(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    """Internxt cannot replace to empty content (docs/protocol.md): the entry goes and an
    empty one takes its name."""
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a.txt", b"one")
        setup.uploader.schedule(fid)
        await setup.uploader.wait_idle(fid)
        await setup.cache.truncate(fid, 0)
        setup.journal.update(fid, size=0, dirty=True)
        setup.uploader.schedule(fid)
        assert await setup.uploader.wait_idle(fid) == {}
        assert setup.drive.log == ["create a.txt", "delete uuid1", "create a.txt"]
        assert setup.journal.get(fid).remote_uuid == "uuid2"  # type: ignore[union-attr]
        assert setup.remote_content(fid) == b""
        nursery.cancel_scope.cancel()


async def test_empty_file_over_a_name_taken_remotely_replaces_it_by_delete_and_create(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async def adopt(record: FileRecord, error: Conflict) -> str | None:
        return "uuid1"

    s = Setup(tmp_path, quiet_period=0.0, on_conflict=adopt)
    await s.drive.create_file("root", "a", 3, "old")
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        record = s.journal.new_file(parent_uuid="root", name="a", dirty=True)
        s.uploader.schedule(record.local_id)
        assert await s.uploader.wait_idle(record.local_id) == {}
        assert s.drive.log == ["create a", "create a", "delete uuid1", "create a"]
        assert list(s.drive.entries) == ["uuid2"]
        assert s.remote_content(record.local_id) == b""
        nursery.cancel_scope.cancel()


async def test_conflict_default_is_an_error(setup: Setup, autojump_clock: trio.abc.Clock) -> None:
    await setup.drive.create_file("root", "a", 3, "old")
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a", b"new")
        setup.uploader.schedule(fid)
        with pytest.raises(Conflict):
            await setup.uploader.wait_idle(fid)
        assert setup.journal.get(fid).dirty  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()


async def test_wait_idle_all_and_timeout(setup: Setup, autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        assert await setup.uploader.wait_idle() == {}
        bad = await setup.new_file("bad", b"2")
        ok = await setup.new_file("ok", b"1")
        setup.drive.fail_name["bad"] = QuotaExceeded("full")
        setup.uploader.schedule(bad)
        setup.uploader.schedule(ok)
        errors = await setup.uploader.wait_idle()
        assert list(errors) == [bad] and isinstance(errors[bad], QuotaExceeded)
        assert setup.remote_content(ok) == b"1"
        setup.network.seconds_per_mib = 1e6
        slow = await setup.new_file("slow", b"x" * MiB)
        with pytest.raises(TimeoutError):
            await setup.uploader.wait_idle(slow, timeout=5)
        nursery.cancel_scope.cancel()


async def test_resume_after_crash(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    s = Setup(tmp_path)
    fid = await s.new_file("a", b"unsent")
    s.journal.update(fid, pending_file_id="objX")
    # "Crash": a new journal, cache and uploader on the same directory.
    s2 = Setup(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(s2.uploader.run)
        s2.uploader.resume()
        assert await s2.uploader.wait_idle() == {}
        assert s2.remote_content(fid) == b"unsent"
        assert s2.journal.orphan_rows() == [Orphan("objX", fid, "uncertain", "root", "a")]
        nursery.cancel_scope.cancel()


async def test_pending_remote_delete(setup: Setup, autojump_clock: trio.abc.Clock) -> None:
    entry = await setup.drive.create_file("root", "a", 0, None)
    record = setup.journal.new_file(parent_uuid="root", name="a", remote_uuid=entry.uuid)
    setup.journal.update(record.local_id, deleted=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        setup.uploader.resume()
        assert await setup.uploader.wait_idle() == {}
        assert setup.drive.entries == {}
        # Found unlinked at resume(): no descriptor survives a restart, so the record goes
        # with its remote delete (it used to stay in the journal for ever).
        assert setup.journal.get(record.local_id) is None
        nursery.cancel_scope.cancel()


async def test_close_flushes_without_running_scheduler(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    fid = await setup.new_file("a", b"data")
    setup.uploader.schedule(fid)
    assert await setup.uploader.close(timeout=60) == 0
    assert setup.remote_content(fid) == b"data"


async def test_close_timeout_leaves_pending(setup: Setup, autojump_clock: trio.abc.Clock) -> None:
    setup.network.seconds_per_mib = 1e6
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        fid = await setup.new_file("a", b"x" * MiB)
        setup.uploader.schedule(fid)
        assert await setup.uploader.close(timeout=10) == 1
    assert setup.journal.get(fid).dirty  # type: ignore[union-attr]


async def test_objects_of_failed_publishes_are_orphans_by_what_the_failure_says(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    """A refused create (quota) leaves its object kept for a retry; once the file changes, it
    is an orphan the sweeper may delete unchecked. A create that fails without an answer may
    have landed: its object is 'uncertain' at once, aimed at the file's place, and stays so."""
    s = setup
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        fid = await s.new_file("a", b"first")
        s.drive.fail_next = [QuotaExceeded("no space", status=420)]
        s.uploader.schedule(fid, immediate=True)
        assert fid in await s.uploader.wait_idle()
        assert s.journal.orphan_rows() == []  # kept: the retry publishes the same object
        await s.cache.write(fid, 0, b"FIRST")  # a new version: the kept object is superseded
        s.uploader.schedule(fid, immediate=True)
        assert await s.uploader.wait_idle(fid) == {}
        assert s.journal.orphan_rows() == [Orphan("obj1", fid, "unpublished")]
        assert s.remote_content(fid) == b"FIRST"

        gid = await s.new_file("b", b"second")
        s.drive.fail_next = [Unreachable("connection dropped")]  # after the retries (client)
        s.uploader.schedule(gid, immediate=True)
        assert gid in await s.uploader.wait_idle()
        (row,) = [o for o in s.journal.orphan_rows() if o.local_id == gid]
        assert (row.reason, row.parent_uuid, row.name) == ("uncertain", "root", "b")
        await s.cache.write(gid, 0, b"SECOND")
        s.uploader.schedule(gid, immediate=True)
        assert await s.uploader.wait_idle(gid) == {}
        # Never downgraded to unpublished (which would get it deleted unchecked).
        assert Orphan("obj3", gid, "uncertain", "root", "b") in s.journal.orphan_rows()
        nursery.cancel_scope.cancel()


async def _stored(s: Setup, folder: str, name: str) -> int:
    entry = await s.drive.create_file(folder, name, 0, None)
    return s.journal.new_file(parent_uuid=folder, name=name, remote_uuid=entry.uuid).local_id


def _unlink(s: Setup, local_id: int) -> int:
    """What unlink does to a stored file: the record marked deleted, the delete queued."""
    s.journal.update(local_id, deleted=True)
    s.uploader.schedule(local_id, immediate=True)
    return local_id


async def _pending_delete(s: Setup, folder: str, name: str) -> int:
    return _unlink(s, await _stored(s, folder, name))


async def test_deletes_run_concurrently_within_the_bound(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """unlink queues the delete (rm -rf): they share the upload slots, several at a time;
    rmdir waits for those of its folder only; status counts them; records go once sent."""
    s = Setup(tmp_path, concurrency=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        ids = [await _stored(s, "dir", f"f{i}") for i in range(20)]
        other = await _stored(s, "elsewhere", "g")
        for local_id in [*ids, other]:
            _unlink(s, local_id)
        assert s.uploader.stats()["pending_deletes"] == 21
        await s.uploader.wait_deletes_in("dir")
        assert [e.name for e in s.drive.entries.values()] in ([], ["g"])
        assert s.drive.max_deletes_in_flight == 4
        assert all(s.journal.get(i) is None for i in ids)
        assert await s.uploader.wait_idle() == {}
        assert s.journal.get(other) is None and s.uploader.stats()["pending_deletes"] == 0
        nursery.cancel_scope.cancel()


async def test_rmdir_wait_raises_a_failed_delete(
    setup: Setup, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(setup.uploader.run)
        setup.drive.fail_delete = [ServerError("boom", status=500)]
        await _pending_delete(setup, "dir", "f")
        with pytest.raises(ServerError):
            await setup.uploader.wait_deletes_in("dir")
        await setup.uploader.wait_deletes_in("dir")  # retried at once, and sent
        assert setup.drive.entries == {}
        nursery.cancel_scope.cancel()


async def test_new_file_under_the_name_of_a_pending_delete(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The old entry still holds the name (its delete failed and waits out a backoff): the
    create meets Conflict, the old entry's delete is sent first, and the new file is created;
    the conflict policy never adopts the old entry (its delete would take the new content)."""
    adopted: list[str] = []

    async def adopt(record: FileRecord, error: Conflict) -> str | None:
        adopted.append(record.name)
        return next(e.uuid for e in s.drive.entries.values() if e.name == record.name)

    s = Setup(tmp_path, quiet_period=0.0, on_conflict=adopt)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        s.drive.fail_delete = [ServerError("boom", status=500)]
        old = await _pending_delete(s, "root", "a")
        assert list(await s.uploader.wait_idle(among={old})) == [old]  # failed, backing off
        fid = await s.new_file("a", b"new")
        s.uploader.schedule(fid, immediate=True)
        await s.uploader.wait_idle(fid)
        assert adopted == []
        assert s.remote_content(fid) == b"new"
        assert [e.name for e in s.drive.entries.values()] == ["a"]
        assert s.journal.get(old) is None
        nursery.cancel_scope.cancel()


async def test_conflict_hook_naming_an_entry_gone_by_the_replace_creates_again(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Under read-replica lag the hook may adopt an entry a lagging listing still shows,
    deleted by the time of the replace (Internxt answers "DELETED files can not be
    replaced", a NotFound to the client): the file is created, the publish does not fail."""
    drive: list[FakeDrive] = []

    async def adopt(record: FileRecord, error: Conflict) -> str | None:
        # The entry that took the name is deleted before our replace reaches it.
        drive[0].entries.pop("uuid1")
        return "uuid1"

    s = Setup(tmp_path, quiet_period=0.0, on_conflict=adopt)
    drive.append(s.drive)
    await s.drive.create_file("root", "a", 3, "old")
    async with trio.open_nursery() as nursery:
        await nursery.start(s.uploader.run)
        fid = await s.new_file("a", b"new")
        s.uploader.schedule(fid)
        assert await s.uploader.wait_idle(fid) == {}
        # (The first create is the other client's, above.)
        assert s.drive.log == ["create a", "create a", "replace uuid1", "create a"]
        assert s.journal.get(fid).remote_uuid == "uuid2"  # type: ignore[union-attr]
        assert s.remote_content(fid) == b"new"
        nursery.cancel_scope.cancel()
