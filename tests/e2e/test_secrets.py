"""Secrets stay sealed: nothing the login or the mount writes holds them in clear."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pyotp
import pytest

from internxtfs.internxt import crypto
from tests.harness.mounting import MountedFS, cli, fuse_available


def files_under(*roots: Path) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(p for p in root.rglob("*") if p.is_file() and not p.is_socket())
    return found


def test_nothing_written_holds_a_secret(emulator: Any, tmp_path: Path) -> None:
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    mnemonic = crypto.generate_mnemonic()
    totp = pyotp.random_base32()
    user = emulator.add_user(
        email=f"s-{uuid.uuid4().hex[:6]}@example.com",
        password="Sup3r-secret-pw!",
        mnemonic=mnemonic,
        totp_secret=totp,
    )
    m = MountedFS(emulator, user, tmp_path / "m")
    (m.workdir / "totp").write_text(totp)
    (m.workdir / "password").write_text(user["password"])
    cli(
        "login",
        "--email",
        user["email"],
        "--password-file",
        str(m.workdir / "password"),
        "--totp-secret-file",
        str(m.workdir / "totp"),
        env=m.env,
    )
    (m.workdir / "password").unlink()
    (m.workdir / "totp").unlink()
    profile_dir = Path(m.env["INTERNXTFS_CONFIG_DIR"]) / "default"
    profile_file = profile_dir / "profile.json"
    assert stat.S_IMODE(profile_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(profile_dir.stat().st_mode) == 0o700
    token_holder = json.loads(profile_file.read_text())
    assert set(token_holder) >= {"secrets", "email", "key_source"}

    m.mount()
    try:
        (m.mountpoint / "doc.txt").write_text("hello")
        os.sync()
        assert m.proc is not None
        pid = m.proc.pid
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        status = cli("status", "--json", str(m.mountpoint), env=m.env).stdout
    finally:
        m.unmount()

    secrets = {
        "password": user["password"],
        "mnemonic": mnemonic,
        "mnemonic word run": " ".join(mnemonic.split()[:3]),
        "totp secret": totp,
    }
    texts = {"argv": argv, "environ": environ, "status": status}
    for path in files_under(Path(m.env["INTERNXTFS_CONFIG_DIR"]), m.cache_dir, m.log_file):
        texts[str(path)] = path.read_bytes().decode(errors="replace")
    assert len(texts) > 5  # the profile, key, journal, cache data and log were all read
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} found in {where}"


def test_wrong_key_file_is_a_clear_error(emulator: Any, tmp_path: Path) -> None:
    user = emulator.add_user(email=f"k-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    m = MountedFS(emulator, user, tmp_path / "m")
    key = tmp_path / "key"
    key.write_text("a good long random key")
    (m.workdir / "password").write_text("pw")
    cli(
        "login",
        "--email",
        user["email"],
        "--password-file",
        str(m.workdir / "password"),
        "--key-file",
        str(key),
        env=m.env,
    )
    assert (
        json.loads((Path(m.env["INTERNXTFS_CONFIG_DIR"]) / "default" / "profile.json").read_text())[
            "key_source"
        ]
        == "key-file"
    )
    key.write_text("another key")
    out = cli("mount", str(m.mountpoint), "--key-file", str(key), env=m.env, check=False)
    assert out.returncode == 1
    assert "does not open" in out.stderr
    out = cli("logout", env=m.env, check=False)
    assert out.returncode == 1 and "no key" in out.stderr


def test_logout_revokes_and_removes(emulator: Any, tmp_path: Path) -> None:
    user = emulator.add_user(email=f"l-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    m = MountedFS(emulator, user, tmp_path / "m")
    m.login()
    profile_dir = Path(m.env["INTERNXTFS_CONFIG_DIR"]) / "default"
    assert (profile_dir / "profile.json").exists()
    out = cli("logout", env=m.env)
    assert "Logged out" in out.stdout
    assert not (profile_dir / "profile.json").exists()
    assert not (profile_dir / "auto.key").exists()
