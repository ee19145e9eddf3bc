"""Read-replica lag: answers that contradict our own recent writes are asked again.

Internxt's drive server answers reads from database replicas that trail the primary
(docs/protocol.md, "Read replicas"): for a moment after we create a folder, a file create in it
can answer 404 "Folder not found"; after we move a file away, a move onto its old name can
answer 409; after we delete something, a listing can still show it. Internxt's own rclone
adapter sleeps 500 ms after each folder create for this (rclone-adapter
``consistency/consistency.go``, ticket PB-1446).

:class:`ReadLag` remembers when our last write landed. An answer that lag can explain (a
NotFound or Conflict, or a read the caller finds stale) is not acted on while it may predate
that write: the call is made again, with a short growing pause, until an answer comes from a
request sent at least ``window`` seconds after the first contradicting one. That answer is final
whatever it says, so one call waits at most ``window`` plus its own duration; with no write of
ours in the last ``window`` seconds nothing is retried at all.

Listings: a folder's listing may also miss what we just created in it, or still show what we
just deleted, renamed or moved out of it. :meth:`listing_lag` says how long a listing of a
folder may still predate one of our writes that changed its children, and
:meth:`recently_written` / :meth:`recently_deleted` which listed entries those were. The
folders a write changes are given to :meth:`wrote` (a delete's or move's old parent comes from
:meth:`seen`, which the drive layer feeds with every entry it parses; an unknown parent counts
for every folder).

Shared state: ``_last_write``, ``_any_folder``, ``_folders`` and ``_parents``, all set between
awaits (trio needs no lock).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import trio

from .errors import Conflict, NotFound

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_WINDOW = 3.0  # seconds; Internxt's replicas trail by well under a second
FIRST_PAUSE = 0.05
MAX_PAUSE = 0.5
LAG_ERRORS: tuple[type[Exception], ...] = (NotFound, Conflict)
PARENTS_KEPT = 100_000  # uuid -> parent folder of the entries seen most recently


class ReadLag:
    def __init__(
        self,
        window: float = DEFAULT_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        self.window = max(0.0, window)
        self.clock = clock
        self._sleep = sleep
        self._last_write: float | None = None
        self._any_folder: float | None = None  # last write whose folder was not known
        self._folders: dict[str, float] = {}  # folder uuid -> last write changing its children
        self._parents: OrderedDict[str, str] = OrderedDict()
        self._entries: dict[str, float] = {}  # entry uuid -> last write of ours to it
        self._deleted: dict[str, float] = {}  # entry uuid -> when we deleted it
        # Until when a read may miss a write of the last run on this cache (a remount or a
        # restart within the window): which entries it wrote is not known, so any may lag.
        self._earlier_run: float | None = None
        # Called as each write leaves and after it is recorded (the mount keeps the time of
        # its last write across runs: internxtfs/last_writes.py).
        self.on_write: Callable[[], None] | None = None

    def wrote(self, folders: Iterable[str | None] = (None,), entries: Iterable[str] = ()) -> None:
        """A write of ours was answered: reads may not show it for ``window`` seconds.
        ``folders``: the folders whose children it changed (None: not known); ``entries``:
        the files/folders it created, renamed, moved, replaced or deleted."""
        now = self._last_write = self.clock()
        if self.on_write is not None:
            self.on_write()
        for folder in folders:
            if folder is None:
                self._any_folder = now
            else:
                self._folders[folder] = now
        for entry in entries:
            self._entries[entry] = now
        if len(self._folders) + len(self._entries) > 2000:  # forget what has settled
            self._folders = {f: t for f, t in self._folders.items() if now - t < self.window}
            self._entries = {e: t for e, t in self._entries.items() if now - t < self.window}
            self._deleted = {e: t for e, t in self._deleted.items() if now - t < self.window}

    def sending(self) -> None:
        """A write is about to leave. It may land although no answer ever comes back (the
        process killed while it is in flight), so the time kept across runs must cover it
        before it leaves, not once it is answered."""
        if self.on_write is not None:
            self.on_write()

    def deleted(self, uuids: Iterable[str]) -> None:
        """Entries we deleted (or trashed): a lagging listing must not bring them back."""
        now = self.clock()
        for uuid in uuids:
            self._deleted[uuid] = now

    def recently_deleted(self, uuid: str) -> bool:
        when = self._deleted.get(uuid)
        return when is not None and self.clock() - when < self.window

    def recently_written(self, uuid: str) -> bool:
        """Whether a read may still show this entry as it was before a write of ours."""
        when = self._entries.get(uuid)
        return when is not None and self.clock() - when < self.window

    def earlier_run(self, lag: float) -> None:
        """The last run on this cache wrote so recently that reads may miss it for ``lag``
        more seconds (internxtfs/last_writes.py)."""
        if lag > 0:
            self._earlier_run = self.clock() + lag

    async def wait_settled(self, uuids: Iterable[str]) -> None:
        """Until a read replica shows our last write to each of these entries, this run's or
        (any entry) the last run's."""
        wanted = list(uuids)
        if not wanted:
            return  # nothing to wait for (a trash of files only)
        now = self.clock()
        until = max(self._entries.get(uuid, now - self.window) for uuid in wanted)
        wait = max(until + self.window, self._earlier_run or now) - now
        if wait > 0:
            log.debug("waiting %.2f s for read replicas to show our last write", wait)
            await self._sleep(wait)

    def seen(self, uuid: str, parent: str | None) -> None:
        """Where an entry is (from any answer), for the old parent of a later move or delete."""
        if not parent:
            return
        self._parents[uuid] = parent
        self._parents.move_to_end(uuid)
        if len(self._parents) > PARENTS_KEPT:
            self._parents.popitem(last=False)

    def parent_of(self, uuid: str) -> str | None:
        return self._parents.get(uuid)

    def listing_lag(self, folder: str) -> float:
        """Seconds during which a listing of ``folder`` may still miss one of our writes to
        its children (0: none)."""
        times = [t for t in (self._folders.get(folder), self._any_folder) if t is not None]
        if not times:
            return 0.0
        return max(0.0, max(times) + self.window - self.clock())

    def last_write(self) -> float | None:
        return self._last_write

    def may_lag(self, asked: float) -> bool:
        """Whether an answer to a request sent at ``asked`` may predate a write of ours."""
        return self._last_write is not None and asked - self._last_write < self.window

    async def settle(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        what: str,
        errors: tuple[type[Exception], ...] = LAG_ERRORS,
        stale: Callable[[T], bool] | None = None,
        patient: bool = True,
    ) -> T:
        """``attempt()`` until its answer is one lag cannot explain, or holds past the window.

        ``errors``: exceptions lag can explain; ``stale(result)``: a result lag can explain;
        ``patient=False``: one attempt, whatever it answers (for a caller that has a cheaper
        way to learn that the answer was stale)."""
        if not patient:
            return await attempt()
        first: float | None = None
        pause = FIRST_PAUSE
        while True:
            asked = self.clock()
            final = not self.may_lag(asked) or (first is not None and asked >= first + self.window)
            if final:
                return await attempt()
            try:
                result = await attempt()
            except errors as exc:
                log.debug("%s: %s may predate our last write; asking again", what, exc)
            else:
                if stale is None or not stale(result):
                    return result
                log.debug("%s: answer may predate our last write; asking again", what)
            if first is None:
                first = asked
            await self._sleep(min(pause, max(0.0, first + self.window - self.clock())))
            pause = min(pause * 2, MAX_PAUSE)
