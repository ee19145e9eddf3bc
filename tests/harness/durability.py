"""Helpers shared by the durability tests (``tests/e2e/test_durability*.py``).

A :class:`MountedFS` that can be killed and brought back on the same cache directory, the
``status``/``flush`` control commands with bounded waits, file I/O with a timeout (a hung FUSE
call must fail the test, not hang CI), and a look into the cache's journal (orphans).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from internxtfs.fs.crashpoints import ENV as CRASH_ENV
from tests.harness.mounting import MountedFS, cli, fuse_available

T = TypeVar("T")

MiB = 1024 * 1024


def new_user(emulator: Any, **kw: Any) -> dict[str, Any]:
    return emulator.add_user(
        email=f"dur-{uuid.uuid4().hex[:8]}@example.com", password="pw-dur", **kw
    )


def _on_mount_table(mountpoint: Path) -> bool:
    with open("/proc/self/mounts") as fh:
        return any(line.split()[1] == str(mountpoint) for line in fh)


def mount_factory(emulator: Any, tmp_path: Path) -> Iterator[Callable[..., MountedFS]]:
    """The ``new_mount`` fixture (tests/e2e/conftest.py).

    ``new_mount(*mount_args, user=None, crash_at=None, name="m")``: login + mount.

    ``crash_at`` names a crash point (internxtfs/fs/crashpoints.py) for this mount only.
    Everything mounted is unmounted at the end, dead mounts included.
    """
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    mounts: list[MountedFS] = []

    def make(
        *extra: str,
        user: dict[str, Any] | None = None,
        crash_at: str | None = None,
        name: str = "m",
        login: bool = True,
    ) -> MountedFS:
        m = MountedFS(emulator, user or new_user(emulator), tmp_path / name)
        if crash_at:
            m.env[CRASH_ENV] = crash_at
        mounts.append(m)
        if login:
            done = login_profile(m)
            assert done.returncode == 0, done.stdout + done.stderr
        m.mount(*extra)
        return m

    yield make
    for m in mounts:
        m.unmount(timeout=60)
        if _on_mount_table(m.mountpoint):  # a test that failed after a kill -9
            subprocess.run(["fusermount3", "-uz", str(m.mountpoint)], check=False)


def login_profile(m: MountedFS, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """``internxtfs login`` of the mount's profile, with the stored TOTP secret when 2FA is on."""
    pw = m.workdir / "password"
    pw.write_text(password or m.user["password"])
    args = ["login", "--email", m.user["email"], "--password-file", str(pw)]
    if m.user.get("totp_secret"):
        secret = m.workdir / "totp-secret"
        secret.write_text(m.user["totp_secret"])
        args += ["--totp-secret-file", str(secret)]
    return cli(*args, env=m.env, check=False)


def remount_after_crash(m: MountedFS, *extra: str) -> None:
    """The process is dead (killed, or its crash point fired): mount again on the same cache."""
    if m.proc is not None:
        m.proc.kill()  # no-op if it already died by itself
        code = m.proc.wait(timeout=30)
        assert code == -9, f"the mount exited with {code}, not by SIGKILL:\n{m.log()}"
        m.proc = None
    m.env.pop(CRASH_ENV, None)
    m.mount(*extra, settle_replicas=False)  # the same cache: the mount allows for the lag


def wait_for_death(m: MountedFS, timeout: float = 30.0) -> None:
    """Wait until a crash point killed the mount process."""
    assert m.proc is not None
    try:
        code = m.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the crash point was never reached:\n{m.log()}") from None
    assert code == -9, f"the mount exited with {code}:\n{m.log()}"


def status(m: MountedFS, timeout: float = 20.0) -> dict[str, Any]:
    out = cli("status", "--json", str(m.mountpoint), env=m.env, timeout=timeout)
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def flush(m: MountedFS, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``internxtfs flush``; the caller checks ``returncode`` (1 = something is not stored)."""
    return cli(
        "flush", "--timeout", str(timeout), str(m.mountpoint), env=m.env, check=False,
        timeout=timeout + 30,
    )  # fmt: skip


def flush_ok(m: MountedFS, timeout: float = 60.0) -> None:
    done = flush(m, timeout)
    assert done.returncode == 0, f"flush failed: {done.stdout}{done.stderr}\n{m.log()}"


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="bounded-io")


def bounded(fn: Callable[[], T], timeout: float = 20.0, what: str = "a filesystem call") -> T:
    """Run ``fn`` (file I/O on the mount) and fail the test if it does not return in time.

    A call stuck in the kernel cannot be cancelled; its thread is left behind (the mount is
    torn down at the end of the test, which releases it).
    """
    future = _pool.submit(fn)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise AssertionError(f"{what} hung for more than {timeout} s") from None


def write_file(path: Path, data: bytes, mtime: float | None = None) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def orphans(m: MountedFS) -> list[tuple[str, str]]:
    """(network file id, reason) rows of the cache's journal (read after unmount/kill)."""
    db = sqlite3.connect(m.cache_dir / "state.db")
    try:
        return [(str(r[0]), str(r[1])) for r in db.execute("SELECT file_id, reason FROM orphans")]
    finally:
        db.close()


def journal_files(m: MountedFS) -> list[tuple[str, bool, bool]]:
    """(name, dirty, deleted) of every file record in the cache's journal."""
    db = sqlite3.connect(m.cache_dir / "state.db")
    try:
        rows = db.execute("SELECT name, dirty, deleted FROM files ORDER BY name")
        return [(str(r[0]), bool(r[1]), bool(r[2])) for r in rows]
    finally:
        db.close()


def local_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out
