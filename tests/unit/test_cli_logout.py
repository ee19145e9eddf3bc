"""`internxtfs logout` that cannot reach the server says so, exits non-zero and keeps the
profile (its token is still valid there); `--force` removes it anyway; reachable, it revokes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from internxtfs import config
from tests.unit.test_cli_login import login

BIN = Path(sys.executable).parent


def logout(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, INTERNXTFS_CONFIG_DIR=str(tmp_path / "cfg"))
    return subprocess.run(
        [str(BIN / "internxtfs"), "logout", *args],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip


def token_works(drive_url: str, token: str) -> bool:
    answer = httpx.get(
        f"{drive_url}/users/cli/refresh", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 200


def test_logout_unreachable_keeps_the_profile_then_revokes(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = f"out-{uuid.uuid4().hex[:6]}@example.com"
    emulator.add_user(email=email, password="the-password")
    pw = tmp_path / "pw"
    pw.write_text("the-password")
    done = login((emulator.drive_url, emulator.network_url), tmp_path,
                 "--email", email, "--password-file", str(pw))  # fmt: skip
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("INTERNXTFS_CONFIG_DIR", str(tmp_path / "cfg"))
    token = config.load_profile("default").session.token
    stored = tmp_path / "cfg" / "default" / "profile.json"

    emulator.stop()
    out = logout(tmp_path)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 4, out.stdout + out.stderr
    assert "could not revoke the session" in out.stderr and "--force" in out.stderr
    assert stored.exists()

    emulator.start()  # same data and port: the session was never revoked
    assert token_works(emulator.drive_url, token)
    out = logout(tmp_path)
    assert out.returncode == 0, out.stderr
    assert not stored.exists()
    assert not token_works(emulator.drive_url, token)


def test_logout_force_removes_the_profile_when_unreachable(emulator: Any, tmp_path: Path) -> None:
    email = f"out-{uuid.uuid4().hex[:6]}@example.com"
    emulator.add_user(email=email, password="the-password")
    pw = tmp_path / "pw"
    pw.write_text("the-password")
    done = login((emulator.drive_url, emulator.network_url), tmp_path,
                 "--email", email, "--password-file", str(pw))  # fmt: skip
    assert done.returncode == 0, done.stderr
    emulator.stop()
    out = logout(tmp_path, "--force")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stderr
    assert "stays valid there" in out.stderr
    assert not (tmp_path / "cfg" / "default" / "profile.json").exists()
