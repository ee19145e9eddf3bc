"""Through a real mount, against an emulator that reproduces the real Internxt's quirks
(issue 8): what the user writes is what the server keeps, under the user's name."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from internxtfs.emulator.store import Store
from tests.harness import remote
from tests.harness.mounting import MountedFS, cli

MiB = 1024 * 1024


def test_emptied_file_then_rewritten_keeps_its_name(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    """Internxt cannot replace a file's content with empty content (it keeps the old fileId
    and deletes the object). Emptying a file and writing it again must leave one entry, under
    its name, with the last content: no dangling fileId, no conflict copy."""
    m: MountedFS = mounted_factory(fs_user)
    path = m.mountpoint / "notes.txt"
    for content in (b"first version", b"", b"third version"):
        path.write_bytes(content)
        assert cli("flush", str(m.mountpoint), env=m.env).returncode == 0
        stored = remote.entries(m.emulator, fs_user)
        assert [(f.path, f.data) for f in stored] == [("notes.txt", content)]
        if not content:
            assert stored[0].file_id is None  # not the deleted object's id
    assert "conflict" not in m.log()
    m.remount(cold=True)
    assert path.read_bytes() == b"third version"


def test_df_counts_what_backups_use_of_the_quota(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    """Internxt measures the quota against the usage ``total`` (drive + backups + ...): the
    free space df shows must leave out what backups take."""
    quota = fs_user["quota"]
    m: MountedFS = mounted_factory(fs_user)
    m.unmount()
    m.emulator.update_user(fs_user["email"], backup_usage=quota // 2)
    m.mount()
    st = os.statvfs(m.mountpoint)
    assert st.f_blocks * st.f_frsize <= quota
    assert st.f_bavail * st.f_frsize <= quota - quota // 2


def _status(m: MountedFS) -> dict[str, Any]:
    return json.loads(cli("status", "--json", str(m.mountpoint), env=m.env).stdout)


def _wait_for(m: MountedFS, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while not ready(status := _status(m)):
        time.sleep(0.1)
    return status


def test_write_past_the_plans_file_size_limit_is_efbig(
    mounted_factory: Any, emulator: Any, fs_user: dict[str, Any]
) -> None:
    emulator.update_user(fs_user["email"], max_file_size=MiB)
    m: MountedFS = mounted_factory(fs_user)
    _wait_for(m, lambda st: st["uploads"]["size_cap"] == MiB)
    (m.mountpoint / "fits.bin").write_bytes(b"x" * MiB)
    with pytest.raises(OSError) as info:
        (m.mountpoint / "too-big.bin").write_bytes(b"y" * (MiB + 1))
    assert info.value.errno == errno.EFBIG
    with pytest.raises(OSError) as info:
        os.truncate(m.mountpoint / "fits.bin", 2 * MiB)
    assert info.value.errno == errno.EFBIG
    assert cli("flush", str(m.mountpoint), env=m.env).returncode == 0
    stored = {f.path: f.size for f in remote.entries(emulator, fs_user, download=False)}
    assert stored["fits.bin"] == MiB
    # The kernel splits the write: the pieces within the limit landed, as on a disk that
    # filled up; nothing past it exists anywhere.
    assert stored.get("too-big.bin", 0) <= MiB
    assert (m.mountpoint / "too-big.bin").stat().st_size <= MiB
    assert (
        "largest file your plan allows: 1.0 MiB"
        in cli("status", str(m.mountpoint), env=m.env).stdout
    )


def test_file_over_a_lowered_limit_is_not_uploaded_in_vain(new_mount: Any, emulator: Any) -> None:
    """A file written while the plan allowed it, still unsent when the limit drops: nothing
    is uploaded (the drive would refuse the entry after the bridge stored and counted the
    object), and status says why."""
    m: MountedFS = new_mount("--upload-delay", "600")
    (m.mountpoint / "big.bin").write_bytes(b"z" * (2 * MiB))
    m.kill()
    emulator.update_user(m.user["email"], max_file_size=MiB)
    emulator.reset_stats()
    m.mount()
    status = _wait_for(m, lambda st: bool(st["uploads"]["errors"]))
    (failure,) = status["uploads"]["errors"].values()
    assert failure["too_large"], failure
    assert not [r for r in emulator.stats()["requests"] if "files/start" in r]
    assert emulator.user_info(m.user["email"])["networkUsage"] == 0
    assert (m.mountpoint / "big.bin").read_bytes() == b"z" * (2 * MiB)  # kept locally


def test_legacy_v1_file_reads_as_eio_with_a_log_line_naming_it(
    mounted_factory: Any, emulator: Any, fs_user: dict[str, Any]
) -> None:
    """Objects stored in the network's version 1 format have no download links: reading one
    is EIO, and the log names the file and says how to get it (Internxt's web app)."""
    m: MountedFS = mounted_factory(fs_user)
    (m.mountpoint / "old scan.pdf").write_bytes(b"legacy content")
    assert cli("flush", str(m.mountpoint), env=m.env).returncode == 0
    (stored,) = remote.entries(emulator, fs_user, download=False)
    store = Store(emulator.data_dir)
    try:
        with store.transaction() as conn:
            conn.execute("UPDATE entries SET version = 1 WHERE id = ?", (stored.file_id,))
    finally:
        store.close()
    m.remount(cold=True)
    with pytest.raises(OSError) as info:
        (m.mountpoint / "old scan.pdf").read_bytes()
    assert info.value.errno == errno.EIO
    log = m.log()
    assert "'old scan.pdf' is stored in Internxt's legacy (version 1) format" in log
    assert "web app" in log
    assert os.listdir(m.mountpoint) == ["old scan.pdf"]  # still listed, with its size
    assert (m.mountpoint / "old scan.pdf").stat().st_size == len(b"legacy content")
