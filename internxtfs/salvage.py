"""``internxtfs salvage``: get the unsent data out of a cache whose state is damaged.

When ``state.db`` is damaged (or a dirty file's cache file is missing), the mount refuses to
start rather than guess what to upload. Salvage reads whatever it still can — the journal rows
that are readable, every cache file under ``data/`` — and copies each file that may hold
unsent content into a ``lost+found`` directory, with a ``MANIFEST.txt`` saying what each one
was (name, folder uuid, size, whether it is complete). Then it moves the damaged cache aside, so
the next mount starts with an empty one. Nothing is deleted: the old cache stays next to it.

A copy is *complete* when every block of the file was in the cache. A file that was only partly
rewritten locally may lack the blocks that were never downloaded; those copies are marked
*partial* (the missing ranges read as zeros), and the remote file still has the old content.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^\w.\- ]+")


@dataclass
class SalvageReport:
    destination: Path
    moved_cache_to: Path | None
    saved: list[str] = field(default_factory=list)
    skipped_clean: int = 0
    lost: list[str] = field(default_factory=list)


def _readable_rows(db_path: Path) -> tuple[dict[int, dict[str, Any]], dict[int, set[int]]]:
    """Every row that can still be read; a damaged table just ends the reading early."""
    rows: dict[int, dict[str, Any]] = {}
    blocks: dict[int, set[int]] = {}
    if not db_path.exists():
        return rows, blocks
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        log.warning("cannot open %s at all: %s", db_path, exc)
        return rows, blocks
    db.row_factory = sqlite3.Row
    try:
        for row in db.execute("SELECT * FROM files"):
            rows[int(row["local_id"])] = dict(row)
    except sqlite3.Error as exc:
        log.warning("stopped reading file records of %s: %s", db_path, exc)
    try:
        for row in db.execute("SELECT local_id, block_no FROM blocks"):
            blocks.setdefault(int(row[0]), set()).add(int(row[1]))
    except sqlite3.Error as exc:
        log.warning("stopped reading the block map of %s: %s", db_path, exc)
    db.close()
    return rows, blocks


def _block_size(db_path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro&immutable=1", uri=True)
        row = db.execute("SELECT value FROM meta WHERE key='block_size'").fetchone()
        db.close()
        return int(row[0]) if row else 1 << 20
    except (sqlite3.Error, ValueError, TypeError):
        return 1 << 20


def salvage(cache_dir: Path, destination: Path | None = None) -> SalvageReport:
    """Raises BlockingIOError when a running mount holds the cache (see mount.lock_cache)."""
    with lock_cache(cache_dir):
        return _salvage(cache_dir, destination)


@contextlib.contextmanager
def lock_cache(cache_dir: Path) -> Iterator[None]:
    """One user of a cache directory at a time: a mount holds this lock for its lifetime."""
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(cache_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def _salvage(cache_dir: Path, destination: Path | None) -> SalvageReport:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    destination = destination or cache_dir.parent / f"lost+found-{cache_dir.name}-{stamp}"
    destination.mkdir(parents=True, exist_ok=True, mode=0o700)
    db_path = cache_dir / "state.db"
    rows, blocks = _readable_rows(db_path)
    block_size = _block_size(db_path)
    report = SalvageReport(destination, None)
    manifest = ["# local_id  state  size  folder_uuid  name  ->  salvaged copy"]
    data_dir = cache_dir / "data"
    files = sorted(
        (p for p in data_dir.iterdir() if p.name.isdigit()) if data_dir.is_dir() else [],
        key=lambda p: int(p.name),
    )
    seen: set[int] = set()
    for path in files:
        local_id = int(path.name)
        seen.add(local_id)
        row = rows.get(local_id)
        if row is not None and not row["dirty"]:
            report.skipped_clean += 1  # stored remotely already; the cache copy is redundant
            continue
        size = int(row["size"]) if row else path.stat().st_size
        name = str(row["name"]) if row else f"unknown-{local_id}"
        if row is None:
            state = "unknown"
        else:
            needed = range((size + block_size - 1) // block_size)
            have = blocks.get(local_id, set())
            state = "complete" if all(b in have for b in needed) else "partial"
        target = destination / f"{local_id}-{_UNSAFE.sub('_', name) or 'unnamed'}"
        with path.open("rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.truncate(size)
        folder = row["parent_uuid"] if row else "?"
        manifest.append(f"{local_id}  {state}  {size}  {folder}  {name}  ->  {target.name}")
        report.saved.append(target.name)
    for local_id, row in rows.items():
        if row["dirty"] and not row["deleted"] and local_id not in seen:
            manifest.append(f"{local_id}  LOST  {row['size']}  {row['parent_uuid']}  {row['name']}")
            report.lost.append(str(row["name"]))
    (destination / "MANIFEST.txt").write_text("\n".join(manifest) + "\n")
    aside = cache_dir.with_name(f"{cache_dir.name}.damaged-{stamp}")
    cache_dir.rename(aside)
    report.moved_cache_to = aside
    return report
