"""Persistent state of the emulator: one SQLite database plus object files, both in the data dir.

The server process and ``add-user`` may open the same directory at the same time, so the database
runs in WAL mode with a busy timeout, and every write happens in a ``BEGIN IMMEDIATE`` transaction
(a deferred transaction that later upgrades to a writer can fail at once with SQLITE_BUSY in WAL
mode instead of waiting). Inside the server all database work happens on the event-loop thread
between two awaits, so one connection is enough and each request's reads+writes are atomic.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DB_NAME = "emulator.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    lastname TEXT NOT NULL,
    salt TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    mnemonic_enc TEXT NOT NULL,
    totp_secret TEXT,
    bridge_user TEXT NOT NULL UNIQUE,
    user_id_str TEXT NOT NULL,
    bucket TEXT NOT NULL UNIQUE,
    root_folder_id INTEGER,
    root_folder_uuid TEXT,
    quota INTEGER NOT NULL,
    max_file_size INTEGER,
    empty_file_cap INTEGER,
    platforms TEXT NOT NULL DEFAULT 'cli,rclone',
    failed_logins INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    parent_id INTEGER,
    parent_uuid TEXT,
    plain_name TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    deleted_at TEXT,
    removed_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    modification_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS folders_parent ON folders (parent_uuid, plain_name);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    folder_id INTEGER NOT NULL,
    folder_uuid TEXT NOT NULL,
    plain_name TEXT NOT NULL,
    type TEXT,
    size INTEGER NOT NULL,
    file_id TEXT,
    bucket TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'EXISTS',
    deleted_at TEXT,
    removed_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    modification_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_folder ON files (folder_uuid, status, plain_name);
CREATE TABLE IF NOT EXISTS uploads (
    uuid TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    bucket TEXT NOT NULL,
    size INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    upload_id TEXT,
    state TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS upload_parts (
    upload_uuid TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (upload_uuid, part_number)
);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    bucket TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    idx TEXT NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    hmac TEXT,
    mimetype TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blacklist (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL);
"""

Row = dict[str, Any]


class Store:
    """SQLite metadata plus the directories holding object bytes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.objects_dir = data_dir / "objects"
        self.uploads_dir = data_dir / "uploads"
        for path in (data_dir, self.objects_dir, self.uploads_dir):
            path.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (see ``transaction``).
        self.conn = sqlite3.connect(
            data_dir / DB_NAME, isolation_level=None, timeout=30, check_same_thread=False
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # Idempotent DDL; executescript manages its own transaction.
        self.conn.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Columns added after a data dir may have been created (SQLite has no ADD COLUMN IF
        NOT EXISTS)."""
        columns = {row["name"] for row in self.conn.execute("PRAGMA table_info(entries)")}
        if "version" not in columns:
            # 2 for everything uploaded here; 1 marks a legacy (v1, multi-shard) object, which
            # the bridge describes without download links (see network_routes.file_info).
            self.conn.execute("ALTER TABLE entries ADD COLUMN version INTEGER NOT NULL DEFAULT 2")
        columns = {row["name"] for row in self.conn.execute("PRAGMA table_info(users)")}
        if "backup_usage" not in columns:
            # Bytes the account uses outside Drive (backups, mail): counted in the usage
            # ``total`` and against the quota, never listed in Drive.
            self.conn.execute(
                "ALTER TABLE users ADD COLUMN backup_usage INTEGER NOT NULL DEFAULT 0"
            )

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- small generic helpers ---------------------------------------------------------------

    def one(self, sql: str, *args: Any) -> Row | None:
        row = self.conn.execute(sql, args).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, *args: Any) -> list[Row]:
        return [dict(row) for row in self.conn.execute(sql, args).fetchall()]

    def scalar(self, sql: str, *args: Any) -> Any:
        row = self.conn.execute(sql, args).fetchone()
        return row[0] if row is not None else None

    def meta_secret(self, key: str) -> str:
        """A random secret created once per data dir, so tokens and URLs survive a restart."""
        value = self.scalar("SELECT value FROM meta WHERE key = ?", key)
        if value is None:
            with self.transaction() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    (key, secrets.token_hex(32)),
                )
            value = self.scalar("SELECT value FROM meta WHERE key = ?", key)
        return str(value)

    # --- lookups used by several route modules -----------------------------------------------

    def user_by_email(self, email: str) -> Row | None:
        return self.one("SELECT * FROM users WHERE email = ?", email.lower())

    def user_by_uuid(self, uuid: str) -> Row | None:
        return self.one("SELECT * FROM users WHERE uuid = ?", uuid)

    def drive_usage(self, user_id: int) -> int:
        """Bytes counted against the quota: existing and trashed files (trash is not free)."""
        total = self.scalar(
            "SELECT COALESCE(SUM(size), 0) FROM files "
            "WHERE user_id = ? AND status IN ('EXISTS', 'TRASHED')",
            user_id,
        )
        return int(total)

    def network_usage(self, user_id: int) -> int:
        """Bytes of the user's network objects, referenced by a drive entry or not."""
        total = self.scalar("SELECT COALESCE(SUM(size), 0) FROM entries WHERE user_id = ?", user_id)
        return int(total)

    def folder(self, user_id: int, uuid: str) -> Row | None:
        return self.one("SELECT * FROM folders WHERE uuid = ? AND user_id = ?", uuid, user_id)

    def file(self, user_id: int, uuid: str) -> Row | None:
        return self.one("SELECT * FROM files WHERE uuid = ? AND user_id = ?", uuid, user_id)

    def object_path(self, entry_id: str) -> Path:
        return self.objects_dir / entry_id

    def object_pieces(self, entry_id: str) -> list[Path] | None:
        """The files that hold an object's bytes, in order: the object itself, or for one
        uploaded in parts, its parts as they came (network_routes._adopt). None: no object."""
        path = self.object_path(entry_id)
        if path.is_dir():
            return sorted(path.iterdir())
        return [path] if path.exists() else None

    def upload_dir(self, upload_uuid: str) -> Path:
        return self.uploads_dir / upload_uuid

    def delete_entry(self, entry_id: str | None) -> None:
        """Drop a network object (row and bytes); callers hold a transaction."""
        if not entry_id:
            return
        self.conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
        path = self.object_path(entry_id)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
