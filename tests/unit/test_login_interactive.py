"""`internxtfs login` at a terminal: prompts (no echo for secrets), 2FA, clear failures."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyotp

BIN = Path(sys.executable).parent


class Terminal:
    """A program on a pseudo-terminal, driven like a person at the keyboard."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)  # fmt: skip
        os.close(slave)
        self.screen = ""

    def expect(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            ready, _, _ = select.select([self.master], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen}")
            try:
                self.screen += os.read(self.master, 4096).decode(errors="replace")
            except OSError:  # the program ended
                raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen}") from None

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self) -> int:
        code = self.proc.wait(timeout=30)
        try:
            while select.select([self.master], [], [], 0.2)[0]:
                self.screen += os.read(self.master, 4096).decode(errors="replace")
        except OSError:
            pass
        os.close(self.master)
        return code


def _env(emulator: Any, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        INTERNXTFS_CONFIG_DIR=str(tmp_path / "cfg"),
        INTERNXTFS_DRIVE_URL=emulator.drive_url,
        INTERNXTFS_NETWORK_URL=emulator.network_url,
    )
    return env


def test_interactive_login_with_2fa_secret_stored(emulator: Any, tmp_path: Path) -> None:
    secret = pyotp.random_base32()
    email = f"tty-{uuid.uuid4().hex[:6]}@example.com"
    emulator.add_user(email=email, password="hunter2-long", totp_secret=secret)
    t = Terminal([str(BIN / "internxtfs"), "login"], _env(emulator, tmp_path))
    t.expect("Email:")
    t.type(email)
    t.expect("Password:")
    t.type("hunter2-long")
    t.expect("2FA secret (optional):")
    t.type(f"otpauth://totp/Internxt:{email}?secret={secret}&issuer=Internxt")
    assert t.finish() == 0, t.screen
    assert "Logged in as" in t.screen
    assert "hunter2-long" not in t.screen and secret not in t.screen  # never echoed


def test_interactive_login_with_one_time_code_and_wrong_password(
    emulator: Any, tmp_path: Path
) -> None:
    secret = pyotp.random_base32()
    email = f"tty-{uuid.uuid4().hex[:6]}@example.com"
    emulator.add_user(email=email, password="right-pw", totp_secret=secret)
    env = _env(emulator, tmp_path)

    t = Terminal([str(BIN / "internxtfs"), "login", "--email", email], env)
    t.expect("Password:")
    t.type("wrong-pw")
    # Internxt says whether 2FA is on before it checks the password, so the code comes first.
    t.expect("2FA secret (optional):")
    t.type("")
    t.expect("Two-factor code:")
    t.type(pyotp.TOTP(secret).now())
    assert t.finish() == 3
    assert "wrong email or password" in t.screen

    t = Terminal([str(BIN / "internxtfs"), "login", "--email", email], env)
    t.expect("Password:")
    t.type("right-pw")
    t.expect("2FA secret (optional):")
    t.type("")
    t.expect("Two-factor code:")
    t.type(pyotp.TOTP(secret).now())
    assert t.finish() == 0, t.screen
    assert "cannot log in again by itself" in t.screen  # told what storing no secret means


def test_password_file_dash_at_a_terminal_prompts_without_echo(
    emulator: Any, tmp_path: Path
) -> None:
    """The unit header's `--password-file -`, typed at a terminal: a prompt, no echo, no Ctrl-D."""
    email = f"dash-{uuid.uuid4().hex[:6]}@example.com"
    emulator.add_user(email=email, password="typed-at-the-tty")
    argv = [str(BIN / "internxtfs"), "login", "--email", email, "--password-file", "-"]
    t = Terminal(argv, _env(emulator, tmp_path))
    t.expect("Password:")
    t.type("typed-at-the-tty")
    assert t.finish() == 0, t.screen
    assert "Logged in as" in t.screen
    assert "typed-at-the-tty" not in t.screen
