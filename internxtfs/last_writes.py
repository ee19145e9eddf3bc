"""When this mount last wrote to Internxt, kept across runs on one cache directory.

Internxt's read replicas trail its writes (docs/protocol.md, "Read replicas"), and
``internxt/consistency.py`` guards against that within one run. A remount right after an
unmount, a crash or a ``systemctl restart`` starts a new run that knows nothing of the writes
a second ago: its first listings could come from a replica that still misses the files just
stored, or still shows the ones just deleted. This keeps the time of the last write in the
journal's key/value table, and tells the new run how long such first listings must be checked
(``Metadata.hold_first_listings``), and how long an answer that a move was already done may
come from a replica that misses the last run's moves (``ReadLag.wait_settled``). Nothing else
of the new run takes it as a write of its own: merging listings with a view kept from the last
run would keep entries that the crash recovery has since resolved.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from internxtfs.fs.journal import Journal
from internxtfs.internxt.consistency import ReadLag

log = logging.getLogger(__name__)


class LastWrites:
    """Keeps, in the journal, a time no write of this mount is later than.

    Saved as each write leaves (:meth:`ReadLag.sending`: a write whose answer a crash cut
    off may have landed) and as it is answered (:meth:`ReadLag.wrote`), as "until now +
    :data:`AHEAD`", and again only once that point is less than
    :data:`AHEAD` / 2 away: a few small writes a second at most, while writes go on (a
    larger AHEAD would hold the first listings after a crash longer). A clean end
    (:meth:`close`) saves the exact time of the last write."""

    KEY = "writes_until"  # wall-clock seconds
    AHEAD = 0.5

    def __init__(
        self, journal: Journal, read_lag: ReadLag, wall: Callable[[], float] = time.time
    ) -> None:
        self.journal = journal
        self.read_lag = read_lag
        self.wall = wall
        self._until = 0.0

    def restore(self) -> float:
        """Seconds for which a read may still miss a write of the last run (0: none), then
        keep the time of this run's writes."""
        try:
            until = float(self.journal.get_meta(self.KEY) or "nan")
        except ValueError:
            until = float("nan")
        self.read_lag.on_write = self._wrote
        if until != until:  # nothing kept (a new cache, or one from an older version)
            return 0.0
        # At most a window past the kept time's own margin: a wall clock set back between
        # runs (NTP, a cache from another machine) is not replica lag.
        lag = min(
            max(0.0, until + self.read_lag.window - self.wall()), self.read_lag.window + self.AHEAD
        )
        self.read_lag.earlier_run(lag)
        return lag

    def _wrote(self) -> None:
        now = self.wall()
        if now < self._until - self.AHEAD / 2:
            return
        self._save(now + self.AHEAD)

    def close(self) -> None:
        """At a clean end: the exact time of the last write, so the next run holds its first
        listings no longer than needed."""
        last = self.read_lag.last_write()
        if last is None or self._until == 0.0:
            return  # this run wrote nothing: the last run's time stands
        self._save(self.wall() - max(0.0, self.read_lag.clock() - last))

    def _save(self, until: float) -> None:
        try:
            self.journal.set_meta(self.KEY, repr(until))
        except sqlite3.Error as exc:  # a full disk must not fail a write over a hint
            log.warning("cannot keep the time of the last write: %s", exc)
            return
        self._until = until
