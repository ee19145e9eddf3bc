"""The unit's own command lines work inside the sandbox the unit sets up: its seccomp filter
(SystemCallFilter=, SystemCallErrorNumber=), RestrictAddressFamilies=,
MemoryDenyWriteExecute=, NoNewPrivileges= and CapabilityBoundingSet=, applied here without
systemd by tests/harness/sandbox.py and setpriv. Files stored and read back, status over the
control socket, ExecReload= (SIGHUP), a kill -9 cleared by the next ExecStart=, and a stop."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness import remote
from tests.harness.durability import wait_for
from tests.harness.mounting import BIN, cli, fuse_available
from tests.harness.unit_replay import relocated
from tests.harness.unit_sandbox import wrapper


def test_unit_lives_inside_its_own_sandbox(emulator: Any, tmp_path: Path) -> None:
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    if shutil.which("systemd-analyze") is None or not ctypes.util.find_library("seccomp"):
        pytest.skip("needs systemd-analyze (syscall groups) and libseccomp")
    user = emulator.add_user(email=f"box-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    root = tmp_path / "sys"
    replay = relocated("box", root, BIN / "internxtfs", tmp_path)
    env = replay.environment()
    (root / "etc").mkdir(parents=True)
    # The README's Pluton options, with nobody for pluton.
    (root / "etc" / "box.env").write_text("OPTIONS=-o allow_other,uid=65534,gid=65534,umask=077\n")
    mountpoint = Path(env["MOUNTPOINT"])
    (tmp_path / "pw").write_text("pw")
    servers = {"INTERNXTFS_DRIVE_URL": emulator.drive_url,
               "INTERNXTFS_NETWORK_URL": emulator.network_url}  # fmt: skip
    cli("login", "--profile", "box", "--email", user["email"], "--password-file",
        str(tmp_path / "pw"), env=env | servers)  # fmt: skip
    replay.wrapper = wrapper(tmp_path)
    log = tmp_path / "service.log"
    expected = {"small.txt": b"inside the sandbox", "big.bin": os.urandom(3 * 1024 * 1024)}
    proc = replay.start(log)
    try:
        for name, data in expected.items():
            (mountpoint / name).write_bytes(data)
        done = cli("flush", str(mountpoint), env=env, check=False, timeout=120)
        assert done.returncode == 0, done.stderr + log.read_text()[-3000:]

        replay.reload(proc)
        wait_for("the reload", lambda: "SIGHUP: profile 'box' re-read" in log.read_text())
        assert proc.poll() is None

        proc.kill()  # kill -9; the next ExecStart clears the dead mountpoint, sandboxed too
        proc.wait()
        proc = replay.start(log)
        for name, data in expected.items():
            assert (mountpoint / name).read_bytes() == data
        assert replay.stop(proc) == 0, log.read_text()[-3000:]
        assert not os.path.ismount(mountpoint)
        assert "Operation not permitted" not in log.read_text()
        assert remote.snapshot(emulator, user) == expected
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
