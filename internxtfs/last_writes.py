"""When this mount last wrote to Internxt, kept across runs on one cache directory.

Internxt's read replicas trail its writes (docs/protocol.md, "Read replicas"), and
``internxt/consistency.py`` guards against that within one run. A remount right after an
unmount, a crash or a ``systemctl restart`` starts a new run that would know nothing of the
writes a second ago, and list folders without the files just stored. This keeps the time of
the last write in the journal's key/value table, so the new run treats it as its own.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from internxtfs.fs.journal import Journal
from internxtfs.internxt.consistency import ReadLag

log = logging.getLogger(__name__)


class LastWrites:
    """Keeps, in the journal, a time no write of this mount is later than.

    Saved from :meth:`ReadLag.wrote` itself (so a crash a moment after a write still finds
    it), as "until now + :data:`AHEAD`", and again only once that point is less than
    :data:`AHEAD` / 2 away: one small write per second at most, while writes go on."""

    KEY = "writes_until"  # wall-clock seconds
    AHEAD = 2.0

    def __init__(self, journal: Journal, read_lag: ReadLag) -> None:
        self.journal = journal
        self.read_lag = read_lag
        self._until = 0.0

    def restore(self) -> None:
        """Treat the last run's writes as ours; then keep ours."""
        try:
            until = float(self.journal.get_meta(self.KEY) or "nan")
        except ValueError:
            until = float("nan")
        if until != until:  # nothing kept (a new cache, or one from an older version)
            # Assume the worst for one window: answers contradicting a write are asked again
            # (listings are not held back: that would slow every mount's first ls).
            self.read_lag.wrote(())
        else:
            ago = max(0.0, time.time() - until)
            if ago < self.read_lag.window:
                self.read_lag.wrote_before(ago)
        self.read_lag.on_write = self._wrote

    def _wrote(self) -> None:
        now = time.time()
        if now < self._until - self.AHEAD / 2:
            return
        until = now + self.AHEAD
        try:
            self.journal.set_meta(self.KEY, repr(until))
        except sqlite3.Error as exc:  # a full disk must not fail a write over a hint
            log.warning("cannot keep the time of the last write: %s", exc)
            return
        self._until = until
