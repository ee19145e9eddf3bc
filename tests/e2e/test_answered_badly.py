"""A server that answers, but badly: a mkdir whose 5 s of retries meet only 5xx, 429 and lost
answers is queued as in an outage and succeeds (docs/semantics.md, "A server that answers, but
badly"). What a user then does must come out whole: a tree copied with `cp -r`, and the mount
stopped at once in each way it can be, with the server answering well again: the queued
folder and the file made in it are stored before the process exits. (From hostile7's pass.)"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import remote
from tests.harness.durability import bounded, flush, flush_ok, local_tree, status
from tests.harness.mounting import MountedFS, cli

FOLDER_CREATES = {"fault_path_regex": "^/drive/folders$", "fault_method": "POST"}


def _clear(emulator: Any) -> None:
    emulator.set_faults(
        fail_rate=0, throttle_rate=0, lose_answer_rate=0, fault_path_regex=None,
        fault_method=None, replica_lag_ms=0,
    )  # fmt: skip


def _folders_of(files: dict[str, bytes]) -> list[str]:
    return sorted({str(p) for f in files for p in Path(f).parents if str(p) != "."})


def _stored_and_shown(m: MountedFS, files: dict[str, bytes], folders: list[str]) -> None:
    """The server holds exactly this, and a mount on a fresh cache shows it."""
    assert remote.snapshot(m.emulator, m.user) == files
    assert remote.folders(m.emulator, m.user) == folders
    m.remount(cold=True)
    assert local_tree(m.mountpoint) == files
    assert "Traceback" not in m.log_file.read_text()


def test_cp_r_while_folder_creates_are_answered_badly(new_mount: Any, tmp_path: Path) -> None:
    m: MountedFS = new_mount()
    rng = random.Random(1)
    files: dict[str, bytes] = {}
    for i in range(60):
        parts = [f"d{rng.randint(0, 3)}" for _ in range(rng.randint(1, 3))]
        path = "src/" + "/".join(parts) + f"/f{i}.bin"
        files[path] = rng.randbytes(rng.randint(0, 4096))
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(files[path])
    m.emulator.set_faults(
        fail_rate=0.5, throttle_rate=0.2, lose_answer_rate=0.3, replica_lag_ms=1500, seed=7,
        **FOLDER_CREATES,
    )  # fmt: skip
    try:
        subprocess.run(["cp", "-r", str(tmp_path / "src"), str(m.mountpoint)], check=True)
        assert local_tree(m.mountpoint) == files
    finally:
        _clear(m.emulator)
    for _ in range(3):
        if flush(m, timeout=90).returncode == 0:
            break
    flush_ok(m, timeout=90)
    _stored_and_shown(m, files, _folders_of(files))


@pytest.mark.parametrize("stop", ["fusermount3 -u", "SIGTERM", "internxtfs umount"])
def test_a_stop_right_after_a_queued_mkdir_stores_it(new_mount: Any, stop: str) -> None:
    """Every folder create answered 5xx: `mkdir q` is queued after its 5 s and a file is
    written in it; then the server answers well and the mount is stopped at once. The stop
    must send the queued mkdir, then the file (the flush before exit waited for the files
    only, and took the one waiting for the queue for idle: both were left for a next mount)."""
    m: MountedFS = new_mount()
    mnt = m.mountpoint
    m.emulator.set_faults(fail_rate=1.0, **FOLDER_CREATES)
    try:
        started = time.monotonic()
        bounded(lambda: (mnt / "q").mkdir(), 30, "mkdir q")
        assert time.monotonic() - started < 10
        (mnt / "q/f.txt").write_bytes(b"queued")
        assert status(m)["uploads"]["namespace_queued"] == 1
    finally:
        _clear(m.emulator)
    assert m.proc is not None
    if stop == "fusermount3 -u":
        assert m.unmount() == 0
    elif stop == "SIGTERM":
        m.proc.terminate()
        assert m.proc.wait(timeout=120) == 0
        m.proc = None
    else:
        done = cli("umount", str(mnt), env=m.env, check=False, timeout=120)
        assert done.returncode == 0, done.stderr
        assert m.proc.wait(timeout=60) == 0
        m.proc = None
    assert not os.path.ismount(mnt)
    assert remote.snapshot(m.emulator, m.user) == {"q/f.txt": b"queued"}, m.log()
    m.mount()
    _stored_and_shown(m, {"q/f.txt": b"queued"}, ["q"])


def test_unlink_of_a_file_whose_publish_an_outage_cut_off_returns_at_once(
    new_mount: Any,
) -> None:
    """The file's entry create is answered 5xx, so its publish retries under the file's
    lock; then Internxt goes away. The unlink of that file waits for the lock: the publish
    must give up once the outage is known, not run its whole retry schedule (an unlink held
    for over 30 s in a soak test). Once Internxt is back, nothing of the file is stored."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    (mnt / "keep.txt").write_bytes(b"kept")
    flush_ok(m)
    m.emulator.set_faults(fail_rate=1.0, fault_path_regex="^/drive/files$", fault_method="POST")
    try:
        (mnt / "a.txt").write_bytes(b"never stored")
        time.sleep(1.5)  # its upload is done, and its entry's create is being retried
        m.emulator.stop()
        # The mount learns of the outage from a call of its own (a listing past its TTL).
        bounded(lambda: os.listdir(mnt), 15, "ls")
        started = time.monotonic()
        bounded(lambda: os.unlink(mnt / "a.txt"), 60, "unlink")
        took = time.monotonic() - started
    finally:
        if not m.emulator.running:
            m.emulator.start()
        _clear(m.emulator)
    assert took < 10, f"unlink took {took:.1f} s"
    flush_ok(m, timeout=120)
    _stored_and_shown(m, {"keep.txt": b"kept"}, [])
