"""The systemd unit passes systemd-analyze verify; the mount(8) helper translates options."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from internxtfs.cli import is_mount_fuse_call
from internxtfs.mount_helper import parse, translate

UNIT = Path(__file__).parents[2] / "systemd" / "internxtfs@.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: point it at this venv's copy.
    binary = Path(sys.executable).parent / "internxtfs"
    text = UNIT.read_text().replace("/usr/local/bin/internxtfs", str(binary))
    instance = tmp_path / "internxtfs@pluton.service"
    instance.write_text(text)
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(instance)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    # Unknown keys and bad values are only warnings to verify: there must be none.
    assert instance.name not in out.stderr, out.stderr


def test_unit_keeps_fuse_visible_and_flushes_on_stop() -> None:
    lines = [line for line in UNIT.read_text().splitlines() if not line.startswith("#")]
    text = "\n".join(lines)
    for needed in (
        "Type=notify",
        "After=network-online.target",
        "Restart=on-failure",
        "LoadCredentialEncrypted=",
        "DeviceAllow=/dev/fuse rw",
        "TimeoutStopSec=",
    ):
        assert needed in text
    # any of these would hide the mount in a private mount namespace
    for forbidden in (
        "ProtectSystem=",
        "PrivateTmp=",
        "ProtectHome=",
        "PrivateDevices=",
        "TemporaryFileSystem=",
        "ProtectKernelModules=",
    ):
        assert forbidden not in text


def test_mount_helper_translates_fstab_options() -> None:
    argv = translate(
        [
            "pluton",
            "/mnt/x",
            "-o",
            "rw,_netdev,allow_other,uid=1001,gid=1001,umask=027,"
            "cache_dir=/var/cache/ix,delete_mode=permanent,x-systemd.automount,noauto",
        ]
    )
    assert argv == [
        "mount",
        "/mnt/x",
        "--profile",
        "pluton",
        "--cache-dir",
        "/var/cache/ix",
        "--delete-mode",
        "permanent",
        "-o",
        "allow_other,uid=1001,gid=1001,umask=027",
    ]
    assert translate(["internxtfs#work", "/mnt/w"])[:4] == ["mount", "/mnt/w", "--profile", "work"]
    with pytest.raises(SystemExit, match="unknown option"):
        translate(["p", "/m", "-o", "bogus=1"])


def test_mount_helper_takes_config_dir_and_fsync() -> None:
    call = parse(["pluton", "/m", "-o", "rw,config_dir=/etc/ix,fsync=local,dev,suid", "-t", "x"])
    assert call.config_dir == "/etc/ix"
    assert call.argv == ["mount", "/m", "--profile", "pluton", "--fsync", "local"]


def test_mount_fuse_call_is_told_apart_from_commands() -> None:
    commands = {"mount", "status", "login"}
    assert is_mount_fuse_call(["pluton", "/mnt/x", "-o", "rw"], commands)
    assert not is_mount_fuse_call(["mount", "/mnt/x", "-o", "rw"], commands)
    assert not is_mount_fuse_call(["mout", "/mnt/x"], commands)  # a typo stays an error
    assert not is_mount_fuse_call(["--debug", "/mnt/x", "-o", "rw"], commands)
