"""On-disk write-back block cache: a sparse cache file per file plus a persistent block map.

Layout: ``<cache_dir>/data/<local_id>`` holds the file's bytes at their own offsets (sparse),
and the journal's ``blocks`` table lists which ``block_size`` blocks of it are *present* and
which of those are *dirty* (changed locally, not uploaded). A block that is not present reads
as remote bytes below ``record.remote_valid_len`` (fetched on demand) and zeros above it.

Invariants (what makes eviction and partial writes safe):

* A *clean* present block equals what fetching it again would give: remote bytes below
  ``remote_valid_len``, zeros above. So clean blocks can be evicted at any time; dirty never.
* In the cache file, ranges of blocks that are not present read as zeros (holes), and bytes
  past the logical size read as zeros. Eviction punches holes, truncation uses ftruncate, a
  failed write punches what it may have left, and opening the cache scrubs what a crash in
  the middle of a write may have left. A partial write into a new block therefore only has to
  write its own bytes (plus the remote bytes of the block first, if any: read-modify-write).
* Dirty marks are committed to the journal before :meth:`BlockCache.write` returns, after the
  data is in the cache file: a crash loses only writes that had not returned.

Usage is counted in bytes, as the disk holds them: a present block counts ``block_size``
bytes, except a file's last block, which counts its bytes up to the file's size rounded up to
a 4 KiB page (a 3 KB file takes 4 KiB, not a whole block), and blocks that are not present
(holes) count nothing. Usage is bounded by ``max_bytes``. When room is needed, clean blocks
are evicted in LRU order (last read or written); fetched blocks that do not fit are returned
to the reader without being cached. When the bound is full of data not uploaded yet, a write
waits for uploads to drain it (backpressure: ``pressure`` hurries the uploader and says
whether an upload can free room) and goes on once they have. When nothing can drain (the
unsent data belongs to files still being written, e.g. one file larger than the bound, or
uploads keep failing), the bound stretches rather than refuse the write: it is a bound on
what the cache keeps, and ENOSPC is left to a full disk (see docs/semantics.md). A stretch
is logged once per episode and shown in :meth:`BlockCache.stats` (``bytes_over_bound``).

Concurrency (trio; code between two awaits is atomic). Shared state and its guards:

* ``_FileState.lock`` (one trio.Lock per file) serialises every change to a file's cache file
  bytes and block map that spans an await: write (read-modify-write fetch, the pwrite in a
  worker thread), truncate, installing fetched blocks. Reads do not take it.
* ``_FileState.pins`` / ``file_pins``: blocks (or a whole file, for the uploader) that a task is
  reading or writing across an await. Eviction, which is synchronous, skips pinned blocks, so
  a clean block is never punched under a reader's or writer's feet.
* ``_FileState.inflight``: block -> the fetch bringing it. A read of a block already being
  fetched waits for that fetch instead of fetching it again. ``epoch`` changes on truncate,
  drop and invalidate: a fetch started under an older epoch is never installed, and new
  readers do not join it.
* Cache files are opened on the trio thread, never in a worker thread: a read or write
  handed to one holds its descriptor across the hop, so a truncate to 0 (the file renamed
  aside) or a drop (unlinked) meanwhile neither fails it nor has it make the file again.
* ``_lru`` (clean present blocks, oldest first), ``_used`` (bytes charged, the sum of every
  file's ``_FileState.charged``) and ``_reserved`` (bytes promised to a write/install in
  progress): only changed in synchronous sections. ``_room`` is set whenever room may have
  been freed (blocks made clean, evicted, truncated, dropped), for writers under backpressure.

Read-ahead: a read that starts where the previous one ended (or at 0) is sequential; its
window doubles from 2 blocks up to ``readahead_max``. Once a read-ahead fetch's worth of the
window ahead (``READAHEAD_FETCH``, or half the window while it is small) is neither present nor
in flight, or the very next block is missing, the missing ones are fetched: in the background,
in ranged reads of at most ``READAHEAD_FETCH`` so that several are in flight at once, when
:meth:`BlockCache.run` is running (``await nursery.start(cache.run)``), otherwise as part of
the same fetch as the read itself. With :meth:`BlockCache.run` running, a fetch is installed
in the background too and readers wait only for its bytes (``_Fetch.ready``): a block not yet
present is served from the fetched bytes in memory, a present one from the cache file (present
always wins, so a write that lands meanwhile is seen), or, while they are kept
(:class:`FetchedBytes`), from the bytes its fetch installed, which every change to the block
forgets first. While ``INSTALL_BACKLOG`` of fetched data waits to be installed, read-ahead
stops and a read that must fetch waits for the backlog to drain: a slow cache disk paces
the reader instead of letting fetched buffers pile up in memory.

Truncating a large cache file to 0 (``open(O_TRUNC)``) renames it aside
(``<id>.discarded-<n>``) and unlinks it in a worker thread; leftovers are removed on open.

Recovery on open: a dirty block whose cache file is missing or too short raises
:class:`JournalDamaged`; so does a fresh state.db next to existing cache files. Clean blocks
whose file is missing are forgotten (they are fetched again); cache files without a record are
removed.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from internxtfs.fs.fetched import KEEP_MAX, FetchedBytes
from internxtfs.fs.journal import RECOVERY_HINT, FileRecord, Journal, JournalDamaged, JournalError
from internxtfs.fs.lifecycle import has_unsent_content
from internxtfs.fs.punch import punch_hole
from internxtfs.fs.remote import Remote
from internxtfs.internxt.errors import LegacyFileFormat, ServerError, Unreachable
from internxtfs.internxt.retry import interactive

log = logging.getLogger(__name__)

MiB = 1024 * 1024
PAGE = 4096  # the unit a file's last block is charged in (what the disk allocates)
DEFAULT_BLOCK_SIZE = MiB
PRESSURE_RECHECK = 1.0  # seconds between looks at the uploads while a writer waits for room
MAX_FETCH = 16 * MiB  # largest single ranged fetch: bounds memory held per fetch
# One background read-ahead fetch. The window is split into fetches of this size, so several
# are in flight at once (one ranged GET at a time leaves the network idle while the previous
# one is decrypted and installed).
READAHEAD_FETCH = 8 * MiB
# The largest read-ahead window. Four fetches in flight: at 30 ms per request, 16 MiB (two)
# left the connection idle between answers and a cold read ran at ~0.6x of its 0 ms speed
# (bench/RESULTS.md, 2026-12-07). Memory: each fetch holds its ciphertext and plaintext
# for a moment, so ~2x the window at worst.
READAHEAD_MAX = 32 * MiB
# While this much fetched data waits to be written into the cache file, no read-ahead starts
# and a read that must fetch waits first. The installs of a file take turns (its lock), and
# when the disk is slow (the kernel throttles writers once much of the page cache is dirty)
# fetches kept arriving faster than they were written: a fetch keeps its buffer until it is
# installed, and the mount's RSS reached 150-216 MiB in some cold reads (bench/RESULTS.md,
# "cold read, round two"). The reader is paced by the disk instead.
INSTALL_BACKLOG = 32 * MiB
THREAD_IO = 256 * 1024  # local reads larger than this run in a worker thread
# ... unless the page cache holds them: then up to this much is copied inline (_pread_cached).
NOWAIT_IO = 4 * MiB
# Local writes larger than this run in a worker thread. A FUSE write is at most 1 MiB
# (max_write), and handing it to a thread costs more than the page-cache copy itself:
# inline, a 1 MiB write takes ~0.3 ms of the trio thread and half the CPU (bench/).
THREAD_WRITE = MiB
ACCESS_SAVE_INTERVAL = 60.0  # seconds between persisting a file's last_access
# A cache file truncated to 0 that holds at least this much is renamed aside and unlinked in a
# worker thread: freeing 1 GiB of extents takes ~150-200 ms on ext4, which open(O_TRUNC) of a
# big file would otherwise wait for (rclone and restic rewrite files that way).
DISCARD_ASIDE = 64 * MiB
ASIDE_MARK = ".discarded-"  # <local_id>.discarded-<n>: being unlinked; removed on open too

Fetch = Callable[[FileRecord, int, int], Awaitable[bytes | memoryview]]


def fetch_through(remote: Remote) -> Fetch:
    """The block cache's fetch of what it lacks of a stored file: ``remote.download_range``
    (the buffer the object was received and decrypted into, not copied), with errors that
    name the file."""

    async def fetch(record: FileRecord, offset: int, length: int) -> bytes | memoryview:
        assert record.remote_file_id is not None
        try:
            # A reader waits on it: interactive (prompt EIO during an outage, retry.py).
            with interactive():
                return await remote.download_range(record.remote_file_id, offset, length)
        except (Unreachable, ServerError) as exc:
            raise Unreachable(
                f"{record.name!r}: this part is not in the cache and Internxt is "
                f"unreachable ({exc})"
            ) from exc
        except LegacyFileFormat as exc:
            # Reads get EIO; the log says which file and what the user can do.
            raise LegacyFileFormat(
                f"{record.name!r} is stored in Internxt's legacy (version 1) format, which "
                "internxtfs cannot read; download it with Internxt's web app "
                "(https://drive.internxt.com)"
            ) from exc

    return fetch


# Called when the bound is full of unsent data: hurry the uploads that can free room, and
# say whether any can (False: waiting would not help, so the bound stretches).
Pressure = Callable[[], bool]


def _no_pressure_relief() -> bool:
    return False


class _Fetch:
    """One ranged remote read of blocks ``first .. first+count-1``."""

    __slots__ = (
        "count", "data", "done", "epoch", "error", "file_id", "first", "installed", "keep",
        "ready", "stretch",
    )  # fmt: skip

    def __init__(self, first: int, count: int, epoch: int, file_id: str | None) -> None:
        self.first = first
        self.count = count
        self.epoch = epoch
        self.file_id = file_id
        self.data: bytes | memoryview | None = None
        self.error: Exception | None = None
        self.installed = False
        # Installed even past the bound: the uploader needs the whole file in the cache.
        self.stretch = False
        # Its installed blocks' bytes stay in memory for the reader (FetchedBytes); not for the
        # uploader's fetches, which read the cache file.
        self.keep = True
        # ready: data or error known. done: also installed (or not) in the cache. A writer that
        # holds the file lock waits for ``ready`` only: the install needs that lock.
        self.ready = trio.Event()
        self.done = trio.Event()


class _FileState:
    """In-memory view of one file's cache (see the module docstring for the guards)."""

    def __init__(self) -> None:
        self.present: set[int] = set()
        self.dirty: set[int] = set()
        self.lock = trio.Lock()
        self.pins: dict[int, int] = {}
        self.file_pins = 0
        self.inflight: dict[int, _Fetch] = {}
        self.epoch = 0
        # Clean blocks invalidated (remote content changed) while pinned by a reader: no longer
        # present, so nobody new reads them; their space is released once the pins are gone.
        self.stale: set[int] = set()
        self.dropped = False
        self.next_offset = -1  # where a sequential read would continue
        self.window = 0  # read-ahead window, blocks
        self.access_saved = 0.0
        self.charged = 0  # bytes of ``present`` counted against the bound (see _charge)

    def pinned(self, block: int) -> bool:
        return self.file_pins > 0 or block in self.pins


def _runs(blocks: Iterable[int], max_len: int) -> Iterator[tuple[int, int]]:
    """Sorted blocks as (first, count) runs of consecutive numbers, each at most max_len."""
    start = prev = -2
    for b in sorted(blocks):
        if b == prev + 1 and b - start < max_len:
            prev = b
            continue
        if start >= 0:
            yield start, prev - start + 1
        start = prev = b
    if start >= 0:
        yield start, prev - start + 1


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:  # left for the next open's clean-up
        log.warning("cannot remove %s: %s", path, exc)


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) < length:  # a hole at the end of the cache file reads as zeros
        data += bytes(length - len(data))
    return data


class _Locked:
    """``async with _Locked(lock)``: ``async with lock`` without a trip through trio's scheduler
    when the lock is free (every write takes its file's lock; with this, a write that needs no
    fetch never yields, like pyfuse3's passthrough example). Fair like the lock."""

    __slots__ = ("lock",)

    def __init__(self, lock: trio.Lock) -> None:
        self.lock = lock

    async def __aenter__(self) -> None:
        try:
            self.lock.acquire_nowait()
        except trio.WouldBlock:
            await self.lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()


class BlockCache:
    def __init__(
        self,
        cache_dir: Path,
        journal: Journal,
        max_bytes: int,
        fetch: Fetch,
        block_size: int = DEFAULT_BLOCK_SIZE,
        *,
        readahead_max: int = READAHEAD_MAX,
        wall_clock: Callable[[], float] = time.time,
        pressure: Pressure = _no_pressure_relief,
        keep_fetched: int = KEEP_MAX,
    ) -> None:
        if block_size <= 0 or block_size % 4096:
            raise ValueError("block_size must be a positive multiple of 4096")
        self.journal = journal
        self.block_size = block_size
        self.max_bytes = max_bytes
        self.pressure = pressure  # set by the mount once the uploader exists
        self._fetch = fetch
        self._readahead_blocks = max(1, readahead_max // block_size)
        self._wall_clock = wall_clock
        self.data_dir = Path(cache_dir) / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._data_prefix = f"{self.data_dir}{os.sep}"
        self._states: dict[int, _FileState] = {}
        self._lru: OrderedDict[tuple[int, int], None] = OrderedDict()
        # Installed blocks' plaintext, for the reader about to ask for it (see fetched.py).
        self._fetched = FetchedBytes(keep_fetched)
        self._used = 0  # bytes charged (see _charge)
        self._reserved = 0  # bytes promised to writes/installs in progress
        self._room = trio.Event()  # set when room may have been freed
        self._installing = 0  # bytes fetched and waiting to be installed (INSTALL_BACKLOG)
        self._drained = trio.Event()  # set whenever an install ends
        self._stretched = False  # over the bound with unsent data nothing can drain
        self._evicting = False
        self._bg: trio.Nursery | None = None
        self._asides = itertools.count()
        self._nowait = hasattr(os, "RWF_NOWAIT")  # inline reads of what the page cache holds
        self._check_block_size()
        self._recover()

    # --- opening and recovery -------------------------------------------------------------

    def _check_block_size(self) -> None:
        stored = self.journal.get_meta("block_size")
        if stored is None:
            self.journal.set_meta("block_size", str(self.block_size))
        elif int(stored) != self.block_size:
            raise JournalError(
                f"the cache was written with block size {stored}, not {self.block_size}"
            )

    def _recover(self) -> None:
        for p in self.data_dir.iterdir():
            if ASIDE_MARK in p.name:  # a truncation's old cache file whose unlink was cut short
                p.unlink(missing_ok=True)
        files = {int(p.name): p for p in self.data_dir.iterdir() if p.name.isdigit()}
        if self.journal.created and files:
            raise JournalDamaged(
                f"{self.journal.path} is new but {self.data_dir} holds {len(files)} cache "
                f"file(s): the state database was lost. {RECOVERY_HINT}"
            )
        stale_rows: dict[int, list[int]] = {}
        for local_id, block, dirty in self.journal.load_blocks():
            if self.journal.get(local_id) is None:
                stale_rows.setdefault(local_id, []).append(block)
                continue
            st = self._states.setdefault(local_id, _FileState())
            st.present.add(block)
            if dirty:
                st.dirty.add(block)
        with self.journal.transaction():
            for local_id, blocks in stale_rows.items():
                self.journal.delete_blocks(local_id, blocks)
            for local_id, st in list(self._states.items()):
                self._recover_file(local_id, st, files.get(local_id))
        for local_id, path in files.items():
            record = self.journal.get(local_id)
            if record is None or local_id not in self._states:
                log.info("removing cache file %s without cached blocks", path)
                path.unlink(missing_ok=True)
        # LRU order after a restart: files by last access, blocks in order within a file.
        clean = [
            (self._record(i).last_access, i, b)
            for i, st in self._states.items()
            for b in st.present - st.dirty
        ]
        for _, i, b in sorted(clean):
            self._lru[(i, b)] = None
        for local_id, st in self._states.items():
            self._recharge(local_id, st)
        if self._used > self.max_bytes:
            self._evict(self._used - self.max_bytes)
        log.info(
            "block cache: %d files, %d bytes cached, %d dirty blocks",
            len(self._states),
            self._used,
            sum(len(st.dirty) for st in self._states.values()),
        )

    def _recover_file(self, local_id: int, st: _FileState, path: Path | None) -> None:
        record = self._record(local_id)
        size = path.stat().st_size if path is not None else -1
        if st.dirty:
            last_dirty = max(st.dirty)
            if size <= last_dirty * self.block_size:
                what = "missing" if path is None else f"only {size} bytes"
                raise JournalDamaged(
                    f"cache file of {record.name!r} (local id {local_id}) is {what} but holds "
                    f"unsent data up to block {last_dirty}. {RECOVERY_HINT}"
                )
        if path is None:
            log.warning("cache file of local id %d is gone; forgetting its clean blocks", local_id)
            self.journal.delete_blocks(local_id, st.present)
            del self._states[local_id]
            return
        # Scrub what an interrupted write may have left: bytes past the logical size and in
        # blocks that are not present must read as zeros (see the module docstring).
        fd = os.open(path, os.O_RDWR)
        try:
            if size > record.size:
                os.ftruncate(fd, record.size)
            for first, count in self._data_runs(fd):
                for b in range(first, first + count):
                    if b not in st.present:
                        punch_hole(fd, b * self.block_size, self.block_size)
        finally:
            os.close(fd)

    def _data_runs(self, fd: int) -> Iterator[tuple[int, int]]:
        """Block runs of the file that hold allocated data (SEEK_DATA/SEEK_HOLE)."""
        bs = self.block_size
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    return
                raise
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            yield start // bs, (stop - 1) // bs - start // bs + 1
            pos = stop

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Background task for read-ahead: ``await nursery.start(cache.run)``."""
        async with trio.open_nursery() as nursery:
            self._bg = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._bg = None

    # --- helpers ----------------------------------------------------------------------------

    def _record(self, local_id: int) -> FileRecord:
        record = self.journal.get(local_id)
        if record is None:
            raise KeyError(f"no journal record for local id {local_id}")
        return record

    def _state(self, local_id: int) -> _FileState:
        st = self._states.get(local_id)
        if st is None:
            self._record(local_id)
            st = self._states[local_id] = _FileState()
        return st

    def path(self, local_id: int) -> Path:
        return self.data_dir / str(local_id)

    def _open(self, local_id: int) -> int:
        # A string join, not Path: this runs on every write.
        return os.open(f"{self._data_prefix}{local_id}", os.O_RDWR | os.O_CREAT, 0o600)

    def _open_read(self, local_id: int) -> int:
        return os.open(f"{self._data_prefix}{local_id}", os.O_RDONLY)

    @contextmanager
    def _pin(self, st: _FileState, blocks: Iterable[int]) -> Iterator[None]:
        pinned = list(blocks)
        for b in pinned:
            st.pins[b] = st.pins.get(b, 0) + 1
        try:
            yield
        finally:
            released = []
            for b in pinned:
                if st.pins[b] == 1:
                    del st.pins[b]
                    released.append(b)
                else:
                    st.pins[b] -= 1
            if st.stale:
                self._release_stale(st, released)

    def _release_stale(self, st: _FileState, blocks: Iterable[int]) -> None:
        """Punch out invalidated blocks whose last pin just went, unless fetched again or
        being fetched: an install may have written the new bytes already (in a worker
        thread) and not yet marked them present, and a punch would leave holes under them.
        Such a block stays stale, and is released when its fetch ends without installing."""
        gone = [
            b
            for b in blocks
            if b in st.stale and b not in st.present and b not in st.inflight and not st.pinned(b)
        ]
        if not gone:
            return
        st.stale.difference_update(gone)
        local_id = next((i for i, x in self._states.items() if x is st), None)
        if local_id is None or st.dropped:
            return
        try:
            fd = self._open(local_id)
        except OSError:
            return  # no cache file: nothing to release
        try:
            for first, count in _runs(sorted(gone), 1 << 30):
                try:
                    punch_hole(fd, first * self.block_size, count * self.block_size)
                except OSError as exc:
                    log.warning("cannot punch cache file of %d: %s", local_id, exc)
        finally:
            os.close(fd)

    @contextmanager
    def pinned(self, local_id: int) -> Iterator[None]:
        """Keep every block of a file from eviction (the uploader holds this while uploading)."""
        st = self._state(local_id)
        st.file_pins += 1
        try:
            yield
        finally:
            st.file_pins -= 1
            if st.stale and st.file_pins == 0:
                self._release_stale(st, list(st.stale))

    # --- space --------------------------------------------------------------------------------

    def _charge(self, present: set[int], size: int) -> int:
        """Bytes that blocks ``present`` of a file of ``size`` bytes count against the bound."""
        return self._charge_n(len(present), size, (size - 1) // self.block_size in present)

    def _charge_n(self, count: int, size: int, has_last: bool) -> int:
        """``count`` present blocks count whole, except the file's last block (``has_last``:
        present), which counts its bytes up to the size in 4 KiB pages. Blocks never extend
        past the size (truncate removes them), so this needs no walk over the blocks and
        stays cheap on the write path."""
        if count == 0 or size <= 0:
            return 0
        bs = self.block_size
        total = count * bs
        if has_last:
            tail = size - (size - 1) // bs * bs
            total -= bs - min(bs, -(-tail // PAGE) * PAGE)
        return total

    def _recharge(self, local_id: int, st: _FileState, size: int | None = None) -> None:
        """Count a file's present blocks again after they or its size changed."""
        if size is None:
            record = self.journal.get(local_id)
            size = record.size if record is not None else 0
        charged = self._charge(st.present, size)
        freed = charged < st.charged
        self._used += charged - st.charged
        st.charged = charged
        if freed:
            self._freed()

    def _make_room(self, nbytes: int, *, stretch: bool = False) -> bool:
        """Reserve ``nbytes`` more, evicting clean blocks if needed. ``stretch``: reserve
        even past the bound (after evicting what can be evicted)."""
        over = self._used + self._reserved + nbytes - self.max_bytes
        if over > 0 and self._evict(over) < over and not stretch:
            return False
        self._reserved += nbytes
        return True

    def _freed(self) -> None:
        """Room may have been freed: wake writers waiting under backpressure."""
        self._room.set()
        self._room = trio.Event()
        if self._stretched and self._used > self.max_bytes and not self._evicting:
            # Stretched: what became clean goes at once, back towards the bound.
            self._evict(self._used - self.max_bytes, partial=True)
        if self._stretched and self._used <= self.max_bytes:
            self._stretched = False
            log.info("the cache is back within its bound")

    async def _wait_for_room(self) -> bool:
        """Backpressure: wait while uploads drain unsent data. True once room may have been
        freed (try again); False when no upload can free any (the caller stretches)."""
        while self.pressure():
            room = self._room
            with trio.move_on_after(PRESSURE_RECHECK):
                await room.wait()
            if room.is_set():
                return True
        return False

    def _stretch(self, nbytes: int) -> None:
        self._make_room(nbytes, stretch=True)
        if not self._stretched and self._used + self._reserved > self.max_bytes:
            self._stretched = True
            log.warning(
                "the cache holds more unsent data than --cache-size (%d bytes) and no upload "
                "can free room now (the data belongs to files still being written, or uploads "
                "are failing): going over the bound rather than refuse writes; the disk under "
                "the cache is the limit",
                self.max_bytes,
            )

    def _evict(self, want: int, *, partial: bool = False) -> int:
        """Evict clean, unpinned blocks, oldest first, until ``want`` bytes are freed; returns
        the bytes freed (0 when that is not possible: nothing is evicted then, unless
        ``partial``: then whatever can go goes)."""
        victims: dict[int, list[int]] = {}
        found = 0
        bs = self.block_size
        for local_id, block in self._lru:
            if found >= want:
                break
            st = self._states[local_id]
            if st.pinned(block):
                continue
            victims.setdefault(local_id, []).append(block)
            record = self.journal.get(local_id)
            size = record.size if record is not None else 0
            found += self._charge({block}, size) if block == (size - 1) // bs else bs
        if (found < want and not partial) or not victims:
            return 0  # not enough: evict nothing, the caller fails without side effects
        before = self._used
        self._evicting = True  # _freed() must not start another eviction from inside this one
        try:
            with self.journal.transaction():
                for local_id, blocks in victims.items():
                    self._evict_blocks(local_id, blocks)
        finally:
            self._evicting = False
        log.debug("evicted %d bytes of clean blocks", before - self._used)
        return before - self._used

    def _evict_blocks(self, local_id: int, blocks: list[int]) -> int:
        st = self._states[local_id]
        record = self.journal.get(local_id)
        # Unlink the whole file only when nobody may hold it open: a writer's worker thread
        # could otherwise write into an unlinked inode (writers hold the lock and pins).
        whole = len(blocks) == len(st.present) and not st.dirty
        busy = st.lock.locked() or bool(st.pins) or st.file_pins > 0
        if whole and not busy and record is not None and not record.dirty:
            self.path(local_id).unlink(missing_ok=True)  # the whole file is clean: drop it
            done = blocks
        else:
            done = []
            fd = self._open(local_id)
            try:
                for first, count in _runs(blocks, 1 << 30):
                    try:
                        punch_hole(fd, first * self.block_size, count * self.block_size)
                    except OSError as exc:
                        log.warning("cannot punch cache file of %d: %s", local_id, exc)
                        continue
                    done.extend(range(first, first + count))
            finally:
                os.close(fd)
        self._fetched.forget(local_id, done)
        for b in done:
            st.present.discard(b)
            del self._lru[(local_id, b)]
        self._recharge(local_id, st)
        self.journal.delete_blocks(local_id, done)
        return len(done)

    # --- reading ------------------------------------------------------------------------------

    async def read(self, local_id: int, offset: int, length: int) -> bytes | memoryview:
        """Bytes ``[offset, offset+length)`` clipped to the logical size: ``bytes``, or a
        read-only view of fetched bytes when one block's fetched bytes hold them all (valid
        for as long as the caller keeps it; nobody writes into a fetch buffer once filled)."""
        record = self._record(local_id)
        st = self._state(local_id)
        end = min(offset + length, record.size)
        if length <= 0 or offset >= end:
            return b""
        bs = self.block_size
        first, last = offset // bs, (end - 1) // bs
        window = self._sequential(st, offset, end)
        # Pinned for the whole call: a block seen present must not be evicted before it is read.
        with self._pin(st, range(first, last + 1)):
            got = await self._bring(local_id, st, first, last, window)
            data = await self._assemble(local_id, st, offset, end, got, kept=True)
        # Blocks read to their end (or to the end of the file) are done with: let their
        # bytes go (a read of them again, rare with the kernel's page cache, uses the file).
        done_to = last if end >= record.size else (end // bs) - 1
        if done_to >= first:
            self._fetched.forget(local_id, range(first, done_to + 1))
        self._fetched.expire()
        self._touch(local_id, st, first, last)
        return data

    def _sequential(self, st: _FileState, offset: int, end: int) -> int:
        """Read-ahead window (blocks) for this read; updates the file's sequential state."""
        ahead_of = offset - st.next_offset
        if offset == 0 or 0 <= ahead_of <= self.block_size:
            st.window = min(self._readahead_blocks, max(2, st.window * 2))
            st.next_offset = end
        elif -self.block_size <= ahead_of < 0:
            # Slightly behind: the kernel's own read-ahead sends neighbouring requests out of
            # order, or the same range is read again. Neither grows nor resets the window.
            return 0
        else:
            st.window = 0
            st.next_offset = end
        return st.window

    async def _bring(
        self, local_id: int, st: _FileState, first: int, last: int, window: int
    ) -> dict[int, memoryview]:
        """Make blocks first..last available: present, or their fetched bytes in the result.

        With :meth:`run` running, fetches are installed in the background and the reader waits
        only for their bytes (``ready``), not for the write into the cache file (``done``).
        """
        got: dict[int, memoryview] = {}
        bs = self.block_size
        attempts = 0
        while attempts < 5:  # a background fetch that failed or was superseded is retried
            record = self._record(local_id)
            limit = -(-record.remote_valid_len // bs)  # blocks holding remote bytes
            need = [
                b
                for b in range(first, min(last + 1, limit))
                if b not in st.present and b not in got
            ]
            ahead = self._ahead(st, last, min(window, limit - last - 1))
            if self._installing >= INSTALL_BACKLOG:  # the cache file is behind the network
                ahead = []
                if any(b not in st.inflight for b in need):
                    await self._backlog_drained()
                    continue
            if not need and not ahead:
                return got
            waits = {id(f): f for b in need if (f := st.inflight.get(b)) is not None}
            fresh = [b for b in need if b not in st.inflight]
            if self._bg is not None:
                for start, count in _runs(ahead, READAHEAD_FETCH // bs):
                    f = self._register(st, record, start, count)
                    self._bg.start_soon(self._run_fetch, local_id, st, record, f)
            else:
                fresh.extend(ahead)
            mine = [self._register(st, record, s, c) for s, c in _runs(fresh, MAX_FETCH // bs)]
            if self._bg is not None:
                for f in mine:  # installed in the background; we wait for the bytes only
                    self._bg.start_soon(self._run_fetch, local_id, st, record, f)
            elif len(mine) == 1:
                await self._run_fetch(local_id, st, record, mine[0])
            elif mine:
                async with trio.open_nursery() as nursery:
                    for f in mine:
                        nursery.start_soon(self._run_fetch, local_id, st, record, f)
            for f in [*mine, *waits.values()]:
                # ``ready``, not ``done``: a block installed meanwhile is read from the cache
                # file by _assemble (present wins), one still being installed from these bytes.
                await f.ready.wait()
                if f.data is None and f in mine and f.error is not None:
                    raise f.error
                if f.data is not None:
                    view = memoryview(f.data)
                    for b in range(max(first, f.first), min(last + 1, f.first + f.count)):
                        got[b] = view[(b - f.first) * bs : (b - f.first + 1) * bs]
            window = 0  # read-ahead is asked for once per read
            attempts += 1
        raise OSError(errno.EIO, "remote read kept failing")

    async def _backlog_drained(self) -> None:
        """Wait until less than INSTALL_BACKLOG of fetched data waits to be installed."""
        while self._installing >= INSTALL_BACKLOG:
            drained = self._drained
            await drained.wait()

    def _ahead(self, st: _FileState, last: int, window: int) -> list[int]:
        """Blocks after ``last`` to fetch now for read-ahead (empty if enough are coming).

        The window is topped up once a whole read-ahead fetch of it is missing (half of it
        while the window is small), or at once when the next block is missing.
        """
        if window <= 0:
            return []
        span = range(last + 1, last + 1 + window)
        missing = [b for b in span if b not in st.present and b not in st.inflight]
        if not missing:
            return []
        enough = min(READAHEAD_FETCH // self.block_size, max(1, window // 2))
        if len(missing) < enough and missing[0] != last + 1:
            return []
        return missing

    def _register(self, st: _FileState, record: FileRecord, first: int, count: int) -> _Fetch:
        f = _Fetch(first, count, st.epoch, record.remote_file_id)
        for b in range(first, first + count):
            st.inflight[b] = f
        return f

    async def _run_fetch(
        self, local_id: int, st: _FileState, record: FileRecord, f: _Fetch, install: bool = True
    ) -> None:
        bs = self.block_size
        try:
            offset = f.first * bs
            length = min(f.count * bs, record.remote_valid_len - offset)
            data = await self._fetch(record, offset, length)
            if len(data) != length:
                raise OSError(
                    errno.EIO, f"remote returned {len(data)} bytes for {length} at {offset}"
                )
            f.data = data
            f.ready.set()
            if install:
                self._installing += len(data)
                try:
                    await self._install(local_id, st, f)
                finally:
                    self._installing -= len(data)
                    self._drained.set()
                    self._drained = trio.Event()
        except Exception as exc:  # handed to the waiting readers, who raise or retry
            if f.data is None:
                f.error = exc
            log.debug("fetch of blocks %d+%d of %d failed: %r", f.first, f.count, local_id, exc)
        finally:
            f.ready.set()
            for b in range(f.first, f.first + f.count):
                if st.inflight.get(b) is f:
                    del st.inflight[b]
            if st.stale:  # stale blocks left for this fetch (_release_stale), if not installed
                self._release_stale(st, range(f.first, f.first + f.count))
            f.done.set()

    async def _install(self, local_id: int, st: _FileState, f: _Fetch) -> None:
        """Store fetched blocks as clean (if still wanted and there is room)."""
        assert f.data is not None
        bs = self.block_size
        async with st.lock:
            record = self.journal.get(local_id)
            if st.dropped or st.epoch != f.epoch or record is None:
                return
            if record.remote_file_id != f.file_id:
                return  # the remote content changed since the fetch started
            valid = record.remote_valid_len
            blocks = [
                b
                for b in range(f.first, f.first + f.count)
                if b not in st.present and b * bs < valid
            ]
            if not blocks:
                return
            need = max(0, self._charge(st.present | set(blocks), record.size) - st.charged)
            if not self._make_room(need, stretch=f.stretch):
                return
            writes = []
            for start, count in _runs(blocks, 1 << 30):
                lo = (start - f.first) * bs
                hi = min((start - f.first + count) * bs, valid - f.first * bs)
                writes.append((start * bs, memoryview(f.data)[lo:hi]))
            try:
                await self._write_local(local_id, writes, sum(len(w[1]) for w in writes))
            except OSError as exc:
                self._reserved -= need
                self._scrub_after_failure(local_id, st, blocks)
                log.warning("cannot cache fetched blocks of %d: %s", local_id, exc)
                return
            self._reserved -= need
            if st.dropped:
                return
            if st.epoch != f.epoch:
                # Invalidated while we wrote (the remote content changed; a truncate or a
                # write cannot come in, we hold the lock): these bytes are no longer the
                # file's, and blocks that are not present must read as holes (once no reader
                # holds them: the stale blocks' rule).
                held = [b for b in blocks if st.pinned(b)]
                st.stale.update(held)
                self._scrub_after_failure(local_id, st, [b for b in blocks if b not in held])
                return
            st.present.update(blocks)
            st.stale.difference_update(blocks)  # fetched again: the new bytes are in place
            self._recharge(local_id, st)
            for b in blocks:
                self._lru[(local_id, b)] = None
            self.journal.set_blocks(local_id, blocks, dirty=False)
            f.installed = True
            if f.keep:
                self._keep_fetched(local_id, st, f, blocks, valid)

    def _keep_fetched(
        self, local_id: int, st: _FileState, f: _Fetch, blocks: list[int], valid: int
    ) -> None:
        """Keep the installed blocks' bytes for the reader, unless it is already past them
        (a reader that waited for this fetch was served from its bytes directly). A block a
        read is on (pinned) is kept: that read may not have taken the bytes yet, and now
        finds the block present; it lets them go when done."""
        assert f.data is not None
        bs = self.block_size
        view = memoryview(f.data).toreadonly()
        for b in blocks:
            if (b + 1) * bs <= st.next_offset and b not in st.pins:
                continue
            lo = (b - f.first) * bs
            self._fetched.keep(local_id, b, view[lo : lo + min(bs, valid - b * bs)])

    async def _assemble(
        self,
        local_id: int,
        st: _FileState,
        offset: int,
        end: int,
        got: dict[int, memoryview],
        *,
        fresh: bool = False,
        kept: bool = False,
    ) -> bytes | bytearray | memoryview:
        """Bytes [offset, end): present blocks from the cache file, else fetched, else zeros.

        The caller pins the blocks. Only the requested bytes are read from the cache file.
        ``fresh``: a range read whole from the cache file may come back as the ``bytearray``
        it was read into (no one else holds it), saving a copy. ``kept``: present clean blocks
        whose fetched bytes are still in memory are taken from there, and a range that one
        view holds whole comes back as that view, without a copy. Otherwise always ``bytes``.
        """
        bs = self.block_size
        # Segments in order: (lo, hi, None) = read the cache file, (lo, hi, bytes) = given.
        segments: list[tuple[int, int, bytes | memoryview | None]] = []
        for b in range(offset // bs, (end - 1) // bs + 1):
            lo, hi = max(offset, b * bs), min(end, (b + 1) * bs)
            mem = self._fetched.get(local_id, b) if kept and b not in st.dirty else None
            if b in st.present and mem is None:
                if segments and segments[-1][2] is None and segments[-1][1] == lo:
                    segments[-1] = (segments[-1][0], hi, None)
                else:
                    segments.append((lo, hi, None))
            else:
                fetched = mem if b in st.present else got.get(b)
                piece = b"" if fetched is None else fetched[lo - b * bs : hi - b * bs]
                if len(piece) < hi - lo:  # past the remote bytes: zeros
                    piece = bytes(piece) + bytes(hi - lo - len(piece))
                segments.append((lo, hi, piece))
        ranges = [(lo, hi) for lo, hi, data in segments if data is None]
        local: list[bytes] | list[bytearray] | None = []
        if ranges:
            total = sum(hi - lo for lo, hi in ranges)
            local = self._pread_cached(local_id, ranges) if total <= NOWAIT_IO else None
            if local is None:
                # Opened here, before any wait for a worker thread: a truncate to 0 meanwhile
                # renames a big cache file aside (_shrink_file), and the read gets what it
                # would have read before, instead of ENOENT for a path that is gone.
                fd = self._open_read(local_id)
                try:
                    if total > THREAD_IO:
                        local = await trio.to_thread.run_sync(self._pread_ranges, fd, ranges)
                    else:
                        local = self._pread_ranges(fd, ranges)
                finally:
                    os.close(fd)  # after the thread: run_sync waits for it even if cancelled
        if len(segments) == 1:
            data = segments[0][2]
            if data is None and fresh:
                return local[0]
            if isinstance(data, memoryview):
                return data
        it = iter(local)
        return b"".join(next(it) if data is None else data for _, _, data in segments)

    def _pread_cached(self, local_id: int, ranges: list[tuple[int, int]]) -> list[bytearray] | None:
        """The ranges read inline, if the page cache holds all of them (``RWF_NOWAIT``: the
        kernel refuses rather than wait for the disk); None when it does not.

        A cold read's blocks were just written into the cache file, so they are in the page
        cache: copying them on the trio thread costs less than handing each read to a worker
        thread and back, which took ~1 ms per 1 MiB read, the largest part of a cold read's
        time once the downloads ran ahead (bench/RESULTS.md, 2026-12-07).
        """
        if not self._nowait:
            return None
        fd = self._open_read(local_id)
        try:
            out = []
            for lo, hi in ranges:
                buf = bytearray(hi - lo)
                try:
                    n = os.preadv(fd, [buf], lo, os.RWF_NOWAIT)
                except BlockingIOError:
                    return None
                if n < len(buf) and lo + n < os.fstat(fd).st_size:
                    return None  # partly in memory: the rest needs the disk
                # Past the end of the cache file: zeros, as a hole. Kept as the bytearray: the
                # caller's join copies anyway (a second copy here cost 5 % of an upload's CPU).
                out.append(buf)
            return out
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            self._nowait = False  # a file system or kernel without RWF_NOWAIT: threads
            return None
        finally:
            os.close(fd)

    def _pread_ranges(self, fd: int, ranges: list[tuple[int, int]]) -> list[bytes]:
        return [_pread_exact(fd, hi - lo, lo) for lo, hi in ranges]

    def _touch(self, local_id: int, st: _FileState, first: int, last: int) -> None:
        for b in range(first, last + 1):
            key = (local_id, b)
            if key in self._lru:
                self._lru.move_to_end(key)
        now = self._wall_clock()
        if now - st.access_saved >= ACCESS_SAVE_INTERVAL:
            st.access_saved = now
            self.journal.update(local_id, last_access=now)

    # --- writing ------------------------------------------------------------------------------

    async def _write_local(
        self, local_id: int, writes: list[tuple[int, bytes | memoryview]], total: int
    ) -> None:
        def work() -> None:
            for offset, data in writes:
                _pwrite_all(fd, data, offset)

        # Opened here, before any wait for a worker thread: a drop meanwhile (the file
        # deleted) unlinks what this writes into, instead of the thread making the cache
        # file again after it, left on the disk until the next mount.
        fd = self._open(local_id)
        try:
            if total > THREAD_WRITE:
                await trio.to_thread.run_sync(work)
            else:
                work()
        finally:
            os.close(fd)  # after the thread: run_sync waits for it even if cancelled

    def _scrub_after_failure(self, local_id: int, st: _FileState, blocks: Iterable[int]) -> None:
        """After a failed local write: make blocks that are not present read as zeros again,
        and forget clean present ones that may now hold part of the failed write."""
        bs = self.block_size
        record = self.journal.get(local_id)
        try:
            fd = os.open(self.path(local_id), os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            forget = []
            for b in blocks:
                if b in st.present and b in st.dirty:
                    continue  # dirty data stays; a failed write may change it (POSIX allows)
                punch_hole(fd, b * bs, bs)
                if b in st.present:
                    forget.append(b)
            if record is not None and os.fstat(fd).st_size > record.size:
                os.ftruncate(fd, record.size)
        except OSError as exc:
            log.error("cannot clean up cache file of %d after a failed write: %s", local_id, exc)
            return
        finally:
            os.close(fd)
        self._fetched.forget(local_id, forget)
        for b in forget:
            st.present.discard(b)
            self._lru.pop((local_id, b), None)
        self._recharge(local_id, st)
        self.journal.delete_blocks(local_id, forget)

    async def write(
        self, local_id: int, offset: int, data: bytes, *, mtime_ns: int | None = None
    ) -> None:
        """Write at any offset (sparse, past EOF). Durable in the cache when it returns.

        Raises OSError(ENOSPC) when the cache is full of unsent data or the disk is full;
        nothing is changed then (bytes of dirty blocks in the range may be partly written,
        as POSIX allows for a failed write).
        """
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        if not data:
            return
        bs = self.block_size
        st = self._state(local_id)
        stretch = False
        while True:
            async with _Locked(st.lock):
                record = self._record(local_id)
                end = offset + len(data)
                first, last = offset // bs, (end - 1) // bs
                span = range(first, last + 1)
                # Pinned from here: eviction must not turn a present clean block of the span
                # into a missing one after we decided it needs no read-modify-write.
                with self._pin(st, span):
                    writes: list[tuple[int, bytes | memoryview]] = []
                    for b in sorted({first, last}):
                        base = await self._rmw_base(local_id, st, record, b, offset, end)
                        if base:
                            writes.append((b * bs, base))
                    writes.append((offset, data))
                    size = max(record.size, end)
                    new = sum(1 for b in span if b not in st.present)
                    last = (size - 1) // bs
                    has_last = last in st.present or last in span
                    need = max(0, self._charge_n(len(st.present) + new, size, has_last))
                    need = max(0, need - st.charged)
                    if stretch:
                        self._stretch(need)
                    if stretch or self._make_room(need):
                        await self._write_reserved(local_id, st, span, end, writes, need, mtime_ns)
                        return
            # The bound is full of unsent data. Wait (without this file's lock, which an upload
            # of this file may need) for uploads to drain it, or stretch the bound when none
            # can: a write is refused only by a full disk, never by the bound.
            stretch = not await self._wait_for_room()

    async def _write_reserved(
        self,
        local_id: int,
        st: _FileState,
        span: range,
        end: int,
        writes: list[tuple[int, bytes | memoryview]],
        need: int,
        mtime_ns: int | None,
    ) -> None:
        """The write itself, with ``need`` bytes reserved (the caller holds the lock)."""
        # Before the first await: a read from now on takes these blocks from the cache file.
        self._fetched.forget(local_id, span)
        try:
            await self._write_local(local_id, writes, len(writes[-1][1]))
        except OSError as exc:
            self._reserved -= need
            self._scrub_after_failure(local_id, st, span)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(exc.errno, "the cache disk is full") from exc
            raise
        self._reserved -= need
        if st.dropped or self.journal.get(local_id) is None:
            return  # unlinked and forgotten while we wrote
        try:
            self._commit_write(local_id, st, span, end, mtime_ns)
        except sqlite3.Error:
            # The journal could not record it (its disk is full): the write failed, so
            # blocks it made up must read as before, as after a failed pwrite.
            self._scrub_after_failure(local_id, st, span)
            raise

    def _commit_write(
        self, local_id: int, st: _FileState, span: range, end: int, mtime_ns: int | None
    ) -> None:
        """Persist a write's dirty marks, size and generation (synchronous: decided now, not
        before the pwrite's await, since an upload may have marked blocks clean meanwhile)."""
        record = self._record(local_id)
        newly_dirty = [b for b in span if b not in st.dirty]
        fields: dict[str, Any] = {"dirty": True}
        if end > record.size:
            fields["size"] = end
        if mtime_ns is not None:
            fields["mtime_ns"] = mtime_ns
        if newly_dirty:
            with self.journal.transaction():
                self.journal.set_blocks(local_id, newly_dirty, dirty=True)
                self.journal.update(local_id, **fields)
        else:  # the common case of a sequential write: one autocommitted UPDATE
            self.journal.update(local_id, **fields)
        st.present.update(span)
        self._recharge(local_id, st, max(end, record.size))
        st.stale.difference_update(span)  # written: these bytes are the file's now
        st.dirty.update(span)
        for b in newly_dirty:
            self._lru.pop((local_id, b), None)

    async def _rmw_base(
        self, local_id: int, st: _FileState, record: FileRecord, b: int, offset: int, end: int
    ) -> bytes:
        """Remote bytes of block ``b`` if a write of [offset, end) only covers part of them."""
        bs = self.block_size
        lo, hi = b * bs, min((b + 1) * bs, record.remote_valid_len)
        if b in st.present or hi <= lo or (offset <= lo and end >= hi):
            return b""
        f = st.inflight.get(b)
        if f is None:
            # We hold the file lock, so this fetch must not install itself; the write stores
            # its bytes together with the new ones.
            f = self._register(st, record, b, 1)
            await self._run_fetch(local_id, st, record, f, install=False)
        else:
            await f.ready.wait()
        if f.data is None:
            raise f.error or OSError(errno.EIO, "remote read failed")
        start = (b - f.first) * bs
        return f.data[start : start + hi - lo]

    async def truncate(self, local_id: int, size: int, *, mtime_ns: int | None = None) -> None:
        """Set the logical size. Shrinking lowers remote_valid_len: later growth reads zeros."""
        if size < 0:
            raise OSError(errno.EINVAL, "negative size")
        bs = self.block_size
        st = self._state(local_id)
        async with st.lock:
            record = self._record(local_id)
            # The last block's tail becomes zeros and later growth reads zeros: not the bytes
            # fetched before.
            self._fetched.forget_file(local_id)
            fields: dict[str, Any] = {"dirty": True, "size": size}
            if mtime_ns is not None:
                fields["mtime_ns"] = mtime_ns
            if size == record.size:
                if mtime_ns is not None:
                    self.journal.update(local_id, mtime_ns=mtime_ns, bump=True)
                return
            keep = -(-size // bs)  # blocks that still hold bytes
            if size < record.size:
                self._shrink_file(local_id, size)
                fields["remote_valid_len"] = min(record.remote_valid_len, size)
                gone = [b for b in st.present if b >= keep]
                for b in gone:
                    st.present.discard(b)
                    st.dirty.discard(b)
                    self._lru.pop((local_id, b), None)
            # In-flight fetches now hold bytes that may no longer count: never install them.
            st.epoch += 1
            st.inflight.clear()
            with self.journal.transaction():
                if size < record.size:
                    self.journal.delete_blocks_from(local_id, keep)
                self.journal.update(local_id, **fields)
            self._recharge(local_id, st, size)  # the last block's share follows the size

    def _shrink_file(self, local_id: int, size: int) -> None:
        """Cut the cache file to ``size`` (the caller holds the file lock)."""
        path = self.path(local_id)
        try:
            allocated = os.stat(path).st_blocks * 512
        except FileNotFoundError:
            return
        if size > 0 or allocated < DISCARD_ASIDE:
            os.truncate(path, size)  # zeros the tail of the last block, frees the rest
            return
        # Nobody writes the old file any more (writers and installs hold the lock we hold);
        # a reader that opened it before reads what it would have read before the truncate.
        aside = f"{path}{ASIDE_MARK}{next(self._asides)}"
        os.rename(path, aside)
        if self._bg is None:
            _unlink_quietly(aside)
        else:
            self._bg.start_soon(self._discard, aside)

    @staticmethod
    async def _discard(path: str) -> None:
        with trio.CancelScope(shield=True):  # unmounting waits for it rather than leave it
            await trio.to_thread.run_sync(_unlink_quietly, path)

    # --- upload support -------------------------------------------------------------------

    async def ensure_complete(self, local_id: int) -> None:
        """Bring every block below remote_valid_len into the cache (before an upload).

        Hold :meth:`pinned` around this and the upload, or eviction may undo it.
        Raises OSError(ENOSPC) when the cache cannot hold the file.
        """
        bs = self.block_size
        st = self._state(local_id)
        while True:
            record = self._record(local_id)
            limit = -(-record.remote_valid_len // bs)
            missing = [b for b in range(limit) if b not in st.present]
            if not missing:
                return
            start, count = next(_runs(missing, MAX_FETCH // bs))
            waits = [f for b in range(start, start + count) if (f := st.inflight.get(b))]
            if waits:
                await waits[0].done.wait()
                continue
            f = self._register(st, record, start, count)
            f.stretch = True
            f.keep = False
            await self._run_fetch(local_id, st, record, f)
            if f.error is not None:
                raise f.error
            if not f.installed and st.epoch == f.epoch and not st.dropped:
                raise OSError(errno.ENOSPC, "the cache cannot hold this file for its upload")

    def reader(
        self, local_id: int, size: int | None = None
    ) -> Callable[[int, int], Awaitable[bytes | bytearray]]:
        """``async read(offset, n)`` over the complete local content, for the uploader.

        Reads are clipped to ``size`` (default: the current size). Raises OSError(EIO) when a
        block that holds remote bytes is not in the cache (call :meth:`ensure_complete`).
        """
        st = self._state(local_id)
        limit_size = self._record(local_id).size if size is None else size
        bs = self.block_size

        async def read(offset: int, n: int) -> bytes | bytearray:
            end = min(offset + n, limit_size)
            if n <= 0 or offset >= end:
                return b""
            record = self._record(local_id)
            for b in range(offset // bs, (end - 1) // bs + 1):
                if b not in st.present and b * bs < record.remote_valid_len:
                    raise OSError(errno.EIO, f"block {b} of local id {local_id} is not cached")
            return await self._assemble(local_id, st, offset, end, {}, fresh=True)

        return read

    def mark_clean(self, local_id: int, generation: int) -> bool:
        """After an upload of ``generation``: its dirty blocks become clean, the record too.

        Does nothing and returns False if the file changed since (generation moved). Inside
        the caller's journal transaction, the block map follows only when that commits.
        """
        record = self.journal.get(local_id)
        if record is None or record.generation != generation:
            return False
        with self.journal.transaction():
            self.journal.clean_blocks(local_id)
            self.journal.update(local_id, dirty=False)

        def forget_dirty() -> None:
            # Only once the journal says clean: evictable blocks whose clean state never
            # reached the disk would be fetched back from an object the entry may not use.
            st = self._states.get(local_id)
            if st is not None:
                for b in sorted(st.dirty):
                    self._lru[(local_id, b)] = None
                st.dirty.clear()
                self._freed()  # clean now: evictable, for writers waiting for room

        self.journal.on_commit(forget_dirty)
        return True

    # --- forgetting -----------------------------------------------------------------------

    def drop(self, local_id: int) -> None:
        """Remove a file's cache file and block map (the file is gone)."""
        self._fetched.forget_file(local_id)
        st = self._states.pop(local_id, None)
        if st is not None:
            st.dropped = True
            st.epoch += 1
            st.inflight.clear()
            for b in st.present:
                self._lru.pop((local_id, b), None)
            self._used -= st.charged
            st.charged = 0
            self._freed()
        self.path(local_id).unlink(missing_ok=True)
        self.journal.delete_blocks_from(local_id, 0)

    def invalidate(self, local_id: int) -> None:
        """Forget clean blocks (the remote content changed elsewhere); dirty blocks stay."""
        self._fetched.forget_file(local_id)
        st = self._states.get(local_id)
        if st is None:
            return
        st.epoch += 1
        st.inflight.clear()
        clean = [b for b in st.present if b not in st.dirty and not st.pinned(b)]
        # A reader holds these: punching them now could hand it zeros. They stop being present
        # at once (new reads fetch the new content) and are punched when the reader is done.
        held = [b for b in st.present if b not in st.dirty and st.pinned(b)]
        with self.journal.transaction():
            if clean:
                self._evict_blocks(local_id, clean)
            if held:
                for b in held:
                    st.present.discard(b)
                    self._lru.pop((local_id, b), None)
                self._recharge(local_id, st)
                self.journal.delete_blocks(local_id, held)
                st.stale.update(held)

    def allocated_past(self, local_id: int, start: int, size: int) -> int:
        """Bytes the cache holds for a file of ``size`` bytes from ``start`` on (holes and
        blocks never written count nothing), counted as for the bound; for ``st_blocks``."""
        st = self._states.get(local_id)
        if st is None or not st.present or start >= size:
            return 0
        if start <= 0:
            return self._charge(st.present, size)
        first = -(-start // self.block_size)  # a block straddling ``start`` counts as remote
        count = sum(1 for b in st.present if b >= first)
        last = (size - 1) // self.block_size
        return self._charge_n(count, size, last >= first and last in st.present)

    # --- status ---------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        bytes_dirty = 0
        for local_id, st in self._states.items():
            if st.dirty:
                record = self.journal.get(local_id)
                bytes_dirty += self._charge(st.dirty, record.size if record else 0)
        journal = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                journal += os.stat(f"{self.journal.path}{suffix}").st_blocks * 512
        return {
            "bytes_cached": self._used,
            "bytes_dirty": bytes_dirty,
            "bytes_max": self.max_bytes,
            "bytes_over_bound": max(0, self._used - self.max_bytes),
            "bytes_journal": journal,
            "files_cached": sum(1 for st in self._states.values() if st.present),
            "files_dirty": sum(1 for r in self.journal.all_files() if has_unsent_content(r)),
        }
