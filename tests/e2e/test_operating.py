"""Operating a mount as a user does: `status`, `flush` and `df` tell the truth, and stat shows
what a local disk would (issue 13, item 5)."""

from __future__ import annotations

import errno
import os
import pty
import re
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.harness.durability import MiB, new_user, status, wait_for
from tests.harness.mounting import BIN, MountedFS, cli

NO_FAULTS: dict[str, Any] = {"fail_rate": 0.0, "fault_method": "", "fault_path_regex": ""}


def test_status_into_a_closed_pipe_is_quiet(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    # `internxtfs status M | true`: the reader is gone before status writes a byte.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [str(BIN / "internxtfs"), "status", str(mnt)],
            env=mounted.env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr
    assert done.returncode == 141  # as a tool killed by SIGPIPE: the pipeline's `true` wins


def test_status_and_flush_from_a_subdirectory(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    (mnt / "d" / "e").mkdir(parents=True)
    # From inside the mount, relative or not, the mount is found.
    inside = cli("status", "--json", str(mnt / "d" / "e"), env=mounted.env, check=False)
    assert inside.returncode == 0, inside.stderr
    assert '"mountpoint"' in inside.stdout
    here = cli("status", ".", env=mounted.env, check=False, cwd=mnt / "d")
    assert here.returncode == 0, here.stderr
    assert f"internxtfs on {mnt}" in here.stdout
    (mnt / "d" / "f").write_bytes(b"x")
    flushed = cli("flush", "e", env=mounted.env, check=False, cwd=mnt / "d")
    assert flushed.returncode == 0, flushed.stderr
    assert "everything is stored" in flushed.stdout


def test_a_failing_upload_is_named_by_its_path(new_mount: Any, emulator: Any) -> None:
    user = new_user(emulator, quota=1 * MiB)
    m: MountedFS = new_mount(user=user)
    target = m.mountpoint / "photos" / "2024"
    target.mkdir(parents=True)
    (target / "big.bin").write_bytes(os.urandom(2 * MiB))  # over the quota: fails for good
    full = str(target / "big.bin")
    errors = wait_for("the upload to fail", lambda: status(m)["uploads"]["errors"])
    (err,) = errors.values()
    assert err["path"] == full
    human = cli("status", str(m.mountpoint), env=m.env).stdout
    assert f"failing upload {full}:" in human, human
    assert "#" not in human
    flushed = cli("flush", "--timeout", "20", str(m.mountpoint), env=m.env, check=False)
    assert flushed.returncode == 1
    assert f"cannot store {full}: QuotaExceeded" in flushed.stderr, flushed.stderr
    assert f"upload of {full} failed" in m.log_file.read_text()


def test_the_last_network_error_has_a_time_and_clears(mounted: MountedFS, emulator: Any) -> None:
    mnt = mounted.mountpoint
    before = time.time()
    # Every request fails until the faults are lifted: the mkdir waits, retried (or is queued
    # as offline). (Not a df: the mount reads the quota once at start, so the first df asks
    # nothing.) It may give up with EIO first: a call the kernel waits on retries within a
    # budget of seconds (internxt/retry.py, INTERACTIVE_BUDGET). With only folder creates
    # failing, the mount's check of whether a failed create landed after all succeeds, and
    # status rightly says requests succeed again (seen in CI).
    emulator.set_faults(fail_rate=1.0)
    errors: list[OSError] = []

    def mkdir() -> None:
        try:
            (mnt / "new").mkdir()
        except OSError as exc:
            errors.append(exc)

    waiting = threading.Thread(target=mkdir, daemon=True)
    waiting.start()
    try:
        # Waited for, not sampled: the first failure may not have been retried yet.
        failing = wait_for(
            "a failing network in status",
            lambda: (s := status(mounted)["network"])["failing"] and s,
        )
        assert failing["last_error"]
        assert before <= failing["last_error_at"] <= time.time()

        def failing_line() -> str | None:
            human = cli("status", str(mnt), env=mounted.env).stdout
            line = next(x for x in human.splitlines() if "last network error" in x)
            return line if "no request has succeeded since" in line else None

        line = wait_for("the failing network in the human status", failing_line)
        assert re.search(r"\d\d:\d\d:\d\d UTC \(\d+ s ago\)", line), line
    finally:
        emulator.set_faults(**NO_FAULTS)
        waiting.join(timeout=60)  # the mount is busy until that mkdir is answered
    assert not waiting.is_alive()
    assert all(e.errno == errno.EIO for e in errors), errors
    if errors:
        (mnt / "new").mkdir()  # a request that succeeds now
    assert (mnt / "new").is_dir()
    net = status(mounted)["network"]
    assert net["failing"] is False and net["last_success_at"] >= net["last_error_at"]
    human = cli("status", str(mnt), env=mounted.env).stdout
    assert "requests succeed again since" in human, human


def _progress_lines(m: MountedFS) -> tuple[int, list[str]]:
    """`internxtfs flush` with its standard error on a terminal, as a user runs it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "internxtfs"), "flush", str(m.mountpoint)],
        env=m.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=30)
    return code, [x.strip() for x in output.decode().split("\r") if x.strip()]


def test_flush_progress_moves_while_one_big_file_uploads(
    mounted_factory: Any, emulator: Any
) -> None:
    m: MountedFS = mounted_factory(None, "--upload-delay", "60")  # only flush uploads it
    (m.mountpoint / "big.bin").write_bytes(os.urandom(12 * MiB))
    emulator.set_faults(bandwidth=4 * MiB)  # about 3 s for the object
    code, lines = _progress_lines(m)
    assert code == 0, lines
    left = [
        m.group(1)
        for line in lines
        if (m := re.match(r"1 file\(s\), (\S+ \S+) left to upload", line))
    ]
    assert len(set(left)) >= 3, lines  # the bytes left go down while the file count stays


def test_df_counts_what_was_just_stored(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    first = os.statvfs(mnt)  # Internxt's usage is now cached for 30 s
    used_before = (first.f_blocks - first.f_bfree) * first.f_frsize
    (mnt / "a.bin").write_bytes(os.urandom(3 * MiB))
    unsent = os.statvfs(mnt)
    assert (unsent.f_blocks - unsent.f_bfree) * unsent.f_frsize >= used_before + 3 * MiB
    fd = os.open(mnt / "a.bin", os.O_RDONLY)
    os.fsync(fd)  # stored remotely
    os.close(fd)
    stored = os.statvfs(mnt)
    used = (stored.f_blocks - stored.f_bfree) * stored.f_frsize
    assert used_before + 3 * MiB <= used < used_before + 4 * MiB  # counted once, not twice


def test_metadata_changes_move_ctime(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    path = mnt / "f.txt"
    path.write_bytes(b"hello")
    created = os.stat(path).st_ctime_ns
    subprocess.run(["touch", "-m", "-d", "2001-02-03 04:05:06", str(path)], check=True)
    touched = os.stat(path)
    assert touched.st_mtime == time.mktime((2001, 2, 3, 4, 5, 6, 0, 0, -1))
    assert touched.st_ctime_ns > created
    os.chmod(path, 0o600)
    chmodded = os.stat(path).st_ctime_ns
    assert chmodded > touched.st_ctime_ns
    os.rename(path, mnt / "g.txt")
    assert os.stat(mnt / "g.txt").st_ctime_ns > chmodded


def test_a_sparse_file_reports_only_what_is_written(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    path = mnt / "sparse.img"
    with open(path, "wb") as fh:
        fh.truncate(64 * MiB)
        fh.write(b"head" * 1024)
        fh.seek(40 * MiB)
        fh.write(b"middle" * 1000)
    st = os.stat(path)
    assert st.st_size == 64 * MiB
    allocated = st.st_blocks * 512
    assert 8 * 1024 <= allocated <= 2 * MiB + 64 * 1024, allocated
    du = subprocess.run(["du", "-k", str(path)], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) * 1024 < 4 * MiB
    dense = mnt / "dense.bin"
    dense.write_bytes(os.urandom(3 * MiB + 5))
    assert os.stat(dense).st_blocks * 512 >= 3 * MiB + 5
    assert Path(path).read_bytes()[40 * MiB : 40 * MiB + 6] == b"middle"
