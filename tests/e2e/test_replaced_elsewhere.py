"""A file another client replaces while this mount reads it (issue 13, item 4).

Internxt's replace points the entry at a new network object and deletes the old one, so a
mount that still reads the old object meets 404s. The open descriptor must get ESTALE (or EIO),
never ENOENT; what it read before stays the old content; and the next open, long before the
folder listing expires (``--dir-cache-ttl 600``), reads the new content whole.
"""

from __future__ import annotations

import errno
import os
import random
import time
from typing import Any

import pytest

from tests.harness.mounting import MountedFS, cli

MiB = 1024 * 1024


def _content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _replace_from_b(b: MountedFS, name: str, data: bytes) -> None:
    """Another client overwrites the file in place (same entry, new object) and stores it."""
    (b.mountpoint / name).write_bytes(data)
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0
    # What A is to notice is another client's change: A's reads may come from replicas that
    # do not show it yet (no-op without an emulated lag).
    b.emulator.wait_for_replicas()


@pytest.mark.parametrize("new_size", [16 * MiB, 10 * MiB + 123], ids=["same-size", "smaller"])
def test_file_replaced_elsewhere_while_open(
    mounted_factory: Any, fs_user: dict[str, Any], new_size: int
) -> None:
    old, new = _content(1, 16 * MiB), _content(2, new_size)
    b: MountedFS = mounted_factory(fs_user, name="b")
    (b.mountpoint / "big.bin").write_bytes(old)
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0

    # A starts cold (nothing cached) and trusts its listing for ten minutes.
    a: MountedFS = mounted_factory(fs_user, "--dir-cache-ttl", "600", name="a")
    path = a.mountpoint / "big.bin"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 64 * 1024, 0) == old[: 64 * 1024]  # a prefix, the rest not cached

        _replace_from_b(b, "big.bin", new)

        # The descriptor's version is gone from the network: ESTALE or EIO, never ENOENT.
        with pytest.raises(OSError) as failure:
            os.pread(fd, 64 * 1024, 12 * MiB)
        assert failure.value.errno in (errno.ESTALE, errno.EIO), failure.value
        # What it had read is still the old content, never the new one.
        assert os.pread(fd, 4096, 0) == old[:4096]

        # A later open reads the new file from its start, byte for byte, without waiting
        # for the listing to expire.
        assert path.read_bytes() == new
        assert path.stat().st_size == new_size
        assert [n for n in os.listdir(a.mountpoint)] == ["big.bin"]
    finally:
        os.close(fd)
    assert path.read_bytes() == new


def test_cat_after_replacement_elsewhere_fails_once_then_reads_the_new_file(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    """The issue's case: A read part of the file and closed it. The first open after the
    replacement may serve what was cached and then fails (ESTALE/EIO); the next one works."""
    old, new = _content(3, 12 * MiB), _content(4, 12 * MiB)
    b: MountedFS = mounted_factory(fs_user, name="b")
    (b.mountpoint / "f.bin").write_bytes(old)
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0

    a: MountedFS = mounted_factory(fs_user, "--dir-cache-ttl", "600", name="a")
    path = a.mountpoint / "f.bin"
    with open(path, "rb") as f:
        assert f.read(4096) == old[:4096]  # a prefix: most of the file is not cached

    _replace_from_b(b, "f.bin", new)

    try:
        got = path.read_bytes()
    except OSError as exc:
        assert exc.errno in (errno.ESTALE, errno.EIO), exc
    else:
        assert got == new  # the change was noticed before anything old was served
    assert path.read_bytes() == new
    assert path.read_bytes() == new


def test_replacement_seen_in_a_listing_leaves_open_descriptors_on_their_version(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    """The other way to notice: the folder listing (after --dir-cache-ttl) shows the new
    object. An open descriptor must not then read the new object's bytes after the old ones."""
    old, new = _content(5, 16 * MiB), _content(6, 16 * MiB)
    b: MountedFS = mounted_factory(fs_user, name="b")
    (b.mountpoint / "big.bin").write_bytes(old)
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0

    a: MountedFS = mounted_factory(fs_user, "--dir-cache-ttl", "0.5", name="a")
    path = a.mountpoint / "big.bin"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 64 * 1024, 0) == old[: 64 * 1024]
        _replace_from_b(b, "big.bin", new)
        time.sleep(1.0)  # let A's listing expire (a wait, not a timing assertion)
        assert os.listdir(a.mountpoint) == ["big.bin"]  # A lists again: sees the new object

        with pytest.raises(OSError) as failure:
            os.pread(fd, 64 * 1024, 12 * MiB)  # never the new object's bytes
        assert failure.value.errno in (errno.ESTALE, errno.EIO), failure.value
        assert os.pread(fd, 4096, 0) == old[:4096]
        assert path.read_bytes() == new
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["rename-over", "delete"])
def test_entry_replaced_or_deleted_elsewhere_while_open(
    mounted_factory: Any, fs_user: dict[str, Any], how: str
) -> None:
    """The old entry itself goes: a new file renamed over it (how rsync and rclone replace
    files) or a delete. The open descriptor gets ESTALE; the next open finds what the folder
    holds now (the new file, or ENOENT), without waiting for the listing to expire."""
    old, new = _content(7, 12 * MiB), _content(8, 9 * MiB)
    b: MountedFS = mounted_factory(fs_user, name="b")
    (b.mountpoint / "f.bin").write_bytes(old)
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0

    a: MountedFS = mounted_factory(fs_user, "--dir-cache-ttl", "600", name="a")
    path = a.mountpoint / "f.bin"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 64 * 1024, 0) == old[: 64 * 1024]
        if how == "rename-over":
            (b.mountpoint / "f.bin.tmp").write_bytes(new)
            os.rename(b.mountpoint / "f.bin.tmp", b.mountpoint / "f.bin")
        else:
            os.unlink(b.mountpoint / "f.bin")
        assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0
        b.emulator.wait_for_replicas()  # another client's change, as in _replace_from_b

        with pytest.raises(OSError) as failure:
            os.pread(fd, 64 * 1024, 8 * MiB)
        assert failure.value.errno in (errno.ESTALE, errno.EIO), failure.value
        assert os.pread(fd, 4096, 0) == old[:4096]
        if how == "rename-over":
            assert path.read_bytes() == new
            assert os.listdir(a.mountpoint) == ["f.bin"]
        else:
            with pytest.raises(FileNotFoundError):
                path.read_bytes()
            assert os.listdir(a.mountpoint) == []
    finally:
        os.close(fd)


def test_replacement_with_same_size_and_mtime_is_not_hidden_by_the_page_cache(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    """rsync -a keeps the mtime, and an edit may keep the size: the kernel cannot tell from the
    attributes that the pages it cached are old, so the next open must tell it."""
    old, new = _content(9, 2 * MiB), _content(10, 2 * MiB)
    b: MountedFS = mounted_factory(fs_user, name="b")
    (b.mountpoint / "same.bin").write_bytes(old)
    os.utime(b.mountpoint / "same.bin", ns=(1_700_000_000_000_000_000,) * 2)
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0

    a: MountedFS = mounted_factory(fs_user, "--dir-cache-ttl", "0.5", name="a")
    path = a.mountpoint / "same.bin"
    assert path.read_bytes() == old  # now in the kernel's page cache of the inode

    (b.mountpoint / "same.bin").write_bytes(new)
    os.utime(b.mountpoint / "same.bin", ns=(1_700_000_000_000_000_000,) * 2)
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0
    time.sleep(1.5)  # let A's listing and attributes expire (a wait, not a timing assertion)
    assert os.listdir(a.mountpoint) == ["same.bin"]  # A lists again: sees the new object
    assert path.stat().st_mtime_ns == 1_700_000_000_000_000_000
    assert path.read_bytes() == new
