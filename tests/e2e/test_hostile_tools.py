"""Hostile tests: real tools working through an outage, then checked on the server through a
fresh mount on an empty cache (every byte read back from the emulator)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_restic import Restic, make_tree
from tests.harness.durability import flush_ok, status
from tests.harness.mounting import MountedFS

TTL = ("--dir-cache-ttl", "1")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
}  # fmt: skip


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, **GIT_ENV},
    )  # fmt: skip
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commits_and_gc_offline_land_whole(new_mount: Any) -> None:
    """A repository committed once online; then, with the server stopped: edits, a rename, a
    delete, two commits, a branch and `git gc` (packs loose objects, deletes them, rewrites
    refs: renames over stored files, rmdir of object folders). Back online and flushed, a fresh
    mount on an empty cache shows the same history and `git fsck` passes."""
    m: MountedFS = new_mount(*TTL)
    repo = m.mountpoint / "repo"
    repo.mkdir()
    _git("init", "-q", "-b", "main", cwd=repo)
    for i in range(8):
        (repo / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", "online", cwd=repo)
    flush_ok(m)
    m.emulator.stop()
    try:
        time.sleep(1.5)
        (repo / "f0.txt").write_text("edited offline\n")
        os.rename(repo / "f1.txt", repo / "renamed.txt")
        os.unlink(repo / "f2.txt")
        (repo / "sub").mkdir()
        (repo / "sub/new.txt").write_text("new offline\n")
        _git("add", "-A", cwd=repo)
        _git("commit", "-q", "-m", "offline one", cwd=repo)
        _git("checkout", "-q", "-b", "side", cwd=repo)
        (repo / "f3.txt").write_text("on the side\n")
        _git("commit", "-q", "-am", "offline two", cwd=repo)
        _git("gc", "-q", "--prune=now", cwd=repo)
        head = _git("rev-parse", "HEAD", cwd=repo)
        log = _git("log", "--format=%H %s", "--all", cwd=repo)
        assert status(m)["uploads"]["namespace_queued"] > 0
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    m.remount(*TTL, cold=True)
    assert _git("rev-parse", "HEAD", cwd=repo) == head
    assert _git("log", "--format=%H %s", "--all", cwd=repo) == log
    _git("fsck", "--full", "--strict", cwd=repo)
    assert _git("status", "--porcelain", cwd=repo) == ""
    assert "Traceback" not in m.log_file.read_text()


def _read_tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")
def test_restic_backup_and_prune_offline_across_kill_9(new_mount: Any, tmp_path: Path) -> None:
    """A repository made online; with the server stopped: a second backup, then `forget
    --keep-last 1 --prune` (deletes packs and index files, writes new ones: late deletes and
    renames), kill -9 of the mount, mounted again still offline: the same repository, one
    snapshot. Back online and flushed: a fresh mount on an empty cache shows the same files
    (none the prune deleted) and passes `check --read-data`."""
    m: MountedFS = new_mount(*TTL)
    src = tmp_path / "src"
    make_tree(src, seed=3, files=30)
    restic = Restic(str(m.mountpoint / "repo"), tmp_path, [], {})
    restic("init", timeout=120)
    restic("backup", "--host", "e2e", ".", cwd=src, timeout=120)
    flush_ok(m, timeout=120)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for path in files[:8]:  # the prune deletes the packs only these were in
        path.unlink()
    for i, path in enumerate(files[8:14]):
        path.write_bytes(f"edited {i}\n".encode() * 1000)
    (src / "new").mkdir()
    for i in range(10):
        (src / "new" / f"added-{i}.dat").write_bytes(os.urandom(20_000 + 3000 * i))
    m.emulator.stop()
    try:
        time.sleep(1.5)
        restic("backup", "--host", "e2e", ".", cwd=src, timeout=120)
        restic("forget", "--keep-last", "1", "--prune", timeout=120)
        kept = _read_tree(m.mountpoint / "repo")
        m.kill()
        m.mount(*TTL)
        assert restic("snapshots", "--json").stdout.count('"short_id"') == 1
        assert _read_tree(m.mountpoint / "repo") == kept
    finally:
        m.emulator.start()
    flush_ok(m, timeout=180)
    m.remount(*TTL, cold=True)
    assert _read_tree(m.mountpoint / "repo") == kept
    restic("check", "--read-data", timeout=120)
    assert "Traceback" not in m.log_file.read_text()
