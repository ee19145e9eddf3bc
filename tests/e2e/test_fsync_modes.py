"""--fsync remote (default): stored remotely when fsync returns; --fsync local: durable in the
cache when fsync returns, uploaded later (and after a crash, by the next mount)."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.harness.mounting import MountedFS, cli


def _pending(m: MountedFS) -> int:
    out = cli("status", "--json", str(m.mountpoint), env=m.env)
    return int(json.loads(out.stdout)["uploads"]["pending_files"])


def _write_and_fsync(path: os.PathLike[str], data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def test_fsync_remote_means_stored(mounted_factory: Any) -> None:
    m: MountedFS = mounted_factory(None, "--upload-delay", "600")
    _write_and_fsync(m.mountpoint / "a", b"remote durable")
    assert _pending(m) == 0  # uploaded before fsync returned, despite the long delay
    m.kill()
    m.remount(cold=True)
    assert (m.mountpoint / "a").read_bytes() == b"remote durable"


def test_fsync_local_survives_a_crash(mounted_factory: Any) -> None:
    m: MountedFS = mounted_factory(None, "--upload-delay", "600", "--fsync", "local")
    _write_and_fsync(m.mountpoint / "b", b"local durable")
    assert _pending(m) == 1  # not uploaded: fsync only made it durable in the cache
    m.kill()
    m.mount()  # same cache: the journal resumes the upload
    assert cli("flush", str(m.mountpoint), env=m.env).returncode == 0
    m.remount(cold=True)
    assert (m.mountpoint / "b").read_bytes() == b"local durable"
