"""Plaintext of blocks just fetched and installed, kept in memory for the reader that is about
to ask for them.

A cold sequential read fetches blocks ahead of the reader (read-ahead), writes them into the
cache file and, when the reader gets there, used to read them back from the cache file: a
``preadv`` into a fresh buffer and a join, two 1 MiB copies per FUSE read on the trio thread,
half of that thread's busy time (bench/RESULTS.md, "cold read, round two"). Here the fetch
buffer's views stay around after the install and the read is answered with a view of them:
no copy on our side at all (pyfuse3 hands the buffer to the kernel). The cache file is still
written (the cache keeps the blocks, for the next read and across restarts); the reply just
does not go through it.

What keeps it correct is :class:`BlockCache`, not this class: a view is only used for a block
that is present and clean, and every path that changes what a block holds (write, truncate,
invalidate, evict, drop, a failed write's scrub) forgets the block's view first, synchronously.

Memory: a view keeps its whole fetch buffer alive (up to ``READAHEAD_FETCH``), so views are
forgotten as soon as a read has passed the end of their block, and at most ``max_bytes`` of
blocks are kept (the oldest go first, as do views older than ``max_age``, e.g. of a file read
only partly). Not counted against ``--cache-size``: that bounds the disk, and these blocks
are on the disk too.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

MiB = 1024 * 1024
# A little more than the read-ahead window (32 MiB) plus one fetch: a sequential reader's
# window fits whole, and the buffers pinned by partly read fetches are bounded too.
KEEP_MAX = 48 * MiB
KEEP_AGE = 30.0  # seconds a view waits for its reader before it is let go


class FetchedBytes:
    """Views of fetched plaintext by (local id, block), oldest first, bounded."""

    def __init__(
        self,
        max_bytes: int = KEEP_MAX,
        max_age: float = KEEP_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._views: OrderedDict[tuple[int, int], tuple[memoryview, float]] = OrderedDict()
        self._by_file: dict[int, set[int]] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._views)

    def keep(self, local_id: int, block: int, view: memoryview) -> None:
        if self.max_bytes <= 0 or len(view) > self.max_bytes:
            return
        key = (local_id, block)
        self._pop(key)
        now = self._clock()
        self._views[key] = (view, now)
        self._by_file.setdefault(local_id, set()).add(block)
        self.bytes += len(view)
        self._trim(now)

    def get(self, local_id: int, block: int) -> memoryview | None:
        entry = self._views.get((local_id, block))
        return None if entry is None else entry[0]

    def forget(self, local_id: int, blocks: Iterable[int]) -> None:
        if local_id not in self._by_file:
            return
        for b in blocks:
            self._pop((local_id, b))

    def forget_file(self, local_id: int) -> None:
        for b in list(self._by_file.get(local_id, ())):
            self._pop((local_id, b))

    def expire(self) -> None:
        """Let go of views past their age (called as reads go by: no timer of its own)."""
        if self._views:
            self._trim(self._clock())

    def _trim(self, now: float) -> None:
        while self._views:
            key, (_view, born) = next(iter(self._views.items()))
            if self.bytes <= self.max_bytes and now - born < self.max_age:
                return
            self._pop(key)

    def _pop(self, key: tuple[int, int]) -> None:
        entry = self._views.pop(key, None)
        if entry is None:
            return
        self.bytes -= len(entry[0])
        blocks = self._by_file[key[0]]
        blocks.discard(key[1])
        if not blocks:
            del self._by_file[key[0]]
