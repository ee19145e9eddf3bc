"""The one place where failures become errno values for the kernel.

pyfuse3 ends the whole mount on any exception from a handler that is not ``FUSEError``, so every
handler is wrapped by :func:`fuse_handler`: a known error becomes its errno, anything else EIO
plus a log line with the traceback. Nothing escapes.
"""

from __future__ import annotations

import errno
import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import pyfuse3
import trio

from internxtfs.internxt import errors as ie
from internxtfs.internxt.retry import interactive

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Narrowest class first: the first isinstance match wins.
_ERRNO: list[tuple[type[BaseException], int]] = [
    (ie.NotFound, errno.ENOENT),
    (ie.Conflict, errno.EEXIST),
    (ie.InvalidName, errno.EINVAL),
    (ie.QuotaExceeded, errno.ENOSPC),
    (ie.FileTooLarge, errno.EFBIG),
    (ie.EmptyFilesLimit, errno.EDQUOT),
    (ie.Forbidden, errno.EACCES),
    (ie.AuthError, errno.EACCES),
    (ie.Unreachable, errno.EIO),
    (ie.ServerError, errno.EIO),
    (ie.IntegrityError, errno.EIO),
    (ie.RequestRejected, errno.EINVAL),
    (ie.InternxtError, errno.EIO),
]


def _disk_full(exc: BaseException) -> bool:
    """The journal's SQLite could not write: the disk under the cache is full."""
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def to_errno(exc: BaseException) -> int:
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    if _disk_full(exc):
        return errno.ENOSPC
    for cls, code in _ERRNO:
        if isinstance(exc, cls):
            return code
    return errno.EIO


def fuse_handler(
    fn: Callable[_P, Awaitable[_T]],
) -> Callable[_P, Awaitable[_T]]:
    """Turn every exception of a handler into FUSEError (logging what was unexpected).

    A process waits on every handler: the protocol calls it makes are interactive (a short
    retry budget, one attempt while Internxt is unreachable: internxt/retry.py)."""

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            with interactive():
                return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except trio.Cancelled:
            raise
        except (ie.InternxtError, OSError) as exc:
            code = to_errno(exc)
            log.warning("%s failed: %s (%s)", fn.__name__, exc, errno.errorcode.get(code, code))
            raise pyfuse3.FUSEError(code) from exc
        except Exception as exc:
            if _disk_full(exc):  # expected when the cache disk fills up: no traceback
                log.warning("%s failed: the cache disk is full (%s)", fn.__name__, exc)
            else:
                log.exception("%s failed unexpectedly", fn.__name__)
            raise pyfuse3.FUSEError(to_errno(exc)) from exc

    return wrapper
