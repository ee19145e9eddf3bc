"""File names: kernel bytes ⇄ Internxt's Unicode names, and the names Internxt refuses.

Internxt stores names as JSON strings (Unicode) split into ``plainName`` + ``type`` (see
``internxt.drive.split_name``). A name that is not valid UTF-8 cannot be stored, so it is refused
with EINVAL rather than silently mangled; so are folder names the server rejects (blank, or
containing a backslash). Longer than 255 bytes gives ENAMETOOLONG, as on local filesystems.
"""

from __future__ import annotations

import errno
import logging

import pyfuse3

from internxtfs.internxt.names import name_problem

log = logging.getLogger(__name__)

NAME_MAX = 255


def decode(raw: bytes) -> str:
    if len(raw) > NAME_MAX:
        raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("refusing a name that is not valid UTF-8: %r", raw)
        raise pyfuse3.FUSEError(errno.EINVAL) from None


def encode(name: str) -> bytes:
    return name.encode("utf-8")


def _check(name: str, *, folder: bool) -> None:
    problem = name_problem(name, folder=folder)
    if problem is not None:
        log.warning("refusing name %r: %s", name, problem)
        raise pyfuse3.FUSEError(errno.EINVAL)


def check_file_name(name: str) -> None:
    _check(name, folder=False)


def check_folder_name(name: str) -> None:
    _check(name, folder=True)
