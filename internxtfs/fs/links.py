"""Symbolic links, stored the way rclone's ``--links`` stores them.

Internxt has no link type. rclone's local backend with ``-l``/``--links`` turns a symlink
``NAME`` into a regular remote file ``NAME.rclonelink`` whose content is the link target, byte
for byte, and turns such a file back into a symlink when copying to a local disk (rclone
``backend/local/local.go``: ``linkSuffix``, ``translateLink``, ``List``). The mount uses the same
representation, so a tree copied by ``rclone copy -l`` and one written through the mount are
the same thing on the server.

Names: in the mount a link is shown without the suffix. A remote file ``x.rclonelink`` whose
short name ``x`` is taken by a folder or a regular file in the same folder is shown as the
regular file ``x.rclonelink`` (nothing is hidden; the user can rename one of them). With links
on, the mount refuses to create or rename a regular file to a name ending in the suffix
(EINVAL): it would turn into a link at the next listing.
"""

from __future__ import annotations

import errno

import pyfuse3

from internxtfs.fs import names

LINK_SUFFIX = ".rclonelink"
# Linux's limit on a symlink target (PATH_MAX including the terminating NUL).
MAX_TARGET = 4095


def remote_name(name: str, is_link: bool) -> str:
    """The name of the remote file holding the entry shown as ``name``."""
    return name + LINK_SUFFIX if is_link else name


def link_name(remote: str) -> str | None:
    """The name shown for a remote file holding a link, or None for a regular file."""
    if remote.endswith(LINK_SUFFIX) and len(remote) > len(LINK_SUFFIX):
        return remote[: -len(LINK_SUFFIX)]
    return None


def check_regular_name(name: str) -> None:
    """A regular file may not take a link's remote name (it would read back as a link)."""
    if link_name(name) is not None:
        raise pyfuse3.FUSEError(errno.EINVAL)


def check_link(name: str, target: bytes) -> str:
    """Validate a new link; returns the remote name to store it under."""
    if not target:
        raise pyfuse3.FUSEError(errno.ENOENT)  # as symlink(2) with an empty target
    if len(target) > MAX_TARGET:
        raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
    remote = remote_name(name, True)
    if len(names.encode(remote)) > names.NAME_MAX:
        raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
    names.check_file_name(remote)
    return remote
