"""The mount's policy switches, as enums (their meaning: README.md and docs/semantics.md).

StrEnums: each member is its command-line spelling, so ``--delete-mode trash`` parses with
``DeleteMode("trash")`` and the CLI offers exactly the members as choices.
"""

from __future__ import annotations

from enum import StrEnum


class DeleteMode(StrEnum):
    """What a delete does on Internxt (``--delete-mode``): applied by ``Remote.delete``."""

    PERMANENT = "permanent"  # gone for good: the space is freed (restic forget --prune)
    TRASH = "trash"  # to Internxt's trash, restorable from the web app; still counts


class FsyncMode(StrEnum):
    """When ``fsync()`` returns (``--fsync``)."""

    REMOTE = "remote"  # once the file is stored on Internxt
    LOCAL = "local"  # once it is durable in the local cache (S3QL's meaning); uploaded later


class OfflineFsync(StrEnum):
    """What ``--fsync remote`` does while Internxt is known to be unreachable
    (``--fsync-offline``): "stored on Internxt" cannot be true then."""

    LOCAL = "local"  # durable in the cache and journal, returns 0; uploaded once it answers
    EIO = "eio"  # fails with EIO (the data is kept in the cache all the same)
