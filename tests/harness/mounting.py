"""A real ``internxtfs mount`` in a subprocess, logged in to an emulator account.

The mount runs the installed console script exactly as a user would: ``internxtfs login`` with a
password file, then ``internxtfs mount MOUNTPOINT -f`` in the background; unmounting is
``fusermount3 -u`` and the process must then exit by itself.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def fuse_available() -> str | None:
    """None when real mounts can run here, else the reason they cannot."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    if os.geteuid() != 0:
        return "mount tests run as root (CI does)"
    return None


def cli(
    *args: str, env: dict[str, str], check: bool = True, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "internxtfs"), *args], env=env, text=True, capture_output=True, check=check, **kw
    )


class MountedFS:
    def __init__(self, emulator: Any, user: dict[str, Any], workdir: Path) -> None:
        self.emulator = emulator
        self.user = user
        self.workdir = workdir
        self.mountpoint = workdir / "mnt"
        self.cache_dir = workdir / "cache"
        self.log_file = workdir / "mount.log"
        self.env = dict(os.environ)
        self.env["INTERNXTFS_CONFIG_DIR"] = str(workdir / "config")
        self.env["INTERNXTFS_DRIVE_URL"] = emulator.drive_url
        self.env["INTERNXTFS_NETWORK_URL"] = emulator.network_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.mountpoint.mkdir(parents=True, exist_ok=True)

    def login(self) -> None:
        pw = self.workdir / "password"
        pw.write_text(self.user["password"])
        cli("login", "--email", self.user["email"], "--password-file", str(pw), env=self.env)

    def mount(self, *extra: str, wait: float = 30.0, settle_replicas: bool = True) -> None:
        # The mount says "ready" on a pipe once it answers (as the daemon mode uses); polling
        # ismount/stat is not enough: a dead mount at the same place still answers from the
        # kernel's attribute cache for a moment.
        if settle_replicas:
            # A fresh cache knows nothing of the writes a moment ago (another mount's, or a
            # test's through the protocol client): its first listing must not be a stale one.
            self.emulator.wait_for_replicas()
        ready_r, ready_w = os.pipe()
        args = [
            str(BIN / "internxtfs"),
            # INTERNXTFS_TEST_DEBUG=1: every request and decision in mount.log, to study a failure.
            *(["--debug"] if os.environ.get("INTERNXTFS_TEST_DEBUG") else []),
            "--log-file",
            str(self.log_file),
            "mount",
            str(self.mountpoint),
            "-f",
            "--ready-fd",
            str(ready_w),
            "--cache-dir",
            str(self.cache_dir),
            "--upload-delay",
            "0.2",
            *extra,
        ]
        self.proc = subprocess.Popen(
            args, env=self.env, stdin=subprocess.DEVNULL, pass_fds=(ready_w,)
        )
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as pipe:
            ready, _, _ = select.select([pipe], [], [], wait)
            line = pipe.readline() if ready else b""
        if line.strip() != b"ready":
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            raise RuntimeError(f"mount did not come up ({self.proc.returncode}):\n{self.log()}")

    def unmount(self, timeout: float = 120.0) -> int:
        if self.proc is None:
            return 0
        subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=False)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)
        self.proc = None
        return code

    def kill(self) -> None:
        """kill -9 the mount (crash tests); the next mount clears the dead mountpoint."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def remount(self, *extra: str, cold: bool = False) -> None:
        """Unmount, and mount again at once: on the same cache, the mount itself must allow
        for the replicas' lag behind the run that just ended (internxtfs/last_writes.py); a
        fresh cache (``cold``) knows nothing of it, so the replicas are let catch up first."""
        self.unmount()
        if cold:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.mount(*extra, settle_replicas=cold)

    def log(self) -> str:
        try:
            return self.log_file.read_text()[-5000:]
        except OSError:
            return "(no log)"
