"""A file's lifecycle: the states a journal record goes through, and every change between them.

A record (fs/journal.py ``FileRecord``) stores its state in a few columns: ``deleted``
(unlinked here), ``held`` (unlinked while open), ``dirty`` (content not uploaded),
``remote_uuid`` (its drive entry) and ``pending_file_id`` (a publish on its way).
:func:`state_of` is the one place that reads them together; the questions the rest of the code
asks ("is a remote delete pending?", "does it hold unsent content?") are the predicates below,
and the changes of the unlink side go through the transition functions below. The publish
side is the uploader's (fs/uploader.py): it journals ``pending_file_id`` before it sends a
create/replace and stores the entry and ``dirty=False`` in one transaction after.

Transitions::

    NEW, DIRTY --upload, create/replace sent--> PUBLISHING
    PUBLISHING --committed--> CLEAN (DIRTY if written meanwhile)
    PUBLISHING --failed or cut short--> NEW / DIRTY (its object becomes an orphan)
    CLEAN --write, truncate, new mtime--> DIRTY
    DIRTY --entry deleted elsewhere, emptied, kept as a conflict copy--> NEW
    linked --unlink, nothing remote--> UNLINKED --last close, forget, next mount--> dropped
    linked --unlink of a stored file--> DELETE_PENDING --delete sent--> dropped
    linked --unlink while open--> HELD --last close, next mount--> DELETE_PENDING
    HELD --entry already gone--> UNLINKED;  HELD --move aside failed--> linked as before

Invariant: ``pending_file_id`` is set only while the record is dirty (the publish clears it
in the transaction that marks the file clean), and ``held`` only while it is deleted with a
``remote_uuid``.

Where offline namespace operations (issue 9) add states, they go here: a file whose create
or rename is journaled as an intent is still one of these states; the intent is a row of its
own (as a rename over is, fs/replacement.py), not a combination of record columns.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # journal.py imports this module
    from internxtfs.fs.journal import FileRecord, Journal


class FileState(Enum):
    # Linked (the file has a name in the mount):
    NEW = "new"  # content to upload, no drive entry yet (never published, or its entry went)
    DIRTY = "dirty"  # a drive entry, and local changes to upload to it
    PUBLISHING = "publishing"  # uploaded; a create/replace pointing at the object is on its way
    # Nothing to send: the drive entry holds the content (a record with neither content to
    # send nor an entry, which only a moment inside one call has, counts here too).
    CLEAN = "clean"
    # Unlinked here:
    HELD = "held"  # unlinked while open: its entry moved aside, deleted at the last close
    DELETE_PENDING = "delete-pending"  # the entry's delete is to be sent, then the record goes
    UNLINKED = "unlinked"  # nothing to send; kept for its open descriptors until the last close


UNSENT = frozenset({FileState.NEW, FileState.DIRTY, FileState.PUBLISHING})
REMOTE_DELETE = frozenset({FileState.HELD, FileState.DELETE_PENDING})
GONE = frozenset({FileState.UNLINKED, FileState.HELD, FileState.DELETE_PENDING})


def state_of(record: FileRecord) -> FileState:
    if record.deleted:
        if record.remote_uuid is None:
            return FileState.UNLINKED
        return FileState.HELD if record.held else FileState.DELETE_PENDING
    if not record.dirty:
        return FileState.CLEAN
    if record.pending_file_id is not None:
        return FileState.PUBLISHING
    return FileState.NEW if record.remote_uuid is None else FileState.DIRTY


def has_unsent_content(record: FileRecord) -> bool:
    """Linked, with content or an mtime the drive entry does not hold yet."""
    return state_of(record) in UNSENT


def is_unlinked(record: FileRecord) -> bool:
    """Unlinked here: never published again, whatever its remote side still needs."""
    return state_of(record) in GONE


def remote_delete_pending(record: FileRecord) -> bool:
    """Unlinked here while its drive entry still exists: its delete is to be sent (now, or
    at the last close of a held file). Listings hide the entry meanwhile."""
    return state_of(record) in REMOTE_DELETE


def awaits_create(record: FileRecord) -> bool:
    """Linked, with content to upload and no drive entry: the next publish creates one."""
    return record.remote_uuid is None and has_unsent_content(record)


def cut_short(record: FileRecord) -> bool:
    """Linked, empty, clean and without an entry: nothing to send and nothing stored, a
    state only a moment inside one call has (a symlink made offline before its target is
    written, fs/namespace.py). Found at start, it is what a crash left of that call."""
    return state_of(record) is FileState.CLEAN and record.remote_uuid is None and record.size == 0


# --- transitions of the unlink side (each one journal update: atomic) ----------------------------


def unlink_stored(journal: Journal, local_id: int, remote_uuid: str, remote_name: str) -> None:
    """-> DELETE_PENDING: unlink of a stored file nobody holds open. The delete is aimed at
    ``remote_uuid`` and recorded under the entry's remote name (what a create or move onto
    the name meets, Uploader.settle_deletes_at)."""
    journal.update(local_id, deleted=True, held=False, remote_uuid=remote_uuid, name=remote_name)


def unlink_local(journal: Journal, local_id: int) -> None:
    """-> UNLINKED: nothing remote left to do for this record (never uploaded, replaced by a
    rename, or a version another client replaced); its data stays readable until the last
    close."""
    journal.update(local_id, deleted=True, held=False, remote_uuid=None)


def hold(journal: Journal, local_id: int, aside: str) -> None:
    """-> HELD: unlinked while open; its entry is (being) moved aside to ``aside``."""
    journal.update(local_id, deleted=True, held=True, name=aside)


def hold_failed(journal: Journal, local_id: int, name: str) -> None:
    """HELD -> linked as before: the move aside failed, the file keeps its name."""
    journal.update(local_id, deleted=False, held=False, name=name)


def held_entry_gone(journal: Journal, local_id: int) -> None:
    """HELD -> UNLINKED: the entry was deleted elsewhere already; only local data is left."""
    journal.update(local_id, held=False, remote_uuid=None)


def release_held(journal: Journal, record: FileRecord) -> None:
    """HELD -> DELETE_PENDING: no descriptor reaches it any more (its last close, or a new
    run of the mount, since none survives a restart)."""
    if record.held:
        journal.update(record.local_id, held=False)
