"""What an operator monitors tells the truth: routine token renewals are not failures, a session
only a person can renew is an error everywhere (status, STATUS=, log) with the command that fixes
it, `status --json` names the profile and cache, and SIGHUP re-reads the profile instead of
unmounting."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from internxtfs.internxt.crypto import totp_code
from tests.harness.durability import flush_ok, new_user, status, wait_for, write_file
from tests.harness.mounting import MountedFS, cli, fuse_available

TOKEN_LIFETIME = 4  # seconds: the emulator's tokens (login and refresh) run out this fast


def test_renewals_are_not_failures_and_status_names_profile_and_cache(
    new_mount: Any, emulator: Any
) -> None:
    emulator.set_faults(token_lifetime=TOKEN_LIFETIME)
    m: MountedFS = new_mount()
    for i in range(3):
        write_file(m.mountpoint / f"f{i}", os.urandom(10_000))
        flush_ok(m)
        time.sleep(TOKEN_LIFETIME + 0.5)  # idle past the token's lifetime: renewal is due
    write_file(m.mountpoint / "last", b"after the renewals")
    flush_ok(m)
    st = status(m)
    assert st["session"]["refreshes"] + st["session"]["relogins"] >= 2, st["session"]
    assert st["session"]["error"] is None
    assert st["network"]["failures"] == 0, st["network"]
    assert st["network"]["last_error"] is None, st["network"]

    assert st["profile"] == "default"
    assert st["profile_dir"] == str(m.workdir / "config" / "default")
    assert st["cache_dir"] == str(m.cache_dir)


def test_code_only_login_that_expired_is_an_error_with_its_fix(
    emulator: Any, tmp_path: Path
) -> None:
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    secret = "JBSWY3DPEHPK3PXPJBSWY3DP"
    user = new_user(emulator, totp_secret=secret)
    emulator.set_faults(token_lifetime=TOKEN_LIFETIME)
    m = MountedFS(emulator, user, tmp_path / "m")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    m.env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    try:
        (m.workdir / "password").write_text(user["password"])
        while time.time() % 30 > 25:  # far from a code's end, so the server still takes it
            time.sleep(0.5)
        done = cli("login", "--email", user["email"], "--password-file",
                   str(m.workdir / "password"), "--code", totp_code(secret, time.time()),
                   env=m.env, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        m.mount()
        time.sleep(TOKEN_LIFETIME + 0.5)  # the session runs out; no secret to log in again
        with pytest.raises(OSError):
            write_file(m.mountpoint / "new-file", b"cannot be created remotely")

        fix = "internxtfs login --profile default"
        st = status(m)
        assert st["session"]["error"] and fix in st["session"]["error"], st["session"]
        human = cli("status", str(m.mountpoint), env=m.env).stdout
        assert fix in human
        errors = [line for line in m.log_file.read_text().splitlines() if " ERROR " in line]
        assert any(fix in line for line in errors), m.log()

        def notified() -> bool:
            message = notify.recv(4096).decode()
            return "STATUS=NOT LOGGED IN" in message and fix in message

        wait_for("STATUS= naming the fix", notified, timeout=60)
    finally:
        notify.close()
        m.unmount(timeout=60)


def test_sighup_rereads_the_profile_and_keeps_serving(new_mount: Any) -> None:
    m: MountedFS = new_mount()
    write_file(m.mountpoint / "before", b"written before SIGHUP")
    assert m.proc is not None
    m.proc.send_signal(signal.SIGHUP)
    wait_for("the SIGHUP log line", lambda: "SIGHUP: profile 'default' re-read" in m.log())
    assert m.proc.poll() is None, m.log()
    write_file(m.mountpoint / "after", b"written after SIGHUP")
    flush_ok(m)
    assert sorted(os.listdir(m.mountpoint)) == ["after", "before"]
    assert m.unmount() == 0


def test_sighup_with_the_profile_gone_keeps_serving(new_mount: Any) -> None:
    m: MountedFS = new_mount()
    (m.workdir / "config" / "default" / "profile.json").unlink()
    assert m.proc is not None
    m.proc.send_signal(signal.SIGHUP)
    wait_for("the error log line", lambda: "cannot read the new login" in m.log())
    assert m.proc.poll() is None
    write_file(m.mountpoint / "still", b"served")
    assert (m.mountpoint / "still").read_bytes() == b"served"
