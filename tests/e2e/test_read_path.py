"""The cold read path through a real mount: kernel read-ahead, and every byte of a file that
spans several read-ahead fetches read back from the server, sequentially and at odd offsets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from internxtfs.kernel_readahead import READ_AHEAD_KIB, sysfs_path
from tests.harness.mounting import MountedFS

MiB = 1024 * 1024


def test_mount_raises_the_kernel_read_ahead(mounted: MountedFS) -> None:
    """At the default 128 KiB the kernel sends sequential reads as 128 KiB requests, one at
    a time; the mount (root here, as in CI) raises its own device's read-ahead."""
    dev = os.stat(mounted.mountpoint).st_dev
    assert int(Path(sysfs_path(dev)).read_text()) >= READ_AHEAD_KIB


def test_cold_read_of_a_file_spanning_many_fetches(mounted_factory: Any) -> None:
    m: MountedFS = mounted_factory()
    # 41 MiB + a ragged tail: more than the read-ahead window, several fetches in flight.
    data = os.urandom(41 * MiB + 12345)
    (m.mountpoint / "big.bin").write_bytes(data)
    m.remount(cold=True)  # unmount uploads; an empty cache: every byte from the server

    got = bytearray()
    with (m.mountpoint / "big.bin").open("rb", buffering=0) as f:
        while chunk := f.read(MiB):
            got += chunk
    assert bytes(got) == data

    m.remount(cold=True)
    fd = os.open(m.mountpoint / "big.bin", os.O_RDONLY)
    try:
        # Unaligned to the cipher's 16-byte blocks and to the cache's blocks, out of order.
        for offset, length in [(3 * MiB - 7, 2 * MiB + 29), (17, 100), (40 * MiB + 1, 2 * MiB)]:
            assert os.pread(fd, length, offset) == data[offset : offset + length]
    finally:
        os.close(fd)
