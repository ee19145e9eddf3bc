"""Block cache against a fake remote: sparse writes, RMW, read-ahead, eviction, recovery."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest
import trio

from internxtfs.fs import blockcache as bc_module
from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.journal import FileRecord, Journal, JournalDamaged

MiB = 1024 * 1024
_BASE = bytes(range(251)) * (16 * MiB // 251 + 2)


def pattern(offset: int, n: int) -> bytes:
    """Deterministic 'remote content' of any size without storing it."""
    out = bytearray()
    while n > 0:
        start = offset % 251
        take = min(n, 16 * MiB)
        out += _BASE[start : start + take]
        offset += take
        n -= take
    return bytes(out)


class FakeRemote:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[int, int]] = []
        self.delay = delay
        self.fail: Exception | None = None

    async def __call__(self, record: FileRecord, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        if self.delay:
            await trio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        assert offset + length <= record.remote_valid_len, "fetched past remote_valid_len"
        return pattern(offset, length)

    @property
    def fetched(self) -> int:
        return sum(n for _, n in self.calls)


def open_cache(
    tmp_path: Path, max_bytes: int = 1 << 40, remote: FakeRemote | None = None
) -> tuple[Journal, BlockCache, FakeRemote]:
    remote = remote or FakeRemote()
    journal = Journal(tmp_path / "state.db")
    return journal, BlockCache(tmp_path, journal, max_bytes, remote), remote


def remote_file(journal: Journal, size: int) -> int:
    return journal.new_file(
        parent_uuid="p", name="r", size=size, remote_uuid="u", remote_file_id="f",
        remote_size=size,
    ).local_id  # fmt: skip


def local_file(journal: Journal) -> int:
    return journal.new_file(parent_uuid="p", name="n", dirty=True).local_id


async def test_sparse_write_past_eof(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    fid = local_file(journal)
    await cache.write(fid, 5 * MiB + 3, b"abc")
    await cache.write(fid, 10, b"xy")
    assert journal.get(fid).size == 5 * MiB + 6
    data = await cache.read(fid, 0, 6 * MiB)
    expected = bytearray(5 * MiB + 6)
    expected[10:12] = b"xy"
    expected[5 * MiB + 3 :] = b"abc"
    assert data == bytes(expected)
    assert remote.calls == []
    # Only the two blocks written count, the last one by the file's size (one 4 KiB page).
    assert cache.stats()["bytes_dirty"] == MiB + 4096
    assert os.stat(cache.path(fid)).st_blocks * 512 < 1 * MiB  # sparse on disk


async def test_write_past_eof_of_remote_file(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    fid = remote_file(journal, 100)
    await cache.write(fid, 2 * MiB, b"tail")
    data = await cache.read(fid, 0, 3 * MiB)
    assert data == pattern(0, 100) + bytes(2 * MiB - 100) + b"tail"
    assert remote.calls == [(0, 100)]


async def test_truncate_down_then_up_reads_zeros(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    fid = remote_file(journal, 3 * MiB)
    assert await cache.read(fid, 0, 10) == pattern(0, 10)  # block 0 cached (clean)
    await cache.truncate(fid, 1000)
    assert journal.get(fid).remote_valid_len == 1000
    await cache.truncate(fid, 3 * MiB)
    record = journal.get(fid)
    assert record.size == 3 * MiB and record.remote_valid_len == 1000 and record.dirty
    remote.calls.clear()
    data = await cache.read(fid, 0, 3 * MiB)
    assert data == pattern(0, 1000) + bytes(3 * MiB - 1000)
    assert remote.calls == []  # nothing after 1000 is ever fetched


async def test_truncate_of_uncached_block_then_grow(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    fid = remote_file(journal, 3 * MiB)
    await cache.truncate(fid, MiB + 10)
    await cache.truncate(fid, 2 * MiB)
    data = await cache.read(fid, MiB, MiB)
    assert data == pattern(MiB, 10) + bytes(MiB - 10)
    assert remote.calls[-1] == (MiB, 10)


async def test_partial_block_write_fetches_only_that_block(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    fid = remote_file(journal, 10 * MiB)
    await cache.write(fid, 5 * MiB + 7, b"0123456789")
    assert remote.calls == [(5 * MiB, MiB)]
    await cache.write(fid, 3 * MiB, b"z" * MiB)  # a whole block: no read-modify-write
    assert remote.calls == [(5 * MiB, MiB)]
    got = await cache.read(fid, 5 * MiB, MiB)
    assert got == pattern(5 * MiB, 7) + b"0123456789" + pattern(5 * MiB + 17, MiB - 17)
    assert await cache.read(fid, 3 * MiB, MiB) == b"z" * MiB


async def test_small_read_of_huge_file_fetches_about_one_block(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    fid = remote_file(journal, 10 * 1024 * MiB)
    assert await cache.read(fid, 5 * 1024 * MiB + 5, 4096) == pattern(5 * 1024 * MiB + 5, 4096)
    assert remote.fetched == MiB
    assert await cache.read(fid, 0, 4096) == pattern(0, 4096)  # start of file: some read-ahead
    assert remote.fetched <= MiB + 3 * MiB


async def test_sequential_reads_read_ahead_inline(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    size = 40 * MiB
    fid = remote_file(journal, size)
    chunk = 128 * 1024
    for off in range(0, size, chunk):
        assert await cache.read(fid, off, chunk) == pattern(off, chunk)
    assert remote.fetched == size  # every byte once
    assert len(remote.calls) <= 10  # coalesced into large ranged reads, window grew
    assert max(n for _, n in remote.calls) >= 8 * MiB


async def test_sequential_reads_read_ahead_background(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path, remote=FakeRemote(delay=0.01))
    size = 40 * MiB
    fid = remote_file(journal, size)
    chunk = 128 * 1024
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        for off in range(0, size, chunk):
            assert await cache.read(fid, off, chunk) == pattern(off, chunk)
        nursery.cancel_scope.cancel()
    assert remote.fetched == size
    assert len(remote.calls) <= 12


async def test_concurrent_reads_fetch_once(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path, remote=FakeRemote(delay=0.1))
    fid = remote_file(journal, 100 * MiB)
    results: list[bytes] = []

    async def reader() -> None:
        results.append(await cache.read(fid, 50 * MiB + 100, 4096))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(reader)
    assert results == [pattern(50 * MiB + 100, 4096)] * 10
    assert remote.calls == [(50 * MiB, MiB)]


async def test_write_waits_for_inflight_fetch_of_same_block(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path, remote=FakeRemote(delay=0.1))
    fid = remote_file(journal, 4 * MiB)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.read, fid, 2 * MiB + 5, 10)
        await trio.sleep(0.01)
        nursery.start_soon(cache.write, fid, 2 * MiB + 1, b"W")
    assert remote.calls == [(2 * MiB, MiB)]
    data = await cache.read(fid, 2 * MiB, 8)
    assert data == pattern(2 * MiB, 1) + b"W" + pattern(2 * MiB + 2, 6)


async def test_eviction_never_touches_dirty_blocks(tmp_path: Path) -> None:
    journal, cache, _remote = open_cache(tmp_path, max_bytes=4 * MiB)
    dirty = local_file(journal)
    payload = os.urandom(3 * MiB)
    await cache.write(dirty, 0, payload)
    big = remote_file(journal, 20 * MiB)
    for off in range(0, 20 * MiB, MiB):  # random-looking reads, each fills the free block
        assert await cache.read(big, off + 11, 100) == pattern(off + 11, 100)
        assert cache.stats()["bytes_cached"] <= 4 * MiB
    assert await cache.read(dirty, 0, 3 * MiB) == payload
    assert cache.stats()["bytes_dirty"] == 3 * MiB


async def test_reads_work_when_cache_is_full_of_dirty_data(tmp_path: Path) -> None:
    journal, cache, _remote = open_cache(tmp_path, max_bytes=2 * MiB)
    dirty = local_file(journal)
    await cache.write(dirty, 0, b"d" * 2 * MiB)
    big = remote_file(journal, 8 * MiB)
    assert await cache.read(big, 3 * MiB, 4096) == pattern(3 * MiB, 4096)  # served, not cached
    assert cache.stats()["bytes_cached"] == 2 * MiB


async def test_small_files_count_their_bytes_not_whole_blocks(tmp_path: Path) -> None:
    journal, cache, _remote = open_cache(tmp_path, max_bytes=MiB)
    files = [local_file(journal) for _ in range(200)]
    for fid in files:  # 200 files of 3,000 bytes: one 4 KiB page each, not a 1 MiB block
        await cache.write(fid, 0, b"s" * 3000)
    stats = cache.stats()
    assert stats["bytes_cached"] == stats["bytes_dirty"] == 200 * 4096
    assert stats["bytes_over_bound"] == 0
    await cache.truncate(files[0], 10_000)  # the last block's share follows the size
    assert cache.stats()["bytes_cached"] == 199 * 4096 + 12_288


async def test_100000_unsent_4k_files_fit_in_1g(tmp_path: Path) -> None:
    """The issue's figure, at the cache's level (the e2e test writes 5,000 through FUSE):
    counted in whole 1 MiB blocks, 1,024 such files filled 1 GiB."""
    journal, cache, _remote = open_cache(tmp_path, max_bytes=1 << 30)
    with journal.transaction():
        files = [local_file(journal) for _ in range(100_000)]
    for fid in files:
        await cache.write(fid, 0, b"x" * 4096)
    stats = cache.stats()
    assert stats["bytes_cached"] == stats["bytes_dirty"] == 100_000 * 4096
    assert stats["bytes_over_bound"] == 0


async def test_full_of_unsent_data_that_cannot_drain_stretches_the_bound(tmp_path: Path) -> None:
    """Nothing can upload the data (no pressure relief): the write goes through anyway
    (ENOSPC is for a full disk), and stats say how far over the bound the cache is."""
    journal, cache, _remote = open_cache(tmp_path, max_bytes=2 * MiB)
    fid = local_file(journal)
    await cache.write(fid, 0, b"a" * 2 * MiB)
    await cache.write(fid, 2 * MiB, b"b" * 10)
    assert await cache.read(fid, 2 * MiB - 1, 3) == b"abb"
    assert cache.stats()["bytes_over_bound"] == 4096


async def test_full_of_unsent_data_writers_wait_for_uploads(tmp_path: Path) -> None:
    """Backpressure: while an upload can drain the cache, a writer waits for it instead of
    failing or stretching the bound; once the data is clean it is evicted to make room."""
    journal, cache, _remote = open_cache(tmp_path, max_bytes=2 * MiB)
    uploaded = local_file(journal)
    await cache.write(uploaded, 0, b"a" * 2 * MiB)
    asked: list[float] = []

    async def upload_later() -> None:
        await trio.sleep(0.3)
        # What the uploader does once the object is stored: the blocks become clean.
        with journal.transaction():
            journal.update(uploaded, remote_uuid="u", remote_file_id="f", remote_size=2 * MiB)
            cache.mark_clean(uploaded, journal.get(uploaded).generation)

    async with trio.open_nursery() as nursery:

        def pressure() -> bool:
            if not asked:
                nursery.start_soon(upload_later)
            asked.append(trio.current_time())
            return True

        cache.pressure = pressure
        started = trio.current_time()
        writer = local_file(journal)
        await cache.write(writer, 0, b"w" * MiB)
        assert trio.current_time() - started >= 0.3  # it waited for the upload
    assert asked
    stats = cache.stats()
    assert stats["bytes_over_bound"] == 0 and stats["bytes_cached"] <= 2 * MiB
    assert await cache.read(writer, 0, 2) == b"ww"


async def test_disk_full_surfaces_as_enospc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, cache, _remote = open_cache(tmp_path)
    fid = remote_file(journal, 3 * MiB)
    assert await cache.read(fid, 0, 10) == pattern(0, 10)
    real = bc_module._pwrite_all

    def half_then_full(fd: int, data: bytes | memoryview, offset: int) -> None:
        real(fd, memoryview(data)[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bc_module, "_pwrite_all", half_then_full)
    before = journal.get(fid)
    with pytest.raises(OSError) as info:
        await cache.write(fid, 10, b"x" * 5000)  # into the present clean block 0
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        await cache.write(fid, 2 * MiB, b"y" * 5000)  # into a block not present
    monkeypatch.setattr(bc_module, "_pwrite_all", real)
    assert journal.get(fid) == before
    assert await cache.read(fid, 0, 3 * MiB) == pattern(0, 3 * MiB)  # old content everywhere


async def test_persistence_across_reopen(tmp_path: Path) -> None:
    journal, cache, _remote = open_cache(tmp_path)
    fid = remote_file(journal, 5 * MiB)
    await cache.write(fid, MiB + 5, b"hello")
    await cache.write(fid, 7 * MiB, b"end")
    assert await cache.read(fid, 3 * MiB, 10) == pattern(3 * MiB, 10)  # a clean block too
    generation = journal.get(fid).generation
    # No close: like kill -9.
    journal2, cache2, remote2 = open_cache(tmp_path)
    record = journal2.get(fid)
    assert record.dirty and record.size == 7 * MiB + 3 and record.generation == generation
    assert cache2.stats()["bytes_dirty"] == MiB + 4096  # block 1, and block 7 up to the size
    assert await cache2.read(fid, MiB, 10) == pattern(MiB, 5) + b"hello"
    assert await cache2.read(fid, 3 * MiB, 10) == pattern(3 * MiB, 10)
    assert await cache2.read(fid, 7 * MiB, 10) == b"end"
    assert remote2.calls == []  # all from the cache


async def test_missing_cache_file_of_dirty_file_is_damage(tmp_path: Path) -> None:
    journal, cache, _ = open_cache(tmp_path)
    fid = local_file(journal)
    await cache.write(fid, 0, b"data")
    journal.close()
    cache.path(fid).unlink()
    with pytest.raises(JournalDamaged, match="missing"):
        open_cache(tmp_path)


async def test_short_cache_file_of_dirty_file_is_damage(tmp_path: Path) -> None:
    journal, cache, _ = open_cache(tmp_path)
    fid = local_file(journal)
    await cache.write(fid, 3 * MiB, b"data")
    journal.close()
    os.truncate(cache.path(fid), MiB)
    with pytest.raises(JournalDamaged):
        open_cache(tmp_path)


async def test_lost_state_db_is_damage(tmp_path: Path) -> None:
    journal, cache, _ = open_cache(tmp_path)
    await cache.write(local_file(journal), 0, b"data")
    journal.close()
    (tmp_path / "state.db").unlink()
    with pytest.raises(JournalDamaged):
        open_cache(tmp_path)


async def test_missing_cache_file_of_clean_file_is_refetched(tmp_path: Path) -> None:
    journal, cache, _ = open_cache(tmp_path)
    fid = remote_file(journal, MiB)
    await cache.read(fid, 0, 10)
    journal.close()
    cache.path(fid).unlink()
    _journal2, cache2, remote2 = open_cache(tmp_path)
    assert await cache2.read(fid, 0, 10) == pattern(0, 10)
    assert remote2.calls == [(0, MiB)]


async def test_mark_clean_checks_generation_and_allows_eviction(tmp_path: Path) -> None:
    journal, cache, _ = open_cache(tmp_path, max_bytes=2 * MiB)
    fid = local_file(journal)
    await cache.write(fid, 0, b"a" * MiB)
    generation = journal.get(fid).generation
    await cache.write(fid, 0, b"b")
    assert not cache.mark_clean(fid, generation)
    assert journal.get(fid).dirty
    assert cache.mark_clean(fid, journal.get(fid).generation)
    assert not journal.get(fid).dirty and cache.stats()["bytes_dirty"] == 0
    journal.update(fid, remote_file_id="f", remote_size=MiB, remote_valid_len=MiB)
    other = local_file(journal)
    await cache.write(other, 0, b"c" * 2 * MiB)  # needs the clean block's room
    assert cache.stats()["bytes_cached"] == 2 * MiB
    assert not cache.path(fid).exists()  # whole clean file dropped


async def test_ensure_complete_and_reader(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    size = 3 * MiB + 500
    fid = remote_file(journal, size)
    await cache.write(fid, MiB + 1, b"!")
    read = cache.reader(fid)
    with pytest.raises(OSError):
        await read(0, 10)
    await cache.ensure_complete(fid)
    expected = bytearray(pattern(0, size))
    expected[MiB + 1] = ord("!")
    got = b"".join([await read(off, 300_000) for off in range(0, size, 300_000)])
    assert got == bytes(expected)
    assert remote.fetched == size


async def test_fetch_error_propagates_and_is_retried_next_time(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    fid = remote_file(journal, MiB)
    remote.fail = OSError(errno.EIO, "boom")
    with pytest.raises(OSError):
        await cache.read(fid, 5, 5)
    remote.fail = None
    assert await cache.read(fid, 5, 5) == pattern(5, 5)


async def test_drop(tmp_path: Path) -> None:
    journal, cache, _ = open_cache(tmp_path)
    fid = local_file(journal)
    await cache.write(fid, 0, b"x" * 10)
    cache.drop(fid)
    journal.delete(fid)
    assert not cache.path(fid).exists()
    assert cache.stats()["bytes_cached"] == 0
    _journal2, cache2, _ = open_cache(tmp_path)
    assert cache2.stats()["bytes_cached"] == 0


class CountingRemote(FakeRemote):
    """FakeRemote that records how many fetches were in flight at once."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.active = 0
        self.most = 0

    async def __call__(self, record: FileRecord, offset: int, length: int) -> bytes:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            return await super().__call__(record, offset, length)
        finally:
            self.active -= 1


async def test_read_ahead_keeps_several_fetches_in_flight(tmp_path: Path) -> None:
    remote = CountingRemote(delay=0.02)
    journal, cache, _ = open_cache(tmp_path, remote=remote)
    size = 64 * MiB
    fid = remote_file(journal, size)
    chunk = 128 * 1024
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        for off in range(0, size, chunk):
            assert await cache.read(fid, off, chunk) == pattern(off, chunk)
        nursery.cancel_scope.cancel()
    assert remote.fetched == size  # every byte once
    assert remote.most >= 2  # the window is fetched in several ranged reads at once
    assert max(n for _, n in remote.calls) <= bc_module.READAHEAD_FETCH


async def test_reader_is_served_before_the_fetch_is_installed(tmp_path: Path) -> None:
    journal, cache, remote = open_cache(tmp_path)
    fid = remote_file(journal, 4 * MiB)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        # Installing fetched blocks takes the file lock: while we hold it nothing is installed,
        # and the readers must still get their bytes (from the fetch, in memory).
        async with cache._state(fid).lock:
            with trio.fail_after(5):
                assert await cache.read(fid, MiB + 5, 100) == pattern(MiB + 5, 100)
                # Joins the fetch of block 1 that is still waiting to be installed.
                assert await cache.read(fid, MiB + 105, 4096) == pattern(MiB + 105, 4096)
                await trio.sleep(0.05)  # the read-ahead of blocks 2-3 arrives, not installed
                assert await cache.read(fid, 2 * MiB, 300) == pattern(2 * MiB, 300)
            assert cache.stats()["bytes_cached"] == 0
        for _ in range(500):  # released: the installs go ahead
            if cache.stats()["bytes_cached"] == 3 * MiB:
                break
            await trio.sleep(0.01)
        assert cache.stats()["bytes_cached"] == 3 * MiB
        calls = len(remote.calls)
        assert await cache.read(fid, MiB, 3 * MiB) == pattern(MiB, 3 * MiB)
        assert len(remote.calls) == calls  # from the cache file now
        nursery.cancel_scope.cancel()
    assert sorted(remote.calls) == [(MiB, MiB), (2 * MiB, 2 * MiB)]  # each block fetched once


async def test_a_write_after_a_pending_install_wins(tmp_path: Path) -> None:
    journal, cache, _ = open_cache(tmp_path)
    fid = remote_file(journal, 2 * MiB)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        st = cache._state(fid)
        await st.lock.acquire()  # hold back the install of block 1
        assert await cache.read(fid, MiB, 10) == pattern(MiB, 10)
        st.lock.release()
        await cache.write(fid, MiB + 2, b"new")  # queued behind the install, or before it
        assert await cache.read(fid, MiB, 10) == pattern(MiB, 2) + b"new" + pattern(MiB + 5, 5)
        await trio.sleep(0.05)
        assert await cache.read(fid, MiB, 10) == pattern(MiB, 2) + b"new" + pattern(MiB + 5, 5)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("background", [False, True])
async def test_truncate_of_a_big_cache_file_to_zero_unlinks_it_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    monkeypatch.setattr(bc_module, "DISCARD_ASIDE", 2 * MiB)
    journal, cache, _ = open_cache(tmp_path)
    fid = local_file(journal)
    await cache.write(fid, 0, b"a" * (3 * MiB))
    async with trio.open_nursery() as nursery:
        if background:
            await nursery.start(cache.run)
        await cache.truncate(fid, 0)
        assert not cache.path(fid).exists()
        assert cache.stats()["bytes_cached"] == 0
        await cache.write(fid, MiB, b"b" * 10)
        assert await cache.read(fid, 0, 2 * MiB) == bytes(MiB) + b"b" * 10
        nursery.cancel_scope.cancel()
    assert sorted(p.name for p in cache.data_dir.iterdir()) == [str(fid)]
    # A leftover of an unlink that never ran (a crash) is removed when the cache opens.
    (cache.data_dir / f"{fid}{bc_module.ASIDE_MARK}7").write_bytes(b"old")
    journal.close()
    _journal2, cache2, _ = open_cache(tmp_path)
    assert sorted(p.name for p in cache2.data_dir.iterdir()) == [str(fid)]
    assert await cache2.read(fid, MiB, 10) == b"b" * 10


async def test_a_read_waiting_for_a_worker_thread_meets_a_truncate_to_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large read of cached blocks the page cache does not hold goes to a worker thread.
    When another descriptor truncates the big file to 0 before that thread starts (busy
    worker threads, a slow disk), the cache file is renamed aside: the read must still
    give what the file held when the read began, not fail because the path is gone."""
    monkeypatch.setattr(bc_module, "DISCARD_ASIDE", 2 * MiB)
    journal, cache, _ = open_cache(tmp_path)
    fid = local_file(journal)
    await cache.write(fid, 0, b"a" * (3 * MiB))
    cache._nowait = False  # as if the page cache had let these pages go
    hop = trio.to_thread.run_sync

    async def busy_threads(*args: object, **kwargs: object) -> object:
        await trio.sleep(0.1)  # every worker thread busy for a moment
        return await hop(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bc_module.trio.to_thread, "run_sync", busy_threads)
    got: list[bytes | memoryview] = []

    async def read() -> None:
        got.append(await cache.read(fid, 0, 3 * MiB))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.sleep(0.05)
        await cache.truncate(fid, 0)
    assert got == [b"a" * (3 * MiB)]


async def test_an_install_waiting_for_a_worker_thread_leaves_no_file_once_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read-ahead's install of a fetch larger than a FUSE write goes to a worker thread. When
    the file is deleted (its cache dropped) before that thread starts, the install must not
    make the cache file again: nothing would ever remove it before the next mount, and
    reading big files and deleting them at once piled such files up on the cache disk."""
    journal, cache, _ = open_cache(tmp_path)
    fid = remote_file(journal, 8 * MiB)
    hop = trio.to_thread.run_sync
    hops = trio.Event()

    async def busy_threads(*args: object, **kwargs: object) -> object:
        hops.set()
        await trio.sleep(0.1)  # every worker thread busy for a moment
        return await hop(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bc_module.trio.to_thread, "run_sync", busy_threads)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        assert await cache.read(fid, 0, 4096) == _BASE[:4096]  # starts the read-ahead
        await hops.wait()  # an install waits for its thread
        journal.delete(fid)  # unlinked, as Namespace.drop_local does: record, then cache
        cache.drop(fid)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert list(cache.data_dir.iterdir()) == []


class VersionedRemote(FakeRemote):
    """Remote content that another client can replace: version 1 is all 0x01 bytes."""

    version = 0

    async def __call__(self, record: FileRecord, offset: int, length: int) -> bytes:
        data = await super().__call__(record, offset, length)
        return b"\x01" * length if self.version else data


async def test_invalidate_while_a_reader_holds_the_block(tmp_path: Path) -> None:
    remote = VersionedRemote()
    journal, cache, _ = open_cache(tmp_path, remote=remote)
    lid = remote_file(journal, 2 * MiB)
    assert await cache.read(lid, 0, 100) == pattern(0, 100)
    st = cache._states[lid]
    used = cache.stats()["bytes_cached"]

    with cache._pin(st, [0]):  # a reader is in the middle of reading block 0
        remote.version = 1
        cache.invalidate(lid)
        assert 0 in st.stale and 0 not in st.present
        assert cache.stats()["bytes_cached"] < used
        # Anyone reading now gets the new content, not the block the old reader holds.
        assert await cache.read(lid, 0, 100) == b"\x01" * 100
        assert 0 not in st.stale  # fetched again: nothing left to release
    assert await cache.read(lid, 0, 100) == b"\x01" * 100


async def test_invalidated_pinned_block_is_released_when_unpinned(tmp_path: Path) -> None:
    remote = VersionedRemote()
    journal, cache, _ = open_cache(tmp_path, remote=remote)
    lid = remote_file(journal, 2 * MiB)
    await cache.read(lid, 0, 2 * MiB)
    st = cache._states[lid]
    with cache._pin(st, [1]):
        remote.version = 1
        cache.invalidate(lid)
        assert st.stale == {1} and not st.present
    assert not st.stale
    allocated = os.stat(cache.path(lid)).st_blocks * 512
    assert allocated < MiB  # the stale block's space was given back
    assert [b for lid_, b, _ in journal.load_blocks() if lid_ == lid] == []
    assert await cache.read(lid, MiB, 10) == b"\x01" * 10


async def test_a_stale_block_released_while_its_new_bytes_are_installed_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader holds blocks another client's change made stale; a second reader fetches the
    new content, and its install (a worker thread: more than a FUSE write) has written the
    bytes when the first reader lets go. Punching the stale blocks then would leave the
    installed blocks as holes: zeros served for the new content."""
    import threading

    remote = VersionedRemote()
    journal, cache, _ = open_cache(tmp_path, remote=remote)
    lid = remote_file(journal, 2 * MiB)
    await cache.read(lid, 0, 2 * MiB)
    st = cache._states[lid]
    wrote, go = threading.Event(), threading.Event()
    pwrite = bc_module._pwrite_all

    def held_after_writing(fd: int, data: bytes | memoryview, offset: int) -> None:
        pwrite(fd, data, offset)
        if len(data) > MiB:  # the install's write, in its worker thread
            wrote.set()
            go.wait(5)

    monkeypatch.setattr(bc_module, "_pwrite_all", held_after_writing)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        with cache._pin(st, [0, 1]):  # the first reader
            remote.version = 1
            cache.invalidate(lid)
            assert await cache.read(lid, 0, 2 * MiB) == b"\x01" * (2 * MiB)
            assert await trio.to_thread.run_sync(wrote.wait, 5)
        go.set()  # the first reader let go while the install was between write and record
        for _ in range(500):
            if st.present == {0, 1}:
                break
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert st.present == {0, 1}
    assert _cache_file(cache, lid) == b"\x01" * (2 * MiB)


def _cache_file(cache: BlockCache, local_id: int) -> bytes:
    return cache.path(local_id).read_bytes()


async def test_a_stale_block_whose_new_fetch_fails_is_released_then(tmp_path: Path) -> None:
    """A stale block let go while a read-ahead fetch of it is in flight stays until that
    fetch ends: then, not installed, its space is given back."""

    class NewSecondBlockFails(VersionedRemote):
        async def __call__(self, record: FileRecord, offset: int, length: int) -> bytes:
            data = await super().__call__(record, offset, length)
            if self.version and offset >= MiB:
                await trio.sleep(0.3)  # in flight after the read of block 0 returned
                raise OSError(errno.EIO, "network down")
            return data

    remote = NewSecondBlockFails()
    journal, cache, _ = open_cache(tmp_path, remote=remote)
    lid = remote_file(journal, 2 * MiB)
    await cache.read(lid, 0, 2 * MiB)
    st = cache._states[lid]
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        with cache._pin(st, [1]):  # a reader is on block 1
            remote.version = 1
            cache.invalidate(lid)
            assert await cache.read(lid, 0, MiB) == b"\x01" * MiB  # read-ahead of block 1
            assert 1 in st.inflight
        assert st.stale == {1}  # let go, but the fetch in flight may still install it
        for _ in range(500):
            if 1 not in st.inflight:
                break
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert not st.stale and st.present == {0}
    assert os.stat(cache.path(lid)).st_blocks * 512 < 1.5 * MiB  # block 1's space given back


async def test_write_the_journal_cannot_record_leaves_no_trace(tmp_path: Path) -> None:
    """The data reached the cache file but the journal's disk was full: the write fails, and
    the blocks it made up read as before (zeros here), also after a later partial write."""
    journal, cache, _ = open_cache(tmp_path)
    fid = local_file(journal)
    await cache.write(fid, 0, b"a" * 10)
    pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
    journal._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.Error):
        for i in range(1, 2000):  # each new block adds journal rows; one of them will not fit
            await cache.write(fid, i * MiB, b"b" * 100)
    failed_at = i
    assert journal.get(fid).size <= failed_at * MiB
    journal._db.execute("PRAGMA max_page_count = 1073741823")
    await cache.write(fid, failed_at * MiB + 50, b"c")  # a partial write of the same block
    block = await cache.read(fid, failed_at * MiB, 100)
    assert block == bytes(50) + b"c"  # the file ends there
