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


def _tree_files(root: Path, files: dict[str, bytes]) -> None:
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)


def _read_tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_rsync_delete_over_a_stored_tree_offline_then_kill_9(new_mount: Any) -> None:
    """A stored tree is brought up to date by `rsync -a --delete` while the server is down:
    changed files replaced by rsync's temp-file-then-rename (renames over stored files),
    folders deleted and made, a folder replaced by a file of the same name. kill -9, mounted
    again offline, then the server is back: the server holds exactly the source tree."""
    m: MountedFS = new_mount(*TTL)
    old = {f"keep/k{i}.txt": f"kept {i}\n".encode() for i in range(4)}
    old |= {f"gone/g{i}.txt": b"deleted by rsync\n" for i in range(3)}
    old |= {f"change/c{i}.txt": b"old version\n" for i in range(4)}
    old |= {"becomes-file/inner.txt": b"a folder that becomes a file\n"}
    _tree_files(m.mountpoint / "dst", old)
    flush_ok(m)
    src = m.workdir / "src"
    new = {p: c for p, c in old.items() if p.startswith("keep/")}
    new |= {f"change/c{i}.txt": f"new version {i}, longer\n".encode() for i in range(4)}
    new |= {f"made/m{i}.txt": b"new folder\n" for i in range(3)}
    new |= {"becomes-file": b"now a file\n"}
    _tree_files(src, new)
    for path in old:
        if path.startswith("keep/"):  # same size and mtime: rsync leaves them alone
            mtime = (m.mountpoint / "dst" / path).stat().st_mtime
            os.utime(src / path, (mtime, mtime))
    m.emulator.stop()
    try:
        time.sleep(1.5)
        done = subprocess.run(
            ["rsync", "-a", "--delete", f"{src}/", f"{m.mountpoint}/dst/"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert _read_tree(m.mountpoint / "dst") == new
        m.kill()
        m.mount(*TTL)
        assert _read_tree(m.mountpoint / "dst") == new
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    m.remount(*TTL, cold=True)
    assert _read_tree(m.mountpoint / "dst") == new
    assert sorted(os.listdir(m.mountpoint / "dst")) == ["becomes-file", "change", "keep", "made"]
    assert "Traceback" not in m.log_file.read_text()
