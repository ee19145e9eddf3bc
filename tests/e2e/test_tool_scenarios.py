"""Real-tool scenarios of issue 11 (item 4), each through a real mount and checked again after
remounts: on the SAME cache directory (modes and owners are kept by the cache that set them,
docs/semantics.md) and on a fresh one (everything then comes from the emulator: content, names,
link targets, file and link mtimes).

Two users in a sticky 0777 directory: tests/e2e/test_posix_modes.py. Symlinks alone:
tests/e2e/test_links.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.harness.mounting import MountedFS


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def make_mixed_tree(root: Path) -> None:
    """Files 0600/0700/0755/0644, a 0700 folder, relative, absolute, chained and dangling links."""
    (root / "bin").mkdir(parents=True)
    (root / "private").mkdir(mode=0o700)
    os.chmod(root / "private", 0o700)
    files = {
        "bin/run.sh": (b"#!/bin/sh\necho run\n", 0o755),
        "bin/tool": (os.urandom(70_000), 0o700),
        "private/key": (b"private key\n", 0o600),
        "notes.txt": (b"notes\n", 0o644),
        "empty": (b"", 0o600),
    }
    for i, (name, (data, mode)) in enumerate(sorted(files.items())):
        (root / name).write_bytes(data)
        os.chmod(root / name, mode)
        os.utime(root / name, (1_600_000_000 + i, 1_600_000_000 + i))
    links = {
        "run": "bin/run.sh",
        "bin/up": "../notes.txt",
        "chain": "run",
        "dangling": "/nowhere/at/all",
        "abs": "/etc/hostname",
    }
    for i, (name, target) in enumerate(sorted(links.items())):
        os.symlink(target, root / name)
        os.utime(root / name, (1_500_000_000 + i, 1_500_000_000 + i), follow_symlinks=False)
    os.utime(root / "bin", (1_400_000_000, 1_400_000_000))


# --- git --------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_clone_keeps_exec_bits_and_symlinks(mounted: MountedFS, tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    for cmd in (
        ("git", "init", "-q", "-b", "main"),
        ("git", "config", "user.email", "t@example.com"),
        ("git", "config", "user.name", "t"),
    ):
        assert run(*cmd, cwd=origin).returncode == 0
    (origin / "scripts").mkdir()
    (origin / "scripts" / "build.sh").write_text("#!/bin/sh\necho build\n")
    os.chmod(origin / "scripts" / "build.sh", 0o755)
    (origin / "README.md").write_text("readme\n")
    os.symlink("scripts/build.sh", origin / "build")
    os.symlink("../README.md", origin / "scripts" / "readme")
    assert run("git", "add", "-A", cwd=origin).returncode == 0
    assert run("git", "commit", "-q", "-m", "one", cwd=origin).returncode == 0
    tree = run("git", "ls-tree", "-r", "HEAD", cwd=origin).stdout
    assert "100755 blob" in tree and "120000 blob" in tree

    clone = mounted.mountpoint / "clone"
    done = run("git", "clone", "-q", str(origin), str(clone))
    assert done.returncode == 0, done.stderr
    # git probes the folder: it writes false when chmod +x does not stick, or links fail.
    assert run("git", "config", "core.fileMode", cwd=clone).stdout.strip() == "true"
    assert run("git", "config", "core.symlinks", cwd=clone).stdout.strip() in ("", "true")
    assert mode_of(clone / "scripts" / "build.sh") == 0o755
    assert mode_of(clone / "README.md") == 0o644

    def clean(*config: str) -> None:
        status = run("git", *config, "status", "--porcelain", cwd=clone)
        assert status.returncode == 0 and status.stdout == "", status.stdout + status.stderr
        fsck = run("git", "fsck", "--full", "--strict", cwd=clone)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr

    clean()
    mounted.remount()  # the same cache directory keeps the modes
    assert mode_of(clone / "scripts" / "build.sh") == 0o755
    clean()
    assert (clone / "build").read_text() == "#!/bin/sh\necho build\n"
    run_it = run(str(clone / "build"))
    assert run_it.returncode == 0 and run_it.stdout == "build\n", run_it.stderr

    mounted.remount(cold=True)  # a fresh cache: content and links from the server, no modes
    assert os.readlink(clone / "build") == "scripts/build.sh"
    assert os.readlink(clone / "scripts" / "readme") == "../README.md"
    assert (clone / "scripts" / "readme").read_text() == "readme\n"
    assert mode_of(clone / "scripts" / "build.sh") == 0o644  # the mount default (by design)
    clean("-c", "core.fileMode=false")


# --- cp -a, rsync -a --------------------------------------------------------------------------


def itemize(src: Path, dst: Path, *extra: str) -> str:
    done = run("rsync", "-a", "--dry-run", "--itemize-changes", *extra, f"{src}/", f"{dst}/")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_cp_a_and_rsync_a_of_modes_and_links_then_rsync_itemizes_nothing(
    mounted: MountedFS, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_mixed_tree(src)
    mnt = mounted.mountpoint
    cp = run("cp", "-a", str(src), str(mnt / "by-cp"))
    assert cp.returncode == 0, cp.stderr
    rs = run("rsync", "-a", f"{src}/", str(mnt / "by-rsync"))
    assert rs.returncode == 0, rs.stderr
    copies = [mnt / "by-cp", mnt / "by-rsync"]

    for copy in copies:  # the same mount: everything, directory times included
        assert mode_of(copy / "private" / "key") == 0o600
        assert mode_of(copy / "bin" / "tool") == 0o700
        assert mode_of(copy / "private") == 0o700
        assert itemize(src, copy) == "", copy

    mounted.remount()  # the same cache directory keeps modes, owners and folder times
    for copy in copies:
        assert itemize(src, copy) == "", copy
        assert run("diff", "-r", "--no-dereference", str(src), str(copy)).returncode == 0

    mounted.remount(cold=True)  # a fresh cache: bytes, names, link targets, file and link mtimes
    for copy in copies:
        # Internxt keeps a folder's creation time only: with a fresh cache, folders show that.
        assert itemize(src, copy, "--omit-dir-times", "--no-perms", "--checksum") == "", copy
        for link in ("run", "bin/up", "chain", "dangling", "abs"):
            assert os.readlink(copy / link) == os.readlink(src / link)
        diff = run("diff", "-r", "--no-dereference", str(src), str(copy))
        assert diff.returncode == 0, diff.stdout + diff.stderr


# --- sqlite -----------------------------------------------------------------------------------


def check_db(path: Path, journal_mode: str) -> None:
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == journal_mode
        count, total = con.execute("SELECT count(*), sum(n) FROM t").fetchone()
        assert (count, total) == (4000, sum(range(4000)))
        assert con.execute("SELECT count(*) FROM t WHERE note = 'rolled back'").fetchone() == (0,)
    finally:
        con.close()


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_sqlite_transactions_then_integrity_check(mounted: MountedFS, journal_mode: str) -> None:
    db = mounted.mountpoint / "data" / "app.db"
    db.parent.mkdir()
    con = sqlite3.connect(db, isolation_level=None)
    try:
        assert con.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0] == journal_mode
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, note TEXT, blob BLOB)")
        con.execute("CREATE INDEX t_note ON t (note)")
        for start in range(0, 4000, 500):  # several committed transactions
            con.execute("BEGIN")
            con.executemany(
                "INSERT INTO t VALUES (?, ?, ?)",
                ((n, f"row {n % 7}", os.urandom(200)) for n in range(start, start + 500)),
            )
            con.execute("COMMIT")
        con.execute("BEGIN")  # and one rolled back, after it touched many pages
        con.execute("UPDATE t SET note = 'rolled back'")
        con.execute("DELETE FROM t WHERE n % 3 = 0")
        con.execute("ROLLBACK")
        con.execute("UPDATE t SET blob = zeroblob(300) WHERE n % 11 = 0")  # autocommit
    finally:
        con.close()
    check_db(db, journal_mode)
    if shutil.which("sqlite3"):
        cli = run("sqlite3", str(db), "PRAGMA integrity_check;")
        assert cli.returncode == 0 and cli.stdout.strip() == "ok", cli.stdout + cli.stderr

    mounted.remount(cold=True)
    check_db(db, journal_mode)


# --- tar --------------------------------------------------------------------------------------


def members(archive: Path, *, local: bool = True) -> dict[str, tuple[object, ...]]:
    """name -> (type, mode, size, mtime, link target, sha256) of every member; without
    ``local``, no modes and no folder times (kept only by the cache that set them)."""
    out: dict[str, tuple[object, ...]] = {}
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            out[m.name.removeprefix("./")] = (
                m.type,
                m.mode if local and not m.issym() else None,
                m.size,
                m.mtime if local or not m.isdir() else None,
                m.linkname,
                hashlib.sha256(data).hexdigest(),
            )
    out.pop("", None)
    out.pop(".", None)
    return out


def test_tar_x_then_tar_c_round_trip(mounted: MountedFS, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_mixed_tree(src)
    original = tmp_path / "original.tar"
    assert run("tar", "-C", str(src), "-cf", str(original), ".").returncode == 0
    dst = mounted.mountpoint / "x"
    dst.mkdir()
    ex = run("tar", "-C", str(dst), "-xpf", str(original))
    assert ex.returncode == 0, ex.stderr

    def tar_of_mount(name: str) -> Path:
        out = tmp_path / name
        done = run("tar", "-C", str(dst), "-cf", str(out), ".")
        assert done.returncode == 0, done.stderr
        return out

    expected = members(original)
    assert members(tar_of_mount("same-mount.tar")) == expected
    mounted.remount()  # the same cache directory keeps the modes
    assert members(tar_of_mount("remounted.tar")) == expected
    mounted.remount(cold=True)
    assert members(tar_of_mount("cold.tar"), local=False) == members(original, local=False)


def test_folder_mtime_is_kept_by_the_cache_that_set_it(mounted: MountedFS) -> None:
    """Internxt cannot change a folder's time after its creation: a time set here (touch,
    rsync -a, tar -x) and the changes of its entries made here after it are kept by this cache."""
    mnt = mounted.mountpoint
    (mnt / "set" / "sub").mkdir(parents=True)
    (mnt / "later").mkdir()
    os.utime(mnt / "set", ns=(1_500_000_000_123_456_789,) * 2)
    os.utime(mnt / "later", ns=(1_400_000_000_000_000_000,) * 2)
    (mnt / "later" / "f").write_bytes(b"an entry made after the time was set")
    moved = os.stat(mnt / "later").st_mtime_ns
    assert moved > 1_400_000_000_000_000_000
    mounted.remount()
    assert os.stat(mnt / "set").st_mtime_ns == 1_500_000_000_123_456_789
    assert os.stat(mnt / "later").st_mtime_ns == moved
    assert os.stat(mnt / "set").st_ctime_ns >= 1_500_000_000_123_456_789
    mounted.remount(cold=True)  # another cache: Internxt's time, the folder's creation
    assert os.stat(mnt / "set").st_mtime_ns > 1_700_000_000 * 10**9
