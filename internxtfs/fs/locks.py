"""One lock per key, taken by whoever changes that key's remote state (S3QL's MultiLock idea).

The mount wiring (mount.py) makes one :class:`KeyedLock` for files, keyed by journal
``local_id``, and hands it to the handlers, the uploader and the orphan sweeper: a file's
namespace changes (rename, unlink), its publish step and the sweep of its uncertain objects
never overlap. docs/concurrency.md lists every lock and the order they are taken in.

A key's lock exists only while someone holds it or waits for it, so the table does not grow
with every file the mount has seen. Waiters get it in the order they asked (trio.Lock is fair).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

import trio


class _Slot:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.users = 0  # holding or waiting


class KeyedLock:
    def __init__(self) -> None:
        self._slots: dict[Hashable, _Slot] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """``async with locks.hold(key):`` — exclusive for ``key``, not reentrant."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[key]

    def locked(self, key: Hashable) -> bool:
        slot = self._slots.get(key)
        return slot is not None and slot.lock.locked()

    def __len__(self) -> int:
        """Keys held or waited for (tests check nothing is left behind)."""
        return len(self._slots)
