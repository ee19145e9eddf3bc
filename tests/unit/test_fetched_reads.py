"""Reads answered from the bytes just fetched (fs/fetched.py) instead of the cache file: that
they are, that what changes a block (a write, a truncate, another client's change, eviction)
is read back instead of the fetched bytes, and that the memory they hold stays bounded, also
while the cache file is slow to take them."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.fetched import FetchedBytes
from internxtfs.fs.journal import FileRecord, Journal
from tests.unit.test_blockcache import FakeRemote, VersionedRemote, pattern, remote_file

MiB = 1024 * 1024


def open_cache(
    tmp_path: Path, remote: FakeRemote, *, max_bytes: int = 1 << 40, keep: int = 48 * MiB
) -> tuple[Journal, BlockCache]:
    journal = Journal(tmp_path / "state.db")
    return journal, BlockCache(tmp_path, journal, max_bytes, remote, keep_fetched=keep)


def check_kept(cache: BlockCache) -> None:
    """Every kept view is of a present, clean block (the invariant that makes them safe)."""
    for lid, block in cache._fetched._views:
        st = cache._states[lid]
        assert block in st.present and block not in st.dirty, (lid, block)


async def installed(cache: BlockCache, nbytes: int) -> None:
    for _ in range(2000):  # installs run in the background: wait (10 s at most) for them
        if cache.stats()["bytes_cached"] >= nbytes:
            return
        await trio.sleep(0.005)
    raise AssertionError(f"{cache.stats()['bytes_cached']} bytes installed, not {nbytes}")


async def read_head(cache: BlockCache, fid: int) -> None:
    """A cold read of the first block; returns once its read-ahead (blocks 1-2) is installed
    in the cache file."""
    assert await cache.read(fid, 0, MiB) == pattern(0, MiB)
    await installed(cache, 3 * MiB)


def no_cache_file_reads(cache: BlockCache, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("read from the cache file")

    monkeypatch.setattr(cache, "_pread_cached", refuse)
    monkeypatch.setattr(cache, "_pread_ranges", refuse)


async def test_sequential_read_is_answered_from_the_fetched_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, cache = open_cache(tmp_path, FakeRemote(delay=0.002))
    size = 24 * MiB
    fid = remote_file(journal, size)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await read_head(cache, fid)
        no_cache_file_reads(cache, monkeypatch)
        for off in range(MiB, size, MiB):
            data = await cache.read(fid, off, MiB)
            assert data == pattern(off, MiB)
            check_kept(cache)
        await installed(cache, size)
        nursery.cancel_scope.cancel()
    assert len(cache._fetched) == 0 and cache._fetched.bytes == 0  # read to the end: let go
    # The cache file holds every block all the same (the next open reads it from there).
    assert cache.path(fid).read_bytes() == pattern(0, size)


async def test_a_write_replaces_the_fetched_bytes(tmp_path: Path) -> None:
    journal, cache = open_cache(tmp_path, FakeRemote())
    fid = remote_file(journal, 8 * MiB)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await read_head(cache, fid)
        assert cache._fetched.get(fid, 1) is not None  # kept for the reader
        await cache.write(fid, MiB + 2, b"new")
        check_kept(cache)
        want = pattern(MiB, 2) + b"new" + pattern(MiB + 5, MiB - 5)
        assert await cache.read(fid, MiB, MiB) == want
        nursery.cancel_scope.cancel()


async def test_a_truncate_then_growth_reads_zeros_not_the_fetched_bytes(tmp_path: Path) -> None:
    journal, cache = open_cache(tmp_path, FakeRemote())
    fid = remote_file(journal, 8 * MiB)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await read_head(cache, fid)
        assert cache._fetched.get(fid, 1) is not None
        await cache.truncate(fid, MiB + 10)
        await cache.truncate(fid, 3 * MiB)
        check_kept(cache)
        assert await cache.read(fid, MiB, MiB) == pattern(MiB, 10) + bytes(MiB - 10)
        nursery.cancel_scope.cancel()


async def test_another_clients_change_is_read_not_the_fetched_bytes(tmp_path: Path) -> None:
    remote = VersionedRemote()
    journal, cache = open_cache(tmp_path, remote)
    fid = remote_file(journal, 8 * MiB)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await read_head(cache, fid)
        assert cache._fetched.get(fid, 2) is not None
        remote.version = 1  # changed elsewhere; the consistency check invalidates the cache
        cache.invalidate(fid)
        check_kept(cache)
        assert await cache.read(fid, 2 * MiB, 100) == b"\x01" * 100
        nursery.cancel_scope.cancel()


async def test_evicted_blocks_are_let_go(tmp_path: Path) -> None:
    # The cache holds 4 blocks: reading 2 files' heads evicts the first file's read-ahead.
    journal, cache = open_cache(tmp_path, FakeRemote(), max_bytes=4 * MiB)
    first, second = remote_file(journal, 8 * MiB), remote_file(journal, 8 * MiB)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await read_head(cache, first)
        assert await cache.read(second, 0, MiB) == pattern(0, MiB)
        await trio.sleep(0.1)
        check_kept(cache)
        assert cache.stats()["bytes_cached"] <= 4 * MiB
        assert await cache.read(first, MiB, MiB) == pattern(MiB, MiB)
        nursery.cancel_scope.cancel()


async def test_kept_bytes_are_bounded(tmp_path: Path) -> None:
    journal, cache = open_cache(tmp_path, FakeRemote(), keep=4 * MiB)
    size = 40 * MiB
    fid = remote_file(journal, size)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        for off in range(0, size, MiB):
            assert await cache.read(fid, off, MiB) == pattern(off, MiB)
            assert cache._fetched.bytes <= 4 * MiB
            await trio.sleep(0.01)  # let the read-ahead land
            assert cache._fetched.bytes <= 4 * MiB
        nursery.cancel_scope.cancel()


def test_fetched_bytes_bound_age_and_forget() -> None:
    now = [0.0]
    kept = FetchedBytes(max_bytes=3 * 10, max_age=5.0, clock=lambda: now[0])
    buf = memoryview(bytes(range(100)))
    for b in range(4):  # the 4th pushes the oldest out
        kept.keep(1, b, buf[b * 10 : b * 10 + 10])
    assert kept.get(1, 0) is None and kept.get(1, 3) == bytes(range(30, 40))
    assert kept.bytes == 30 and len(kept) == 3
    kept.forget(1, [1, 7])
    kept.keep(2, 0, buf[:10])
    assert kept.get(1, 1) is None and len(kept) == 3
    kept.forget_file(1)
    assert len(kept) == 1 and kept.bytes == 10
    now[0] = 6.0
    kept.expire()
    assert len(kept) == 0 and kept.bytes == 0
    kept.keep(1, 0, memoryview(bytes(40)))  # larger than the whole bound: not kept
    assert len(kept) == 0


class Buffer(bytearray):
    """A fetch buffer that can be watched (weakref) to count the ones still alive."""


class WatchedRemote(FakeRemote):
    def __init__(self) -> None:
        super().__init__()
        self.buffers: list[weakref.ref[Buffer]] = []

    async def __call__(self, record: FileRecord, offset: int, length: int) -> bytes:
        buf = Buffer(await super().__call__(record, offset, length))
        self.buffers.append(weakref.ref(buf))
        return buf  # type: ignore[return-value]

    @property
    def held(self) -> int:
        """Bytes of the fetch buffers still alive."""
        return sum(len(b) for ref in self.buffers if (b := ref()) is not None)


async def test_fetched_data_waiting_for_a_slow_cache_file_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the cache file takes its bytes slower than the network brings them, the reader
    is paced by it: the fetched buffers alive stay bounded (read-ahead window, the backlog
    waiting to be written, kept views), and every byte still reaches the cache file."""
    remote = WatchedRemote()
    journal, cache = open_cache(tmp_path, remote)
    size = 160 * MiB
    fid = remote_file(journal, size)
    write_local = cache._write_local

    async def slow_disk(*args: Any) -> None:
        await trio.sleep(0.05)
        await write_local(*args)

    monkeypatch.setattr(cache, "_write_local", slow_disk)
    most = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        for off in range(0, size, MiB):
            assert await cache.read(fid, off, MiB) == pattern(off, MiB)
            most = max(most, remote.held)
            await trio.lowlevel.checkpoint()
        await installed(cache, size)
        nursery.cancel_scope.cancel()
    assert most <= 96 * MiB, most // MiB  # without the pacing: ~150 MiB, the whole file
    assert cache.path(fid).read_bytes() == pattern(0, size)


async def test_a_change_elsewhere_while_an_install_writes_is_not_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client's change arrives (invalidate) while fetched blocks are being written
    into the cache file: they must not become present afterwards, in the cache file or as
    kept bytes; the next read fetches the new content."""
    remote = VersionedRemote()
    journal, cache = open_cache(tmp_path, remote)
    fid = remote_file(journal, 8 * MiB)
    write_local = cache._write_local
    writing, release = trio.Event(), trio.Event()

    async def held_write(*args: Any) -> None:
        writing.set()
        await release.wait()
        await write_local(*args)

    monkeypatch.setattr(cache, "_write_local", held_write)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        assert await cache.read(fid, 0, MiB) == pattern(0, MiB)  # served from the fetch
        with trio.fail_after(5):
            await writing.wait()
        remote.version = 1
        cache.invalidate(fid)
        release.set()
        await trio.sleep(0.1)  # the installs finish
        check_kept(cache)
        assert await cache.read(fid, 0, 100) == b"\x01" * 100
        assert await cache.read(fid, MiB, 100) == b"\x01" * 100
        nursery.cancel_scope.cancel()
