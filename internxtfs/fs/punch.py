"""Free a byte range of a file without changing its size: fallocate(PUNCH_HOLE | KEEP_SIZE).

Python's os module has no fallocate with modes, so it goes through libc with ctypes. Where the
file system does not support hole punching, zeros are written instead (the block cache counts
usage in present blocks, so its bound still holds; only disk space is not returned), and that
is logged once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os

log = logging.getLogger(__name__)

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_fallocate = getattr(_libc, "fallocate64", None) or getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int

_unsupported_logged = False


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate ``[offset, offset+length)``; reads of it return zeros. False if unsupported."""
    global _unsupported_logged
    if length <= 0:
        return True
    if _fallocate is not None:
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        if _fallocate(fd, mode, offset, length) == 0:
            return True
        err = ctypes.get_errno()
        if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(err, os.strerror(err))
    if not _unsupported_logged:
        _unsupported_logged = True
        log.warning("this file system cannot punch holes; evicted blocks keep their disk space")
    # The block cache relies on ranges it does not list as present reading as zeros (a
    # partial write into such a block keeps the rest of it), so write the zeros instead.
    os.pwrite(fd, bytes(length), offset)
    return False
