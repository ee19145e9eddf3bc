"""POSIX behaviour of a real mount, one operation at a time."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import remote
from tests.harness.mounting import MountedFS, cli


def test_write_read_and_stat_stay_stable_across_upload(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    data = os.urandom(300_000)
    (mnt / "a.bin").write_bytes(data)
    os.utime(mnt / "a.bin", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    before = os.stat(mnt / "a.bin")
    assert before.st_size == len(data)
    assert (mnt / "a.bin").read_bytes() == data
    # fsync returns only when stored remotely; afterwards stat must not have moved
    fd = os.open(mnt / "a.bin", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    after = os.stat(mnt / "a.bin")
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_mtime_ns == 1_600_000_000_123_456_789


def test_names_internxt_splits(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    names = ["a.tar.gz", ".bashrc", "noext", "trailing.", "sp ace.txt", "ünï.cödé"]
    for i, name in enumerate(names):
        (mnt / name).write_bytes(bytes([i]) * (i + 1))
    assert sorted(os.listdir(mnt)) == sorted(names)
    mounted.remount(cold=True)
    assert sorted(os.listdir(mnt)) == sorted(names)
    for i, name in enumerate(names):
        assert (mnt / name).read_bytes() == bytes([i]) * (i + 1)


def test_zero_byte_files_survive_remount(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    (mnt / "empty").write_bytes(b"")
    (mnt / "d").mkdir()
    (mnt / "d" / "empty.txt").touch()
    mounted.remount(cold=True)
    assert (mnt / "empty").stat().st_size == 0
    assert (mnt / "d" / "empty.txt").read_bytes() == b""


def test_directories_and_errors(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    (mnt / "d1" / "d2").mkdir(parents=True)
    (mnt / "d1" / "d2" / "f").write_text("x")
    with pytest.raises(OSError) as e:
        os.rmdir(mnt / "d1")
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        os.mkdir(mnt / "d1")
    with pytest.raises(IsADirectoryError):
        os.unlink(mnt / "d1")
    with pytest.raises(NotADirectoryError):
        os.rmdir(mnt / "d1" / "d2" / "f")
    os.unlink(mnt / "d1" / "d2" / "f")
    os.rmdir(mnt / "d1" / "d2")
    os.rmdir(mnt / "d1")
    assert os.listdir(mnt) == []
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "d1")


def test_rename_files_and_directories(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    (mnt / "src").mkdir()
    (mnt / "src" / "f.txt").write_text("one")
    (mnt / "dst").mkdir()
    os.rename(mnt / "src" / "f.txt", mnt / "dst" / "g")
    assert (mnt / "dst" / "g").read_text() == "one"
    assert not (mnt / "src" / "f.txt").exists()
    # over an existing file: replaces it
    (mnt / "dst" / "h").write_text("two")
    os.rename(mnt / "dst" / "h", mnt / "dst" / "g")
    assert (mnt / "dst" / "g").read_text() == "two"
    assert os.listdir(mnt / "dst") == ["g"]
    # directories
    os.rename(mnt / "dst", mnt / "src" / "moved")
    assert (mnt / "src" / "moved" / "g").read_text() == "two"
    with pytest.raises(OSError) as e:
        os.rename(mnt / "src", mnt / "src" / "moved" / "inside")
    assert e.value.errno == errno.EINVAL
    mounted.remount(cold=True)
    assert (mnt / "src" / "moved" / "g").read_text() == "two"
    assert sorted(os.listdir(mnt)) == ["src"]


def test_overwrite_truncate_append_sparse(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    p = mnt / "f"
    p.write_bytes(b"hello world")
    mounted.remount()
    with open(p, "r+b") as fh:
        fh.seek(6)
        fh.write(b"WORLD")
    with open(p, "ab") as fh:
        fh.write(b"!")
    assert p.read_bytes() == b"hello WORLD!"
    os.truncate(p, 5)
    os.truncate(p, 8)
    assert p.read_bytes() == b"hello\0\0\0"
    with open(p, "r+b") as fh:
        fh.seek(100_000)
        fh.write(b"end")
    expected = b"hello\0\0\0" + bytes(100_000 - 8) + b"end"
    assert p.read_bytes() == expected
    p.write_bytes(b"new")  # O_TRUNC
    assert p.read_bytes() == b"new"
    mounted.remount(cold=True)
    assert p.read_bytes() == b"new"


def test_unsupported_operations_fail_cleanly(mounted: MountedFS, tmp_path: Path) -> None:
    mnt = mounted.mountpoint
    (mnt / "f").write_text("x")
    with pytest.raises(PermissionError):
        os.link(mnt / "f", mnt / "hard")
    with pytest.raises(PermissionError):
        os.mkfifo(mnt / "fifo")
    with pytest.raises(OSError) as e:
        os.getxattr(mnt / "f", "user.x")
    assert e.value.errno == errno.EOPNOTSUPP  # no xattrs at all (the kernel caches ENOSYS)
    with pytest.raises(OSError):
        os.setxattr(mnt / "f", "user.x", b"1")
    bad = os.fsencode(str(mnt)) + b"/bad\xff"
    with pytest.raises(OSError) as e:
        open(bad, "wb").close()
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        os.mkdir(mnt / "back\\slash")
    assert e.value.errno == errno.EINVAL
    # still alive after all that
    assert (mnt / "f").read_text() == "x"


def test_statfs_reports_quota(mounted: MountedFS) -> None:
    st = os.statvfs(mounted.mountpoint)
    assert st.f_namemax == 255
    assert st.f_blocks > 0
    assert st.f_bavail <= st.f_blocks


def test_unmount_right_after_write_loses_nothing(mounted: MountedFS) -> None:
    mnt = mounted.mountpoint
    data = {f"f{i}": os.urandom(1000 * i) for i in range(20)}
    for name, content in data.items():
        (mnt / name).write_bytes(content)
    assert mounted.unmount() == 0
    mounted.remount(cold=True)
    for name, content in data.items():
        assert (mnt / name).read_bytes() == content


def test_listings_show_dot_and_dotdot(mounted: MountedFS) -> None:
    """``ls -a`` shows "." and ".." as on a local disk, with the right inodes, and listing
    them does not disturb the kernel's lookup counts (the mount keeps working after many)."""
    mnt = mounted.mountpoint
    (mnt / "d").mkdir()
    (mnt / "d" / "f").write_bytes(b"x")
    listed = subprocess.run(
        ["ls", "-a1i", str(mnt / "d")], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    by_name = {line.split()[1]: int(line.split()[0]) for line in listed if line.strip()}
    assert sorted(by_name) == [".", "..", "f"]
    assert by_name["."] == os.stat(mnt / "d").st_ino
    assert by_name[".."] == os.stat(mnt).st_ino
    root = subprocess.run(["ls", "-a1", str(mnt)], capture_output=True, text=True, check=True)
    assert root.stdout.split() == [".", "..", "d"]
    for _ in range(200):  # many readdirplus rounds, then the tree is still all there
        os.listdir(mnt / "d")
    mounted.remount()
    assert (mnt / "d" / "f").read_bytes() == b"x"


def test_directory_mtime_set_here_survives_listing_refreshes(mounted_factory: Any) -> None:
    """Internxt cannot store a folder's mtime after creation: one set here (touch, rsync -a)
    must last until unmount, not fall back at the next listing from Internxt, or every
    ``rsync -a`` would set every directory time again."""
    m: MountedFS = mounted_factory(None, "--dir-cache-ttl", "1")
    mnt = m.mountpoint
    src = m.workdir / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f").write_bytes(b"x")
    for d in (src / "a" / "b", src / "a", src):
        os.utime(d, (1_577_836_800, 1_577_836_800))
    subprocess.run(["rsync", "-a", f"{src}/", f"{mnt}/rs/"], check=True)
    time.sleep(1.5)  # past the listing TTL
    os.listdir(mnt)
    os.listdir(mnt / "rs")
    assert (mnt / "rs" / "a").stat().st_mtime == 1_577_836_800
    again = subprocess.run(
        ["rsync", "-ai", f"{src}/", f"{mnt}/rs/"], capture_output=True, text=True, check=True
    )
    assert again.stdout == "", again.stdout  # nothing to transfer, no time to set again


def test_open_file_stays_readable_after_unlink_or_rename_over(mounted: MountedFS) -> None:
    """POSIX: an unlinked (or renamed-over) file stays readable through descriptors opened
    before, also the part that was never cached. Its entry goes at the last close; meanwhile
    the name is free, nothing shows in the listing, and flush does not wait for the reader."""
    mnt = mounted.mountpoint
    first, second = os.urandom(3 * 1024 * 1024 + 7), os.urandom(2 * 1024 * 1024)
    (mnt / "f").write_bytes(first)
    (mnt / "g").write_bytes(second)
    (mnt / "new").write_bytes(b"the new g")
    flush = cli("flush", str(mnt), env=mounted.env)
    assert flush.returncode == 0, flush.stdout + flush.stderr
    mounted.remount(cold=True)  # nothing cached: reads after the unlink must reach Internxt
    fd_f = os.open(mnt / "f", os.O_RDONLY)
    fd_g = os.open(mnt / "g", os.O_RDONLY)
    try:
        assert os.read(fd_f, 4096) == first[:4096]
        os.unlink(mnt / "f")
        os.rename(mnt / "new", mnt / "g")
        (mnt / "f").write_bytes(b"a new f")  # the name is free at once
        assert sorted(os.listdir(mnt)) == ["f", "g"]
        flushed = cli("flush", str(mnt), env=mounted.env)
        assert flushed.returncode == 0, flushed.stdout + flushed.stderr
        rest = b""
        while chunk := os.read(fd_f, 1 << 20):
            rest += chunk
        assert first[:4096] + rest == first
        assert os.pread(fd_g, len(second) + 10, 0) == second
    finally:
        os.close(fd_f)
        os.close(fd_g)
    flushed = cli("flush", str(mnt), env=mounted.env)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert remote.snapshot(mounted.emulator, mounted.user) == {"f": b"a new f", "g": b"the new g"}
