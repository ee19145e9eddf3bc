"""Symlinks (stored as rclone --links stores them) and directory link counts, through a real
mount, checked again after a cold remount (everything then comes from the emulator)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness import remote
from tests.harness.mounting import MountedFS


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)


def is_link(path: Path) -> bool:
    return stat.S_ISLNK(os.lstat(path).st_mode)


def test_symlink_readlink_lstat_rename_unlink_survive_cold_remount(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    d = mnt / "d"
    d.mkdir()
    (d / "target.txt").write_bytes(b"hello through a link\n")
    os.symlink("target.txt", d / "rel")
    os.symlink("/etc/hostname-nowhere", d / "dangling")
    os.symlink("d/target.txt", d / "moved")  # resolves once moved to the top
    os.symlink("x" * 300, d / "gone")  # a target longer than a name may be

    st = os.lstat(d / "rel")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("target.txt")
    assert os.readlink(d / "rel") == "target.txt"
    assert (d / "rel").read_bytes() == b"hello through a link\n"  # followed by the kernel
    assert os.readlink(d / "gone") == "x" * 300
    os.rename(d / "moved", mnt / "renamed")
    os.unlink(d / "gone")
    with pytest.raises(FileExistsError):
        os.symlink("other", d / "rel")

    # On the server: regular files NAME.rclonelink holding the target, nothing else.
    held = remote.snapshot(mounted.emulator, mounted.user)
    assert held["d/rel.rclonelink"] == b"target.txt"
    assert held["renamed.rclonelink"] == b"d/target.txt"
    assert "d/gone.rclonelink" not in held and "d/moved.rclonelink" not in held

    mounted.remount(cold=True)
    assert sorted(os.listdir(d)) == ["dangling", "rel", "target.txt"]
    assert is_link(d / "rel") and os.readlink(d / "rel") == "target.txt"
    assert os.lstat(d / "rel").st_size == len("target.txt")
    assert (d / "rel").read_bytes() == b"hello through a link\n"
    assert os.readlink(d / "dangling") == "/etc/hostname-nowhere"
    assert is_link(mnt / "renamed") and os.readlink(mnt / "renamed") == "d/target.txt"
    assert (mnt / "renamed").read_bytes() == b"hello through a link\n"
    assert not os.path.lexists(d / "gone")
    # Hard links, FIFOs and device nodes stay refused.
    for refused in (
        lambda: os.link(d / "target.txt", d / "hard"),
        lambda: os.mkfifo(d / "fifo"),
        lambda: os.mknod(d / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3)),
    ):
        with pytest.raises(PermissionError):
            refused()


def test_links_off_refuses_symlinks(mounted_factory: Any) -> None:
    mounted = mounted_factory(None, "--links", "off")
    with pytest.raises(OSError) as info:
        os.symlink("target", mounted.mountpoint / "ln")
    assert info.value.errno == errno.EPERM


def test_directory_link_count_is_two_plus_subdirectories(mounted: MountedFS) -> None:
    top = mounted.mountpoint / "top"
    for sub in ("a", "b", "c"):
        (top / sub).mkdir(parents=True)
    (top / "file").write_bytes(b"not a directory")
    os.symlink("a", top / "link-to-a")
    assert os.stat(top).st_nlink == 5

    mounted.remount(cold=True)
    os.listdir(top)  # the count is known once the folder is listed
    assert os.stat(top).st_nlink == 5
    assert os.stat(top / "a").st_nlink in (1, 2)  # 1: not listed yet (unknown)
    os.listdir(top / "a")
    assert os.stat(top / "a").st_nlink == 2


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_clone_keeps_symlinks(mounted: MountedFS, tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    env_cmds = [
        ("git", "init", "-q", "-b", "main"),
        ("git", "config", "user.email", "t@example.com"),
        ("git", "config", "user.name", "t"),
    ]
    for cmd in env_cmds:
        assert run(*cmd, cwd=origin).returncode == 0
    (origin / "docs").mkdir()
    (origin / "docs" / "readme.md").write_text("the real file\n")
    os.symlink("docs/readme.md", origin / "README")
    os.symlink("../README", origin / "docs" / "up")
    assert run("git", "add", "-A", cwd=origin).returncode == 0
    assert run("git", "commit", "-q", "-m", "links", cwd=origin).returncode == 0

    clone = mounted.mountpoint / "clone"
    done = run("git", "clone", "-q", str(origin), str(clone))
    assert done.returncode == 0, done.stderr
    symlinks = run("git", "config", "--get", "core.symlinks", cwd=clone).stdout.strip()
    assert symlinks in ("", "true"), symlinks  # git gave up on links if it wrote false

    mounted.remount(cold=True)
    assert is_link(clone / "README") and os.readlink(clone / "README") == "docs/readme.md"
    assert os.readlink(clone / "docs" / "up") == "../README"
    assert (clone / "docs" / "up").read_text() == "the real file\n"
    status = run("git", "status", "--porcelain", cwd=clone)
    assert status.returncode == 0 and status.stdout == "", status.stdout + status.stderr
    fsck = run("git", "fsck", "--full", cwd=clone)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_rsync_a_copies_symlinks(mounted: MountedFS, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "data.bin").write_bytes(os.urandom(3000))
    (src / "sub" / "note").write_text("note\n")
    os.symlink("data.bin", src / "to-data")
    os.symlink("../to-data", src / "sub" / "chain")
    os.symlink("/does/not/exist", src / "sub" / "dangling")

    done = run("rsync", "-a", f"{src}/", f"{mounted.mountpoint}/tree/")
    assert done.returncode == 0, done.stderr

    mounted.remount(cold=True)
    tree = mounted.mountpoint / "tree"
    for link in ("to-data", "sub/chain", "sub/dangling"):
        assert is_link(tree / link), link
        assert os.readlink(tree / link) == os.readlink(src / link), link
    assert (tree / "sub" / "chain").read_bytes() == (src / "data.bin").read_bytes()


def test_link_names_renames_over_and_clashes(mounted_factory: Any) -> None:
    mounted = mounted_factory()
    mnt = mounted.mountpoint
    # A regular file may not take a link's remote name: it would read back as a link.
    with pytest.raises(OSError) as info:
        (mnt / "a.rclonelink").write_bytes(b"x")
    assert info.value.errno == errno.EINVAL
    (mnt / "f").write_bytes(b"regular f")
    with pytest.raises(OSError) as info:
        os.rename(mnt / "f", mnt / "b.rclonelink")
    assert info.value.errno == errno.EINVAL

    # rename(2) of a link onto a regular file and of a regular file onto a link.
    (mnt / "g").write_bytes(b"regular g")
    os.symlink("f", mnt / "l1")
    os.symlink("g", mnt / "l2")
    os.rename(mnt / "l1", mnt / "g")  # g is now a link to f
    os.rename(mnt / "f", mnt / "l2")  # l2 is now the regular file
    assert os.readlink(mnt / "g") == "f"
    assert not is_link(mnt / "l2") and (mnt / "l2").read_bytes() == b"regular f"
    fd = os.open(mnt / "l2", os.O_RDONLY)
    try:
        os.fsync(fd)  # returns once stored remotely
    finally:
        os.close(fd)
    held = remote.snapshot(mounted.emulator, mounted.user)
    assert held == {"g.rclonelink": b"f", "l2": b"regular f"}

    # A mount with --links off writes x.rclonelink as a plain file beside a regular x: the
    # link may not hide x, so it shows under its full name, as a regular file.
    plain = mounted_factory(mounted.user, "--links", "off", name="plain")
    (plain.mountpoint / "x").write_bytes(b"regular x")
    (plain.mountpoint / "x.rclonelink").write_bytes(b"target-of-x")
    (plain.mountpoint / "y.rclonelink").write_bytes(b"target-of-y")
    assert sorted(os.listdir(plain.mountpoint)) == [
        "g.rclonelink",
        "l2",
        "x",
        "x.rclonelink",
        "y.rclonelink",
    ]
    plain.unmount()
    mounted.remount(cold=True)
    assert sorted(os.listdir(mnt)) == ["g", "l2", "x", "x.rclonelink", "y"]
    assert (mnt / "x").read_bytes() == b"regular x"
    assert not is_link(mnt / "x.rclonelink")
    assert (mnt / "x.rclonelink").read_bytes() == b"target-of-x"
    assert os.readlink(mnt / "y") == "target-of-y"


def test_link_mtime_is_stored_as_the_rclonelink_files_time(mounted: MountedFS) -> None:
    """lutimes (rsync -a, cp -a, tar) reaches the server as the .rclonelink file's
    modificationTime, as rclone -l stores a link's time, so it survives a fresh cache."""
    mnt = mounted.mountpoint
    (mnt / "target").write_bytes(b"t")
    os.symlink("target", mnt / "ln")
    os.symlink("target", mnt / "untouched")
    made = os.lstat(mnt / "untouched").st_mtime_ns
    os.utime(mnt / "ln", ns=(1_500_000_000_123_456_789,) * 2, follow_symlinks=False)
    assert os.lstat(mnt / "ln").st_mtime_ns == 1_500_000_000_123_456_789
    assert os.readlink(mnt / "ln") == "target"

    held = {e.path: e for e in remote.entries(mounted.emulator, mounted.user)}
    assert held["ln.rclonelink"].data == b"target"
    assert held["ln.rclonelink"].modified == pytest.approx(1_500_000_000.123, abs=1e-6)
    before = held["ln.rclonelink"].file_id
    # The same time again (to the millisecond) sends nothing.
    os.utime(mnt / "ln", ns=(1_500_000_000_123_000_000,) * 2, follow_symlinks=False)
    again = {e.path: e for e in remote.entries(mounted.emulator, mounted.user, download=False)}
    assert again["ln.rclonelink"].file_id == before

    mounted.remount(cold=True)
    assert os.lstat(mnt / "ln").st_mtime_ns == 1_500_000_000_123_000_000  # Internxt keeps ms
    assert os.readlink(mnt / "ln") == "target"
    assert os.lstat(mnt / "untouched").st_mtime_ns // 1_000_000 == made // 1_000_000
    # A link listed from the server (its target not read yet) takes a new time too.
    os.utime(mnt / "untouched", ns=(1_400_000_000_000_000_000,) * 2, follow_symlinks=False)
    mounted.remount(cold=True)
    assert os.lstat(mnt / "untouched").st_mtime_ns == 1_400_000_000_000_000_000
    assert os.readlink(mnt / "untouched") == "target"
