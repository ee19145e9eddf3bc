"""The shard hash of an upload body, computed in a worker thread while the body is sent.

SHA-256 was the largest CPU cost of an upload on the trio thread (7.5 % of the mount's busy
samples during a restic backup, AES-CTR 5.4 %: bench/RESULTS.md), and it runs in order over the
whole ciphertext, so inline it delays every chunk's send. hashlib releases the GIL while it
hashes a large buffer, so a worker thread can hash chunk ``i`` while the trio thread encrypts
and sends chunk ``i + 1``: the PUT that an ``fsync`` waits for (restic fsyncs every pack) is
shorter by that much.

The chunks are ``bytes`` (immutable) handed over by reference, in order, through a queue that
one thread drains; at most ``ahead`` chunks may wait for it (memory: ``ahead`` chunks), past
that the body waits for the hash. The thread comes from trio's thread cache.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any

import trio

from . import crypto

HASH_AHEAD = 4  # chunks queued for the hash thread before the body waits for it


class BackgroundHash:
    """RIPEMD-160(SHA-256(chunks)), fed in order with :meth:`update`; one per body."""

    def __init__(self, ahead: int = HASH_AHEAD) -> None:
        self._hasher = crypto.ShardHasher()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._room = threading.Semaphore(ahead)
        self._token = trio.lowlevel.current_trio_token()
        self._done = trio.Event()
        self._error: BaseException | None = None
        self._started = False
        self._closed = False

    def _work(self) -> None:
        """In the worker thread: hash what is queued until the end mark."""
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            try:
                if self._error is None:
                    self._hasher.update(chunk)
            except BaseException as exc:  # kept for hexdigest; keep draining, never hang
                self._error = exc
            finally:
                self._room.release()

    def _finished(self, result: Any) -> None:
        """In the worker thread, after :meth:`_work` (``result``: its outcome): wake
        :meth:`hexdigest`."""
        try:
            result.unwrap()
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        # RunFinishedError: the mount is gone, nobody waits for this hash.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._done.set)

    async def reserve(self) -> None:
        """Room for one more chunk: waits while ``ahead`` chunks are queued (the hash lags,
        a few ms). Each reservation is used by :meth:`put` or given back by :meth:`release`."""
        if not self._room.acquire(blocking=False):
            await trio.to_thread.run_sync(self._room.acquire)

    def release(self) -> None:
        """Give back a reservation that :meth:`put` will not use."""
        self._room.release()

    def put(self, chunk: bytes) -> None:
        """Queue the next chunk, with a reservation from :meth:`reserve`. Synchronous, so a
        caller can decide and queue without another task slipping a chunk in between."""
        if self._closed:
            raise RuntimeError("update after the hash was closed")
        if not self._started:
            self._started = True
            trio.lowlevel.start_thread_soon(self._work, self._finished)
        self._queue.put(chunk)

    async def update(self, chunk: bytes) -> None:
        await self.reserve()
        self.put(chunk)

    def close(self) -> None:
        """No more chunks: the thread ends once it has hashed the queued ones. Synchronous,
        for a body's ``finally``; idempotent."""
        if not self._closed:
            self._closed = True
            if self._started:
                self._queue.put(None)

    async def hexdigest(self) -> str:
        self.close()
        if self._started:
            await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._hasher.hexdigest()
