"""Offline-first (issue 9): with Internxt unreachable, the mount answers from what it has seen.

The emulator process is stopped (connections refused) and started again on the same data dir and
port. Every call on the mount during the outage runs under ``bounded``: one that takes longer
than the issue's 10 s fails the test instead of hanging it. What ends up stored is read with the
protocol client, not through the mount (``tests/harness/remote.py``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import remote
from tests.harness.durability import bounded, flush_ok, status, wait_for, write_file
from tests.harness.mounting import MountedFS, cli

CALL_BOUND = 10.0  # the issue: with the server down, no call takes longer than this


def _call(fn: Any, what: str) -> Any:
    return bounded(fn, CALL_BOUND, what)


def test_outage_past_the_ttl_stale_listings_and_cp_into_the_root(new_mount: Any) -> None:
    """The issue's first reproduction: the server is stopped past --dir-cache-ttl, then ten new
    files are copied into the mount root. Listings and stats answer from the last listing, the
    copies land in the cache and are stored once the server is back; reading content never
    cached fails promptly with EIO; going offline and coming back log one line each."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    (mnt / "dir").mkdir()
    write_file(mnt / "dir/kept.txt", b"cached content")
    write_file(mnt / "old.txt", b"stored before the outage")
    flush_ok(m)
    # A file this mount lists but never reads: written through a second mount of the account.
    other: MountedFS = new_mount(user=m.user, name="other")
    write_file(other.mountpoint / "remote-only.bin", b"never read here" * 1000)
    flush_ok(other)
    other.unmount()
    wait_for("the other mount's file", lambda: "remote-only.bin" in os.listdir(mnt), 30)
    quota = os.statvfs(mnt).f_blocks
    sources = m.workdir / "src"
    sources.mkdir()
    for i in range(10):
        (sources / f"new{i}.txt").write_bytes(f"written offline {i}\n".encode() * 100)

    m.emulator.stop()
    try:
        time.sleep(1.5)  # past --dir-cache-ttl and the kernel's entry/attr timeouts
        # Stats and listings answer from the last listing.
        assert sorted(_call(lambda: os.listdir(mnt), "ls of the root")) == [
            "dir", "old.txt", "remote-only.bin",
        ]  # fmt: skip
        assert _call(lambda: os.stat(mnt / "old.txt"), "stat").st_size == 24
        assert _call(lambda: os.listdir(mnt / "dir"), "ls of a folder") == ["kept.txt"]
        assert _call(lambda: (mnt / "dir/kept.txt").read_bytes(), "cached read") == (
            b"cached content"
        )
        # cp of ten new files into the root: every one succeeds (lookup of the new name,
        # create, write, close), into the cache and the journal.
        for i in range(10):
            _call(lambda i=i: shutil.copy(sources / f"new{i}.txt", mnt), f"cp new{i}.txt")
        assert len(_call(lambda: os.listdir(mnt), "ls after cp")) == 13
        # Content never cached: EIO, promptly, and the log says why.
        with pytest.raises(OSError) as failed:
            _call(lambda: (mnt / "remote-only.bin").read_bytes(), "uncached read")
        assert failed.value.errno == errno.EIO
        assert "not in the cache and Internxt is unreachable" in m.log_file.read_text()
        # df answers the last known quota.
        assert _call(lambda: os.statvfs(mnt), "df").f_blocks == quota

        # Every other call answers within the bound too, success or error.
        def fsync_new() -> None:
            with open(mnt / "new0.txt", "rb") as fh:
                os.fsync(fh.fileno())

        # fsync (--fsync remote) keeps the data durable in the cache and returns
        # (--fsync-offline local, the default): restic fsyncs every pack it writes.
        _call(fsync_new, "fsync")
        for what, call in [
            ("mkdir", lambda: (mnt / "made-offline").mkdir()),
            ("mv", lambda: os.rename(mnt / "old.txt", mnt / "moved.txt")),
            ("rmdir", lambda: (mnt / "dir").rmdir()),
            ("ln -s", lambda: os.symlink("target", mnt / "link")),
            ("touch", lambda: os.utime(mnt / "dir/kept.txt", (1e9, 1e9))),
            ("chmod", lambda: os.chmod(mnt / "dir/kept.txt", 0o600)),
            ("rm", lambda: os.unlink(mnt / "remote-only.bin")),
        ]:
            with contextlib.suppress(OSError):
                _call(call, what)
        # Still answering a moment later, at once (the outage is known).
        time.sleep(1.5)
        assert _call(lambda: os.stat(mnt / "dir/kept.txt"), "stat later").st_size == 14
        assert "new0.txt" in _call(lambda: os.listdir(mnt), "ls later")
        st = _call(lambda: status(m), "status")
        assert st["network"]["offline_since"] is not None
        assert "ConnectError" in st["network"]["offline_error"]
        human = _call(lambda: cli("status", str(mnt), env=m.env).stdout, "status")
        assert "OFFLINE since" in human.splitlines()[1], human
        # The ten copies, the touch, and the link (kept to store later, as a new file).
        assert "pending uploads: 12 file(s)" in human, human
    finally:
        m.emulator.start()  # same data dir and port

    flush_ok(m)
    stored = remote.snapshot(m.emulator, m.user)
    for i in range(10):
        assert stored[f"new{i}.txt"] == (sources / f"new{i}.txt").read_bytes()
    # Back to fresh listings by itself: a file created elsewhere after the outage shows.
    other.mount()
    write_file(other.mountpoint / "after.txt", b"after the outage")
    flush_ok(other)
    wait_for("a fresh listing", lambda: "after.txt" in os.listdir(mnt), 30)
    wait_for("the end of the outage", lambda: status(m)["network"]["offline_since"] is None)
    log_text = m.log_file.read_text()
    assert log_text.count("Internxt cannot be reached (") == 1, log_text[-3000:]
    assert log_text.count("Internxt answers again") == 1, log_text[-3000:]
    assert "Traceback" not in log_text


def _paths(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_mount_with_the_server_down_serves_the_last_known_tree(new_mount: Any) -> None:
    """Warm start: unmounted, then mounted again while the server is down. The mount comes up,
    shows the last known tree at once with the same inode numbers, reads what is cached, df
    shows the last known quota, and a file written then (and a kill -9, and another mount
    still offline) is stored once the server is back."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    (mnt / "d/sub").mkdir(parents=True)
    files = {"top.txt": b"top", "d/a.txt": b"a" * 5000, "d/sub/b.txt": b"b" * 70_000}
    for path, content in files.items():
        write_file(mnt / path, content)
    flush_ok(m)
    tree = _paths(mnt)
    inos = {path: os.stat(mnt / path).st_ino for path in tree}
    quota = os.statvfs(mnt).f_blocks
    m.unmount()

    m.emulator.stop()
    try:
        m.mount("--dir-cache-ttl", "1")  # a working mount, not a failed start
        assert _call(lambda: _paths(mnt), "ls -R") == tree
        assert {path: os.stat(mnt / path).st_ino for path in tree} == inos
        for path, content in files.items():
            assert _call(lambda p=path: (mnt / p).read_bytes(), f"read {path}") == content
        assert _call(lambda: os.statvfs(mnt), "df").f_blocks == quota
        _call(lambda: write_file(mnt / "d/offline.txt", b"written while down"), "write")
        time.sleep(1.5)  # past the listing TTL and the save of the metadata cache
        m.kill()
        m.mount("--dir-cache-ttl", "1")  # still down, after a crash
        assert _call(lambda: _paths(mnt), "ls -R again") == sorted([*tree, "d/offline.txt"])
        assert _call(lambda: (mnt / "d/offline.txt").read_bytes(), "read") == (
            b"written while down"
        )
    finally:
        m.emulator.start()
    flush_ok(m)
    stored = remote.snapshot(m.emulator, m.user)
    assert stored == files | {"d/offline.txt": b"written while down"}
    assert "Traceback" not in m.log_file.read_text()


def _git(repo: Path, *args: str) -> str:
    # The repository's own files (.git) live on local disk: every download is then a read of
    # a tracked file's content.
    env = {
        **os.environ,
        "GIT_DIR": str(repo.parent.parent / "git-dir"),
        "GIT_WORK_TREE": str(repo),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo.parent.parent),
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _downloads(emulator: Any) -> int:
    requests = emulator.stats()["requests"]
    return sum(n for route, n in requests.items() if route.startswith("GET") and "object" in route)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_status_after_a_remount_reads_no_content(new_mount: Any) -> None:
    """Inode numbers and times stay the same across a remount on the same cache, so the first
    `git status` after it finds every file unchanged from its stat data alone: no download.
    The cache is smaller than the work tree, so most content is not cached any more and a
    read would show as a download."""
    m: MountedFS = new_mount("--cache-size", "1M")
    repo = m.mountpoint / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for i in range(40):
        write_file(repo / f"f{i:02}.txt", os.urandom(100_000))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    # Git (without USE_NSEC) takes a file modified in the second its index was written for
    # "racily clean" and reads its content; a status a second later rewrites the index.
    time.sleep(1.1)
    assert _git(repo, "status", "--porcelain") == ""
    flush_ok(m)
    m.unmount()
    m.mount("--cache-size", "1M")
    m.emulator.reset_stats()
    assert _git(repo, "status", "--porcelain") == ""
    assert _downloads(m.emulator) == 0, m.emulator.stats()["requests"]
