"""The mount works inside the sandbox the systemd unit sets up (its seccomp filter, address
families, W^X memory, no_new_privs, capability bounding set), applied here without systemd by
tests/harness/sandbox.py and setpriv, with the README's Pluton options:
files stored and read back, status over the control socket, the unit's ExecReload (SIGHUP),
a kill -9 cleared by the next mount, and `internxtfs umount`."""

from __future__ import annotations

import ctypes.util
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness import remote
from tests.harness.durability import flush_ok, new_user, status, wait_for, write_file
from tests.harness.mounting import MountedFS, cli, fuse_available
from tests.harness.unit_sandbox import unit_directives, wrapper


def test_mount_lives_inside_the_units_sandbox(emulator: Any, tmp_path: Path) -> None:
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    if shutil.which("systemd-analyze") is None or not ctypes.util.find_library("seccomp"):
        pytest.skip("needs systemd-analyze (syscall groups) and libseccomp")
    user = new_user(emulator)
    m = MountedFS(emulator, user, tmp_path / "m")
    m.wrapper = wrapper(tmp_path)
    m.login()
    recipe = ("-o", "allow_other,uid=65534,gid=65534,umask=077")  # the README's Pluton options
    expected = {"small.txt": b"inside the sandbox", "big.bin": os.urandom(3 * 1024 * 1024)}
    try:
        m.mount(*recipe)
        for name, data in expected.items():
            write_file(m.mountpoint / name, data)
        flush_ok(m)
        assert status(m)["uploads"]["pending_files"] == 0

        # The unit's own reload command, run in the same sandbox.
        assert m.proc is not None
        (reload,) = unit_directives()["ExecReload"]
        argv = shlex.split(reload.replace("$MAINPID", str(m.proc.pid)))
        subprocess.run([*m.wrapper, *argv], check=True, timeout=30)
        wait_for("the reload", lambda: "SIGHUP: profile 'default' re-read" in m.log())

        m.kill()  # kill -9; the next mount clears the dead mountpoint from inside the sandbox
        m.mount(*recipe)
        for name, data in expected.items():
            assert (m.mountpoint / name).read_bytes() == data
        done = cli("umount", str(m.mountpoint), env=m.env, timeout=120)
        assert done.returncode == 0, done.stderr + m.log()
        assert m.proc.wait(timeout=60) == 0, m.log()
        m.proc = None
        assert "Operation not permitted" not in m.log_file.read_text()
        assert remote.snapshot(emulator, user) == expected
    finally:
        m.unmount(timeout=60)
        subprocess.run(["fusermount3", "-uz", str(m.mountpoint)], capture_output=True)
