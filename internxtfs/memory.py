"""Freed buffers are reused by every thread (glibc's malloc; elsewhere nothing changes).

A cold read allocates one buffer per ranged fetch (8 MiB, in the worker thread that receives
and decrypts it) and frees it once the blocks are in the cache file. glibc gives each thread
that allocates its own heap arena (up to 8 per core), and memory freed in one arena is only
reused by allocations in that arena: with a dozen worker threads taking turns, freed buffers
piled up in several arenas at once and the mount's RSS reached 150 MiB during a 512 MiB cold
read that never holds more than ~40 MiB of buffers (bench/RESULTS.md, 2026-12-07). Two arenas
let every thread reuse what the others freed. (Fixing the mmap threshold instead, so that each
buffer is unmapped when freed, kept RSS lowest but cost a page fault per 4 KiB of every
fetch and ~50% more CPU.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def share_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; False where that is not glibc. Call it before
    worker threads start (an arena, once made, stays)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, done)
    return done
