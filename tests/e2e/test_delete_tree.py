"""unlink does not wait for the server: the delete is journaled, the name is free at once, and
the uploader's bounded pool sends the deletes several at a time (`rm -rf` of a big tree used to
take one round trip per file). Each test checks what the server holds afterwards, read with
the protocol client or a mount on an empty cache, not through the mount that deleted.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_durability import HOLD, check_remote
from tests.harness.durability import bounded, flush_ok, status, wait_for, write_file
from tests.harness.mounting import MountedFS

NO_FAULTS: dict[str, Any] = {
    "latency_ms": 0.0,
    "fail_rate": 0.0,
    "fail_next": 0,
    "fault_method": "",
    "fault_path_regex": "",
}
FILE_DELETE = "DELETE /drive/files/{uuid}"
FAILING_DELETES: dict[str, Any] = {
    "fail_rate": 1.0,
    "fault_method": "DELETE",
    "fault_path_regex": "^/drive/files/",
}


def _make_tree(root: Path, dirs: int, files: int) -> None:
    for d in range(dirs):
        sub = root / f"d{d}"
        (sub / "deeper").mkdir(parents=True)
        for f in range(files):
            # Most files empty (no network object: quick to create), some with content.
            write_file(sub / f"f{f}.txt", b"x" * (f % 7) if f % 10 == 0 else b"")
        write_file(sub / "deeper/leaf.bin", os.urandom(1000))


def _rm_rf(path: Path) -> None:
    done = bounded(
        lambda: subprocess.run(["rm", "-rf", str(path)], capture_output=True, text=True),
        timeout=120,
        what="rm -rf",
    )
    assert done.returncode == 0, done.stderr
    assert not path.exists()


def test_rm_rf_of_a_tree_sends_its_deletes_concurrently(new_mount: Any) -> None:
    """The issue's case, smaller: rm -rf of several hundred files with 20 ms per request.
    Several file deletes are in flight at once (the emulator counts them), every folder goes
    after its files, and the server holds none of the tree afterwards."""
    m: MountedFS = new_mount()
    _make_tree(m.mountpoint / "tree", dirs=4, files=100)
    write_file(m.mountpoint / "keep.txt", b"keep")
    flush_ok(m)
    m.remount(cold=True)  # nothing of the tree cached: every entry known from listings only
    m.emulator.reset_stats()
    m.emulator.set_faults(latency_ms=20)
    try:
        _rm_rf(m.mountpoint / "tree")
        assert os.listdir(m.mountpoint) == ["keep.txt"]
        flush_ok(m)
        stats = m.emulator.stats()
    finally:
        m.emulator.set_faults(**NO_FAULTS)
    assert stats["requests"][FILE_DELETE] == 4 * 101
    assert stats["max_concurrent_by_route"][FILE_DELETE] > 1
    assert status(m)["uploads"]["pending_deletes"] == 0
    check_remote(m, {"keep.txt": b"keep"})
    m.remount(cold=True)
    assert os.listdir(m.mountpoint) == ["keep.txt"]


def test_deletes_cut_by_kill_9_are_sent_by_the_next_mount(new_mount: Any) -> None:
    """Deletes journaled by unlink but not sent (the server fails them) when the mount is
    killed: the files stay gone from the mount, and the next mount deletes them."""
    m: MountedFS = new_mount()
    _make_tree(m.mountpoint / "tree", dirs=2, files=20)
    write_file(m.mountpoint / "keep.txt", b"keep")
    flush_ok(m)
    m.emulator.set_faults(**FAILING_DELETES)
    try:
        # Files only: rmdir waits for its files' deletes, which the server refuses for now.
        for d in range(2):
            for path in (m.mountpoint / f"tree/d{d}").rglob("*"):
                if path.is_file():
                    path.unlink()
        assert sorted(os.listdir(m.mountpoint / "tree/d0")) == ["deeper"]
        assert status(m)["uploads"]["pending_deletes"] == 2 * 21
        m.kill()
    finally:
        m.emulator.set_faults(**NO_FAULTS)
    m.mount()
    # Hidden at once, before the resent deletes are done.
    assert sorted(os.listdir(m.mountpoint / "tree/d1")) == ["deeper"]
    flush_ok(m)
    check_remote(m, {"keep.txt": b"keep"})
    _rm_rf(m.mountpoint / "tree")
    m.remount(cold=True)
    assert os.listdir(m.mountpoint) == ["keep.txt"]


def test_a_file_made_under_the_name_of_a_pending_delete_is_kept(new_mount: Any) -> None:
    """unlink, then a new file under the same name, or another file renamed onto it, while
    the old entry's delete is still queued (the server refused it; it waits out a backoff):
    the create and the move meet the old entry, which is deleted first, and the new files
    are stored. The delete takes the old entry only, never the new file, also when a kill -9
    cuts it off and the next mount sends it."""
    m: MountedFS = new_mount("--upload-delay", HOLD)
    for name in ("a", "b", "c", "src"):
        write_file(m.mountpoint / f"{name}.txt", f"old {name}".encode())
    flush_ok(m)
    m.emulator.set_faults(**FAILING_DELETES)
    try:
        for name in ("a", "b", "c"):
            os.unlink(m.mountpoint / f"{name}.txt")
        write_file(m.mountpoint / "a.txt", b"new a")
        write_file(m.mountpoint / "b.txt", b"new b")
        wait_for("the deletes to fail", lambda: len(status(m)["uploads"]["errors"]) == 3)
        # Each failing delete is named by its path, as a delete.
        failing = status(m)["uploads"]["errors"].values()
        assert sorted((e["path"], e["delete"]) for e in failing) == [
            (f"{m.mountpoint}/{name}.txt", True) for name in ("a", "b", "c")
        ]
    finally:
        m.emulator.set_faults(**NO_FAULTS)
    # While the deletes wait out their backoff:
    os.rename(m.mountpoint / "src.txt", m.mountpoint / "c.txt")
    fd = os.open(m.mountpoint / "a.txt", os.O_RDONLY)
    try:
        os.fsync(fd)  # stores the new a.txt now
    finally:
        os.close(fd)
    m.kill()  # before the new b.txt is stored, maybe before the old one is deleted
    m.mount()
    flush_ok(m)
    expected = {"a.txt": b"new a", "b.txt": b"new b", "c.txt": b"old src"}
    check_remote(m, expected)
    m.remount(cold=True)
    assert {name: (m.mountpoint / name).read_bytes() for name in os.listdir(m.mountpoint)} == (
        expected
    )


@pytest.mark.skipif(
    bool(os.environ.get("INTERNXTFS_TEST_REPLICA_LAG_MS")),
    reason="runs with --replica-window 0, which an emulated replica lag would defeat",
)
def test_a_link_made_under_the_name_of_a_pending_delete_is_kept(new_mount: Any) -> None:
    """The same for symlinks, stored as NAME.rclonelink: rm of a link, then ln -s under the
    same name (and a link renamed onto another's name) while the old entries' deletes wait
    out a backoff. The delete is journaled under the entry's remote name, so the create and
    the move meet it and send it first instead of failing with EEXIST. (No replica window:
    its retries of a Conflict would otherwise hide the clash while the backoff is short.)"""
    m: MountedFS = new_mount("--replica-window", "0")
    os.symlink("old-target", m.mountpoint / "l")
    os.symlink("old-b", m.mountpoint / "b")
    os.symlink("new-b", m.mountpoint / "src")
    flush_ok(m)
    m.emulator.set_faults(**FAILING_DELETES)
    try:
        os.unlink(m.mountpoint / "l")
        os.unlink(m.mountpoint / "b")
        wait_for("the deletes to fail", lambda: len(status(m)["uploads"]["errors"]) == 2)
    finally:
        m.emulator.set_faults(**NO_FAULTS)
    os.symlink("new-target", m.mountpoint / "l")
    os.rename(m.mountpoint / "src", m.mountpoint / "b")
    flush_ok(m)
    m.remount(cold=True)
    assert sorted(os.listdir(m.mountpoint)) == ["b", "l"]
    assert os.readlink(m.mountpoint / "l") == "new-target"
    assert os.readlink(m.mountpoint / "b") == "new-b"
