"""Fault soak: Pluton's restic workload through the mount while Internxt misbehaves.

The emulator answers ~5 % of API requests with 500/503, ~2 % with 429 (Retry-After) and cuts
~5 % of object transfers mid-body, during a restic backup, a cold remount,
``check --read-data`` and a restore: restic must see no error, and the restored bytes must be
the source bytes exactly.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_restic import Restic, make_tree, mutate_tree
from tests.harness import remote
from tests.harness.durability import flush_ok, status
from tests.harness.mounting import MountedFS

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")


def test_restic_backup_check_restore_under_faults(new_mount: Any, tmp_path: Path) -> None:
    m: MountedFS = new_mount()
    emulator = m.emulator
    src = tmp_path / "src"
    make_tree(src, seed=21, files=120)
    restic = Restic(str(m.mountpoint / "repo"), tmp_path, [], {})
    # reset_next: the first object transfers are cut for sure; the 5% after that depend on
    # how many transfers restic's packs make, which varies.
    emulator.set_faults(fail_rate=0.05, throttle_rate=0.02, reset_rate=0.05, reset_next=2, seed=5)
    try:
        restic("init")
        restic("backup", "--host", "soak", ".", cwd=src)
        mutate_tree(src, seed=22)
        restic("backup", "--host", "soak", ".", cwd=src)
        flush_ok(m, timeout=120)
        # Every read from here on comes from Internxt, through the same faults.
        m.remount(cold=True)
        restic("check", "--read-data")
        target = tmp_path / "restored"
        restic("restore", "latest", "--target", str(target))
        injected = emulator.stats()["faults_injected"]
        net = status(m)["network"]
    finally:
        emulator.set_faults(fail_rate=0, throttle_rate=0, reset_rate=0)
    assert injected.get("reset") and injected.get("429"), injected
    assert injected.get("500", 0) + injected.get("503", 0) >= 5, injected
    assert net["retries"] > 0, net
    diff = subprocess.run(["diff", "-r", str(src), str(target)], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    listing = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == listing
    # Retried creates never left two entries with one name (snapshot() checks).
    stored = remote.entries(emulator, m.user, download=False)
    paths = [f.path for f in stored]
    assert len(paths) == len(set(paths))
    assert "Traceback" not in m.log_file.read_text(), m.log()
