"""`internxtfs status | flush | umount` and the systemd notify protocol, on a real mount."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from tests.harness.mounting import MountedFS, cli


def status(m: MountedFS) -> dict[str, Any]:
    out = cli("status", "--json", str(m.mountpoint), env=m.env)
    return json.loads(out.stdout)


def test_status_flush_umount(mounted_factory: Any, emulator: Any) -> None:
    m: MountedFS = mounted_factory(None, "--upload-delay", "30")  # nothing uploads by itself
    for i in range(5):
        (m.mountpoint / f"f{i}").write_bytes(os.urandom(10_000))
    st = status(m)
    assert st["uploads"]["pending_files"] == 5
    assert st["uploads"]["pending_bytes"] == 50_000
    human = cli("status", str(m.mountpoint), env=m.env).stdout
    assert "pending uploads: 5 file(s)" in human

    flushed = cli("flush", str(m.mountpoint), env=m.env)
    assert flushed.returncode == 0, flushed.stderr
    assert status(m)["uploads"]["pending_files"] == 0
    assert status(m)["uploads"]["uploaded"] == 5

    (m.mountpoint / "late").write_bytes(b"written just before umount")
    done = cli("umount", str(m.mountpoint), env=m.env)
    assert done.returncode == 0, done.stderr
    assert not os.path.ismount(m.mountpoint)
    assert m.proc is not None and m.proc.wait(timeout=30) == 0
    m.proc = None
    m.remount(cold=True)
    assert (m.mountpoint / "late").read_bytes() == b"written just before umount"
    assert len(os.listdir(m.mountpoint)) == 6


def test_status_of_nothing_is_a_clear_error(tmp_path: Path) -> None:
    out = cli("status", str(tmp_path), env=dict(os.environ), check=False)
    assert out.returncode == 1
    assert "no internxtfs mount answers" in out.stderr


def test_systemd_notify_ready_and_status(mounted_factory: Any, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    os.environ["NOTIFY_SOCKET"] = str(path)
    try:
        m: MountedFS = mounted_factory()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    messages = [sock.recv(4096).decode()]
    assert "READY=1" in messages[0]
    (m.mountpoint / "x").write_bytes(b"x")
    m.unmount()
    sock.settimeout(5)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except TimeoutError:
        pass
    assert any("STATUS=" in msg for msg in messages)
