"""The kernel's read-ahead for our mount: 4 MiB instead of 128 KiB, where we may set it.

A FUSE mount gets the kernel's default read-ahead of 128 KiB (``read_ahead_kb`` of its
backing device info), and the daemon cannot ask for more in its INIT reply: the kernel takes
the smaller of the two. So a sequential read reaches the daemon as 128 KiB requests, one at a
time, each a trip through the kernel and pyfuse3's request loop on the trio thread. With more
read-ahead the kernel sends requests of up to 1 MiB (our ``max_pages``) and several of them
ahead of the reader, so the trio thread finds the next request waiting instead of being woken
for each. On a busy 2-core machine, cold reads with 4 MiB ran at a median 250 MiB/s against 163
with 1 MiB, interleaved in one run (bench/RESULTS.md, 2026-12-07). The setting lives in
sysfs, which only root may write; other users keep the default (logged at debug level, with
the command an administrator could run).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

READ_AHEAD_KIB = 4096


def sysfs_path(dev: int) -> str:
    return f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"


def raise_read_ahead(dev: int, kib: int = READ_AHEAD_KIB) -> bool:
    """Set the mount's read-ahead (``dev``: its ``st_dev``) to at least ``kib``; True when it
    is (already or now). Best effort: a failure only leaves the kernel's default."""
    path = sysfs_path(dev)
    try:
        with open(path) as f:
            if int(f.read().strip()) >= kib:
                return True
        with open(path, "w") as f:
            f.write(f"{kib}\n")
    except (OSError, ValueError) as exc:
        log.debug(
            "kernel read-ahead of the mount left at its default (%s); as root: echo %d > %s",
            exc,
            kib,
            path,
        )
        return False
    log.debug("kernel read-ahead of the mount set to %d KiB (%s)", kib, path)
    return True
