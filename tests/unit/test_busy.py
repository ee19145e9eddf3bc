"""What holds a mount busy, read from /proc, and how a refused umount says so (busy.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from internxtfs import busy


def test_holders_names_working_directories_and_open_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    outside = tmp_path.parent / (tmp_path.name + "-sibling")  # a name sharing the prefix
    outside.mkdir()
    keep = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; f = open(sys.argv[1], 'w'); g = open(sys.argv[2], 'w'); print('ok',"
            " flush=True); sys.stdin.read()",
            str(tmp_path / "open.txt"),
            str(outside / "elsewhere.txt"),
        ],
        cwd=tmp_path / "sub",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert keep.stdout is not None and keep.stdout.readline().strip() == "ok"
        found = [h for h in busy.holders(str(tmp_path), {os.getpid()}) if h.pid == keep.pid]
        assert {(h.what, h.path) for h in found} == {
            ("working directory", str(tmp_path / "sub")),
            ("open file", str(tmp_path / "open.txt")),
        }
    finally:
        keep.kill()
        keep.wait()


def test_refusal_names_holders_and_files_nobody_visible_holds() -> None:
    answer = busy.busy_answer(
        "/m",
        [busy.Holder(42, "restic", "open file", "/m/pack")],
        ["/m/pack", "/m/other (deleted)"],
        "fusermount3: failed to unmount /m: Device or resource busy",
    )
    text = "\n".join(busy.describe(answer))
    assert "/m is busy" in text
    assert "pid 42 (restic): open file /m/pack" in text
    assert "open through the mount: /m/other (deleted)" in text
    assert "open through the mount: /m/pack" not in text  # already named with its process
    assert "--lazy" in text
