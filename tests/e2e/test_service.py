"""Mounting as a service would: the mount(8) helper, daemon mode, ownership for another user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.mounting import BIN, MountedFS, cli, fuse_available


def test_mount_helper_daemon_with_allow_other_uid_gid(emulator: Any, tmp_path: Path) -> None:
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    user = emulator.add_user(email=f"svc-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    m = MountedFS(emulator, user, tmp_path / "m")
    m.login()
    # A mountpoint another user can reach (pytest's tmp dirs are root-only).
    shared = Path(tempfile.mkdtemp(prefix="ixfs-svc-"))
    os.chmod(shared, 0o755)
    mnt = shared / "mnt"
    mnt.mkdir()
    try:
        helper = subprocess.run(
            [
                str(BIN / "mount.internxtfs"),
                "default",
                str(mnt),
                "-o",
                f"rw,_netdev,allow_other,uid=65534,gid=65534,umask=027,cache_dir={m.cache_dir}",
            ],
            env=m.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert helper.returncode == 0, helper.stderr
        assert os.path.ismount(mnt)  # daemon mode: returned only once the mount answers
        (mnt / "made-by-root.txt").write_text("shared")
        st = os.stat(mnt / "made-by-root.txt")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o640)
        if shutil.which("setpriv"):
            as_nobody = subprocess.run(
                [
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "cat",
                    str(mnt / "made-by-root.txt"),
                ],
                capture_output=True,
                text=True,
            )
            assert as_nobody.stdout == "shared", as_nobody.stderr
        done = cli("umount", str(mnt), env=m.env)
        assert done.returncode == 0, done.stderr
        assert not os.path.ismount(mnt)
    finally:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)


def test_dead_mount_is_cleared_by_the_next_mount(mounted: MountedFS) -> None:
    (mounted.mountpoint / "kept").write_bytes(b"data")
    fd = os.open(mounted.mountpoint / "kept", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    mounted.kill()  # kill -9: "Transport endpoint is not connected" from now on
    with pytest.raises(OSError):
        os.listdir(mounted.mountpoint)
    mounted.mount()
    assert (mounted.mountpoint / "kept").read_bytes() == b"data"
