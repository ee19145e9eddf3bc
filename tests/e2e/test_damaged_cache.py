"""A damaged cache state: the mount refuses to start, and `internxtfs salvage` rescues data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.harness.mounting import MountedFS, cli


def _crash_with_unsent_files(m: MountedFS) -> dict[str, bytes]:
    files = {
        "report.pdf": os.urandom(150_000),
        "notes": b"unsent notes",
        "big.bin": os.urandom(2_500_000),
    }
    for name, data in files.items():
        (m.mountpoint / name).write_bytes(data)
    m.kill()  # kill -9 before the (long) upload delay ends: all three are unsent
    return files


def _mount_fails(m: MountedFS) -> str:
    out = cli(
        "mount",
        str(m.mountpoint),
        "-f",
        "--cache-dir",
        str(m.cache_dir),
        env=m.env,
        check=False,
        timeout=60,
    )
    assert out.returncode == 1
    return out.stderr


def test_truncated_state_db_refuses_then_salvage(mounted_factory: Any, tmp_path: Path) -> None:
    m: MountedFS = mounted_factory(None, "--upload-delay", "600")
    files = _crash_with_unsent_files(m)
    db = m.cache_dir / "state.db"
    for leftover in ("state.db-wal", "state.db-shm"):  # checkpointed state only, then damage it
        (m.cache_dir / leftover).unlink(missing_ok=True)
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2] + b"\x00garbage" * 100)

    err = _mount_fails(m)
    assert "salvage" in err and "refusing to start" in err
    assert not os.path.ismount(m.mountpoint)

    dest = tmp_path / "rescued"
    out = cli("salvage", "--cache-dir", str(m.cache_dir), "--to", str(dest), env=m.env, check=False)
    assert "moved to" in out.stdout, out.stdout + out.stderr
    rescued = sorted(p.name for p in dest.iterdir() if p.name != "MANIFEST.txt")
    # Rows may or may not be readable from the damaged db: names then fall back to ids.
    got = sorted((dest / name).read_bytes() for name in rescued)
    assert got == sorted(files.values())
    assert not m.cache_dir.exists()
    assert list(tmp_path.glob("m/cache.damaged-*"))

    m.mount()  # a fresh cache: the mount works again
    assert os.listdir(m.mountpoint) == []


def test_missing_cache_file_refuses_and_salvage_reports_it(
    mounted_factory: Any, tmp_path: Path
) -> None:
    m: MountedFS = mounted_factory(None, "--upload-delay", "600")
    files = _crash_with_unsent_files(m)
    data_files = sorted((m.cache_dir / "data").iterdir(), key=lambda p: p.stat().st_size)
    victim = data_files[0]  # the smallest: "notes"
    victim.unlink()

    err = _mount_fails(m)
    assert "salvage" in err

    dest = tmp_path / "rescued"
    out = cli("salvage", "--cache-dir", str(m.cache_dir), "--to", str(dest), env=m.env, check=False)
    assert out.returncode == 1  # something was lost, and it says what
    assert "LOST (no cache file): notes" in out.stderr
    manifest = (dest / "MANIFEST.txt").read_text()
    assert "complete" in manifest and "report.pdf" in manifest
    saved = {
        p.name.split("-", 1)[1]: p.read_bytes() for p in dest.iterdir() if p.name != "MANIFEST.txt"
    }
    assert saved == {"report.pdf": files["report.pdf"], "big.bin": files["big.bin"]}


def test_second_mount_on_the_same_cache_is_refused(mounted: MountedFS, tmp_path: Path) -> None:
    other = tmp_path / "other-mnt"
    other.mkdir()
    out = cli(
        "mount",
        str(other),
        "-f",
        "--cache-dir",
        str(mounted.cache_dir),
        env=mounted.env,
        check=False,
        timeout=60,
    )
    assert out.returncode == 1
    assert "another mount uses the cache directory" in out.stderr
    out = cli("salvage", "--cache-dir", str(mounted.cache_dir), env=mounted.env, check=False)
    assert out.returncode == 1 and "unmount it first" in out.stderr
