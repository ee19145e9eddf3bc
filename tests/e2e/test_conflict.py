"""Conflict policy: a file changed elsewhere while this mount holds unsent changes keeps both."""

from __future__ import annotations

import os
from typing import Any

from tests.harness.mounting import MountedFS, cli


def test_remote_change_during_unsent_local_change_keeps_both(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    a: MountedFS = mounted_factory(fs_user, "--upload-delay", "600", name="a")
    (a.mountpoint / "report.txt").write_text("base")
    assert cli("flush", str(a.mountpoint), env=a.env).returncode == 0

    b: MountedFS = mounted_factory(fs_user, "--dir-cache-ttl", "0.5", name="b")
    assert (b.mountpoint / "report.txt").read_text() == "base"

    (a.mountpoint / "report.txt").write_text("ours, not sent yet")  # held by the long delay
    (b.mountpoint / "report.txt").write_text("theirs")
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0

    assert cli("flush", str(a.mountpoint), env=a.env).returncode == 0
    assert "keeping both" in a.log()

    c: MountedFS = mounted_factory(fs_user, name="c")  # a fresh view of what is stored
    names = sorted(os.listdir(c.mountpoint))
    assert len(names) == 2, names
    assert (c.mountpoint / "report.txt").read_text() == "theirs"
    kept = next(n for n in names if n != "report.txt")
    assert kept.startswith("report (internxtfs conflict ") and kept.endswith(").txt")
    assert (c.mountpoint / kept).read_text() == "ours, not sent yet"
