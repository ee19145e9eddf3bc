"""Secrets stay sealed: nothing the login or the mount writes holds them in clear."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pyotp
import pytest

from internxtfs.internxt import crypto
from tests.harness.mounting import BIN, MountedFS, cli, fuse_available
from tests.harness.unit_replay import UNIT

README = UNIT.parents[1] / "README.md"


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
    key.chmod(0o600)
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


def _login(m: MountedFS, *extra: str, env: dict[str, str] | None = None) -> Any:
    (m.workdir / "password").write_text(m.user["password"])
    return cli("login", "--email", m.user["email"], "--password-file",
               str(m.workdir / "password"), *extra, env=env or m.env, check=False)  # fmt: skip


def test_key_file_readable_by_others_is_refused_before_login(emulator: Any, tmp_path: Path) -> None:
    user = emulator.add_user(email=f"k-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    m = MountedFS(emulator, user, tmp_path / "m")
    key = tmp_path / "ix.key"
    key.write_text("a key made with the default umask")
    key.chmod(0o644)
    out = _login(m, "--key-file", str(key))
    assert out.returncode == 1, out.stderr
    assert f"chmod 600 {key}" in out.stderr and "Traceback" not in out.stderr
    assert not (Path(m.env["INTERNXTFS_CONFIG_DIR"]) / "default" / "profile.json").exists()
    key.chmod(0o600)
    assert _login(m, "--key-file", str(key)).returncode == 0


def _key_file_lines(text: str) -> list[str]:
    """The recipe's shell lines that write /run/ix.key (comment markers removed)."""
    lines = [line.lstrip("# ").rstrip("\\ ") for line in text.splitlines()]
    return [line for line in lines if re.search(r">\s*/run/ix\.key", line)]


@pytest.mark.parametrize("source", [README, UNIT], ids=lambda p: p.name)
def test_recipe_creates_the_key_file_private(source: Path, tmp_path: Path) -> None:
    """The README's and the unit header's key-file lines, run with the usual umask 022."""
    lines = _key_file_lines(source.read_text())
    assert lines, f"no line writes /run/ix.key in {source}"
    for line in lines:
        # No systemd host key here: a stand-in with the same redirection.
        line = re.sub(r"systemd-creds [^|>]*", "cat ", line.replace("sudo ", ""))
        key = tmp_path / "ix.key"
        key.unlink(missing_ok=True)
        cred = tmp_path / "cred"
        cred.write_text("stand-in for the credential")
        script = line.replace("/run/ix.key", str(key)).replace(
            "/etc/internxtfs/pluton.key.cred", str(cred)
        )
        subprocess.run(["sh", "-c", f"umask 022; {script}"], check=True, stdin=subprocess.DEVNULL)
        assert key.exists(), script
        assert stat.S_IMODE(key.stat().st_mode) & 0o077 == 0, script


def test_empty_passphrase_fd_is_refused(emulator: Any, tmp_path: Path) -> None:
    user = emulator.add_user(email=f"p-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    m = MountedFS(emulator, user, tmp_path / "m")
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"\n")
    os.close(write_fd)
    (m.workdir / "password").write_text("pw")
    out = subprocess.run(
        [str(BIN / "internxtfs"), "login", "--email", user["email"], "--password-file",
         str(m.workdir / "password"), "--passphrase-fd", str(read_fd)],
        env=m.env, pass_fds=(read_fd,), capture_output=True, text=True,
    )  # fmt: skip
    os.close(read_fd)
    assert out.returncode == 2, out.stderr
    assert "passphrase" in out.stderr and "empty" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (Path(m.env["INTERNXTFS_CONFIG_DIR"]) / "default" / "profile.json").exists()


def test_key_file_wins_over_a_credential_and_opens_it_next_time(
    emulator: Any, tmp_path: Path
) -> None:
    """Logging in where a systemd credential is present (a shell under the service, or
    CREDENTIALS_DIRECTORY left set) with --key-file seals with that file, as asked."""
    user = emulator.add_user(email=f"c-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    m = MountedFS(emulator, user, tmp_path / "m")
    key = tmp_path / "ix.key"
    key.write_text("the key file given on the command line")
    key.chmod(0o600)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "internxtfs.key").write_text("some other service's credential")
    out = _login(m, "--key-file", str(key), env=m.env | {"CREDENTIALS_DIRECTORY": str(creds)})
    assert out.returncode == 0, out.stderr
    profile = Path(m.env["INTERNXTFS_CONFIG_DIR"]) / "default" / "profile.json"
    assert json.loads(profile.read_text())["key_source"] == "key-file"
    out = cli("logout", "--key-file", str(key), env=m.env, check=False)
    assert out.returncode == 0, out.stderr


def test_logout_refuses_while_the_profile_is_mounted(mounted_factory: Any) -> None:
    m: MountedFS = mounted_factory()
    profile_dir = Path(m.env["INTERNXTFS_CONFIG_DIR"]) / "default"
    before = (profile_dir / "profile.json").read_bytes()
    out = cli("logout", env=m.env, check=False)
    assert out.returncode == 1, out.stdout
    assert str(m.mountpoint) in out.stderr and "unmount it first" in out.stderr
    assert "Traceback" not in out.stderr
    assert (profile_dir / "profile.json").read_bytes() == before  # nothing changed
    assert (profile_dir / "auto.key").exists()
    (m.mountpoint / "still-works").write_text("yes")
    assert m.unmount() == 0
    out = cli("logout", env=m.env, check=False)
    assert out.returncode == 0, out.stderr
    assert not (profile_dir / "profile.json").exists()


def test_mount_never_writes_back_a_removed_profile(emulator: Any, mounted_factory: Any) -> None:
    """A profile removed under a running mount (by hand, or a logout that did not reach it)
    is not written back when the mount renews its session."""
    emulator.set_faults(token_lifetime=4)  # renewed about every 3 s
    m: MountedFS = mounted_factory()
    profile_dir = Path(m.env["INTERNXTFS_CONFIG_DIR"]) / "default"
    (profile_dir / "profile.json").unlink()
    (profile_dir / "auto.key").unlink()

    def renewals() -> int:
        session = json.loads(cli("status", "--json", str(m.mountpoint), env=m.env).stdout)
        return int(session["session"]["refreshes"]) + int(session["session"]["relogins"])

    # The mount may have renewed its session already, before the profile was removed: the
    # login, then the wait for the replicas before mounting (a second under an emulated
    # replica lag) and a slow start can take more than the 2/3 of the 4 s lifetime after
    # which a token is renewed. Only a renewal after the removal tells.
    before = renewals()
    for attempt in range(60):
        (m.mountpoint / f"f{attempt}").write_text("x")
        cli("flush", str(m.mountpoint), env=m.env)
        if renewals() > before:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the mount never renewed its session")
    # The session counters move before the renewed session is handed to the profile code,
    # so the line may follow the status answer by a moment.
    for _ in range(100):
        if "was removed (logged out)" in m.log_file.read_text():
            break
        time.sleep(0.1)
    assert "was removed (logged out)" in m.log_file.read_text()
    assert not (profile_dir / "profile.json").exists()
