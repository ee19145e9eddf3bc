"""Bad input to `internxtfs login` is answered in words (exit 2), never with a traceback, and
never costs a failed login on the server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from internxtfs.internxt.crypto import totp_code
from tests.unit.test_cli_login import login

BIN = Path(sys.executable).parent
SHORT_SECRET = "JBSWY3DPEHPK3PXP"  # 80 bits: the size Internxt issues; pyotp refuses it


def _words(out: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == code, out.stdout + out.stderr
    for phrase in phrases:
        assert phrase in out.stderr, out.stderr


def _user(emulator: Any, tmp_path: Path, **kw: Any) -> tuple[str, Path]:
    email = f"bad-{uuid.uuid4().hex[:6]}@example.com"
    emulator.add_user(email=email, password="the-password", **kw)
    pw = tmp_path / "pw"
    pw.write_text("the-password\n")
    return email, pw


def _failed_logins(emulator: Any, email: str) -> int:
    return int(emulator.user_info(email)["failedLogins"])


def _code_for(secret: str) -> str:
    # Far from a step boundary, so the code is still valid when the server checks it.
    while time.time() % 30 > 25:
        time.sleep(0.5)
    return totp_code(secret, time.time())


def test_missing_files_are_named(emulator: Any, tmp_path: Path) -> None:
    urls = (emulator.drive_url, emulator.network_url)
    email, pw = _user(emulator, tmp_path)
    out = login(urls, tmp_path, "--email", email, "--password-file", str(tmp_path / "nope"))
    _words(out, 2, "cannot read --password-file", "No such file")
    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw),
                "--totp-secret-file", str(tmp_path / "no-secret"))  # fmt: skip
    _words(out, 2, "cannot read --totp-secret-file", "No such file")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    out = login(urls, tmp_path, "--email", email, "--password-file", str(empty))
    _words(out, 2, "the password is empty")
    assert _failed_logins(emulator, email) == 0


@pytest.mark.parametrize(
    ("secret", "phrase"),
    [
        ("JBSWY3DPEHPK", "looks truncated"),  # 60 bits
        ("not-base-32!", "not base32"),
        ("otpauth://totp/Internxt:a@b.c?issuer=Internxt", "no secret="),
    ],
)
def test_bad_totp_secrets(emulator: Any, tmp_path: Path, secret: str, phrase: str) -> None:
    urls = (emulator.drive_url, emulator.network_url)
    email, pw = _user(emulator, tmp_path, totp_secret=SHORT_SECRET)
    secret_file = tmp_path / "totp"
    secret_file.write_text(secret + "\n")
    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw),
                "--totp-secret-file", str(secret_file))  # fmt: skip
    _words(out, 2, phrase)
    assert _failed_logins(emulator, email) == 0


@pytest.mark.parametrize("form", ["base32", "spaced", "uri"])
def test_80_bit_secret_as_internxt_issues_it(emulator: Any, tmp_path: Path, form: str) -> None:
    urls = (emulator.drive_url, emulator.network_url)
    email, pw = _user(emulator, tmp_path, totp_secret=SHORT_SECRET)
    text = {
        "base32": SHORT_SECRET,
        "spaced": "jbsw y3dp ehpk 3pxp",
        "uri": f"otpauth://totp/Internxt:{email}?secret={SHORT_SECRET}&issuer=Internxt",
    }[form]
    secret_file = tmp_path / "totp"
    secret_file.write_text(text)
    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw),
                "--totp-secret-file", str(secret_file))  # fmt: skip
    _words(out, 0)


def test_emulator_add_user_names_a_short_secret(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(BIN / "internxtfs-emulator"), "add-user", "--data", str(tmp_path / "emu"),
         "--email", "a@b.c", "--password", "pw", "--totp-secret", "JBSWY3DPEHPK"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    _words(out, 2, "looks truncated")
    assert "must be base32" not in out.stderr


def test_code_with_spaces_is_accepted(emulator: Any, tmp_path: Path) -> None:
    urls = (emulator.drive_url, emulator.network_url)
    email, pw = _user(emulator, tmp_path, totp_secret=SHORT_SECRET)
    code = _code_for(SHORT_SECRET)
    out = login(urls, tmp_path, "--email", email, "--password-file", str(pw),
                "--code", f"{code[:3]} {code[3:]}")  # fmt: skip
    _words(out, 0)
    assert _failed_logins(emulator, email) == 0


def test_malformed_code_is_refused_before_the_server(emulator: Any, tmp_path: Path) -> None:
    urls = (emulator.drive_url, emulator.network_url)
    email, pw = _user(emulator, tmp_path, totp_secret=SHORT_SECRET)
    for bad in ("12345", "12a456"):
        out = login(urls, tmp_path, "--email", email, "--password-file", str(pw), "--code", bad)
        _words(out, 2, "6 digits")
    assert _failed_logins(emulator, email) == 0


@pytest.mark.parametrize("command", ["login", "mount", "logout", "salvage"])
def test_bad_profile_name_is_refused_first(tmp_path: Path, command: str) -> None:
    with socket.socket() as s:  # nothing listens: a command that went online would say so
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pw = tmp_path / "pw"
    pw.write_text("x")
    if command == "login":
        urls = (f"http://127.0.0.1:{port}/drive", f"http://127.0.0.1:{port}/network")
        out = login(urls, tmp_path, "--email", "a@b.c", "--password-file", str(pw),
                    "--profile", "bad/name")  # fmt: skip
    else:
        args = {"mount": ["mount", str(tmp_path)], "logout": ["logout"], "salvage": ["salvage"]}
        out = subprocess.run(
            [str(BIN / "internxtfs"), *args[command], "--profile", "bad/name"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
    _words(out, 2, "invalid profile name 'bad/name'")
    assert not (tmp_path / "cfg").exists()
