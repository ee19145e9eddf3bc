"""Read-replica lag: some reads answer from the state as it was ``replica_lag_ms`` ago.

Internxt's drive server sends reads to PostgreSQL read replicas (drive-server-wip
``src/app.module.ts``: Sequelize's ``replication`` option outside development;
``src/config/configuration.ts``: one write host, two read hosts). A replica trails the primary,
so a folder created a moment ago can be missing from the folder check inside create-file, and a
file moved away a moment ago can still take its name in the conflict check inside move
(docs/protocol.md lists which reads the emulator lags).

How: while the lag is on, SQLite triggers copy every version of a ``folders``/``files`` row into
``folders_v``/``files_v`` with the wall-clock span ``[v_from, v_to)`` (ms) during which it was
current. A lagged read selects, instead of the table, the versions current at ``now - lag``: a
row inserted later is absent, a row changed later shows its old values, a row deleted later is
still there. Writes always go to the real tables. The triggers live in the database, so
``add-user`` running in another process is recorded too.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator

from .store import Store

log = logging.getLogger(__name__)

TABLES = ("folders", "files")
_OPEN = "1e18"  # v_to of the current version
# SQLite's 'now' has millisecond resolution and is fixed within one statement.
_NOW_MS = "((julianday('now') - 2440587.5) * 86400000.0)"
_KEEP_S = 60.0  # versions that ended longer than lag + this ago are pruned
_PRUNE_EVERY_S = 10.0


class ReplicaView:
    """Per-process switch between the live tables and their lagged versions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._enabled = False
        self._pruned_at = 0.0
        # Whatever a previous run left: no triggers until a lag is asked for.
        self._drop()

    def source(self, table: str, lag_ms: float) -> str:
        """SQL to put after FROM (with alias ``table``) for a read with the given lag."""
        assert table in TABLES
        if lag_ms <= 0:
            if self._enabled:
                self._drop()
                self._enabled = False
            return table
        if not self._enabled:
            self._create()
            self._enabled = True
        self._prune(lag_ms)
        moment = time.time() * 1000.0 - lag_ms
        return f"(SELECT * FROM {table}_v WHERE v_from <= {moment!r} AND v_to > {moment!r}) {table}"

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # A lagged read may come inside a route's own write transaction (move's conflict check).
        if self.store.conn.in_transaction:
            yield self.store.conn
        else:
            with self.store.transaction() as conn:
                yield conn

    def _create(self) -> None:
        """Start recording; everything that exists now counts as old enough for any lag."""
        self._drop()
        with self._transaction() as conn:
            for table in TABLES:
                conn.execute(
                    f"CREATE TABLE {table}_v AS SELECT *, 0.0 AS v_from, {_OPEN} AS v_to"
                    f" FROM {table}"
                )
                conn.execute(f"CREATE INDEX {table}_v_id ON {table}_v (id, v_to)")
                conn.execute(f"CREATE INDEX {table}_v_uuid ON {table}_v (uuid)")
                parent = "parent_uuid" if table == "folders" else "folder_uuid"
                conn.execute(f"CREATE INDEX {table}_v_parent ON {table}_v ({parent})")
                conn.execute(
                    f"CREATE TRIGGER {table}_v_ins AFTER INSERT ON {table} BEGIN"
                    f" INSERT INTO {table}_v SELECT *, {_NOW_MS}, {_OPEN} FROM {table}"
                    " WHERE id = NEW.id; END"
                )
                conn.execute(
                    f"CREATE TRIGGER {table}_v_upd AFTER UPDATE ON {table} BEGIN"
                    f" UPDATE {table}_v SET v_to = {_NOW_MS} WHERE id = OLD.id AND v_to = {_OPEN};"
                    f" INSERT INTO {table}_v SELECT *, {_NOW_MS}, {_OPEN} FROM {table}"
                    " WHERE id = NEW.id; END"
                )
                conn.execute(
                    f"CREATE TRIGGER {table}_v_del AFTER DELETE ON {table} BEGIN"
                    f" UPDATE {table}_v SET v_to = {_NOW_MS} WHERE id = OLD.id AND v_to = {_OPEN};"
                    " END"
                )
        log.info("replica lag on: recording row versions of %s", ", ".join(TABLES))

    def _drop(self) -> None:
        with self._transaction() as conn:
            for table in TABLES:
                for trigger in ("ins", "upd", "del"):
                    conn.execute(f"DROP TRIGGER IF EXISTS {table}_v_{trigger}")
                conn.execute(f"DROP TABLE IF EXISTS {table}_v")

    def _prune(self, lag_ms: float) -> None:
        now = time.monotonic()
        if now - self._pruned_at < _PRUNE_EVERY_S:
            return
        self._pruned_at = now
        horizon = time.time() * 1000.0 - lag_ms - _KEEP_S * 1000.0
        with self._transaction() as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table}_v WHERE v_to < ?", (horizon,))
