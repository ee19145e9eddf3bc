"""`internxtfs login` from scripts: each failure has its own message and exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyotp

BIN = Path(sys.executable).parent


def login(
    emulator_urls: tuple[str, str], tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, INTERNXTFS_CONFIG_DIR=str(tmp_path / "cfg"))
    drive, network = emulator_urls
    return subprocess.run(
        [str(BIN / "internxtfs"), "login", "--drive-url", drive, "--network-url", network, *args],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip


def _user(emulator: Any, tmp_path: Path, **kw: Any) -> tuple[str, Path]:
    email = f"cli-{uuid.uuid4().hex[:6]}@example.com"
    emulator.add_user(email=email, password="the-password", **kw)
    pw = tmp_path / "pw"
    pw.write_text("the-password\n")
    return email, pw


def test_each_failure_is_distinct(emulator: Any, tmp_path: Path) -> None:
    urls = (emulator.drive_url, emulator.network_url)
    email, pw = _user(emulator, tmp_path)
    bad = tmp_path / "bad"
    bad.write_text("nope")

    out = login(urls, tmp_path, "--email", email, "--password-file", str(bad))
    assert out.returncode == 3 and "wrong email or password" in out.stderr

    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw))
    assert out.returncode == 0 and "Logged in" in out.stdout, out.stderr

    emulator.update_user(email, cli_access=False)
    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw))
    assert out.returncode == 3 and "plan does not allow third-party access" in out.stderr

    email2, _ = _user(emulator, tmp_path)
    for _ in range(10):
        login(urls, tmp_path, "--email", email2, "--password-file", str(bad))
    out = login(urls, tmp_path, "--email", email2, "--password-file", str(pw))
    assert out.returncode == 3 and "blocked this account" in out.stderr


def test_two_factor_failures(emulator: Any, tmp_path: Path) -> None:
    urls = (emulator.drive_url, emulator.network_url)
    secret = pyotp.random_base32()
    email, pw = _user(emulator, tmp_path, totp_secret=secret)

    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw))
    assert out.returncode == 3 and "--code NNNNNN" in out.stderr  # not interactive: says how

    wrong = f"{(int(pyotp.TOTP(secret).now()) + 500_000) % 1_000_000:06d}"
    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw), "--code", wrong)
    assert out.returncode == 3 and "two-factor code is wrong" in out.stderr

    secret_file = tmp_path / "totp"
    secret_file.write_text(secret)
    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw),
                "--totp-secret-file", str(secret_file))  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pw = tmp_path / "pw"
    pw.write_text("x")
    urls = (f"http://127.0.0.1:{port}/drive", f"http://127.0.0.1:{port}/network")
    out = login(urls, tmp_path, "--email", "a@b.c", "--password-file", str(pw))
    assert out.returncode == 4 and "cannot reach Internxt" in out.stderr
