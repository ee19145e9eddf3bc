"""The conflict policy: what the mount does when Internxt and this mount disagree about a name
or about a file's content. Every such decision is made here; the callers (the uploader's
publish, the handlers' rename, the mount wiring, the rename settling) only ask.

Principles (docs/semantics.md, "Conflicts", says the same to users):

1. No version is lost. What this mount wrote is stored under some name, and so is what another
   client stored; when both cannot keep a name, both are kept. A delete of ours that goes out
   later than the user's call (queued offline, held across a crash or until a last close,
   retried, queued behind others, a rename over's target) first checks that the entry still
   holds the content this mount knew; a version another client stored in place meanwhile is
   kept instead (:func:`changed_since_known`, :func:`keep_instead_of_deleting`).
2. A file another client changed (or deleted) while this mount held unsent changes to it: the
   other version keeps the name, ours is stored beside it as
   ``NAME (internxtfs conflict YYYY-MM-DD HHMMSS).EXT`` (:func:`keep_both_if_changed`). Deleted
   elsewhere: ours is stored again under its name.
3. A name taken by a file this mount did not know of (its listing was older, or our own create
   landed before a crash): the file last written here wins, as on a local disk. A new file
   stored under that name replaces that file's content, as ``open(O_CREAT|O_TRUNC)`` would
   (:class:`AdoptExisting`); a rename onto it replaces it, as rename(2) would
   (:func:`rename_target`). A folder, or an entry this mount knows, is never replaced on such
   an answer: EEXIST. Except where this mount could not know what the folder holds (a file
   created in a folder never listed, during an outage, or in a folder made offline that
   turned out to exist: the record is ``blind``): then both are kept, ours under a marked
   name, as in principle 2 (:class:`AdoptExisting`).
4. Our own pending delete never takes our own new content along: when the entry we are
   deleting still holds the name, its delete is sent first and the entry is never adopted
   (``Uploader.settle_deletes_at``, asked by the uploader's create and by the handlers' move
   and symlink before this policy; :class:`AdoptExisting` refuses such an entry).
5. A folder deleted elsewhere while it held unsent files: they are stored in
   ``/internxtfs-recovered/`` as ``NAME (recovered N).EXT``, never failing forever out of sight
   (:class:`RecoveryFolder`); so is an entry whose queued move into it Internxt refuses
   (fs/pending.py, ``_refused_for_good``).
6. A rename over an entry, settled after an outage, whose name someone else took meanwhile:
   the old entry is kept beside it as ``NAME (internxtfs restored).EXT`` (fs/replacement.py,
   :data:`RESTORED`).
7. No decision on an answer that read-replica lag can explain: the reads that decide pass
   ``stale`` and are asked again for up to ``--replica-window`` seconds (fs/remote.py,
   internxt/consistency.py).
8. A mark goes before the extension, so the file still opens with the same program
   (:func:`marked_name`).
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import pyfuse3
import trio

from internxtfs.fs import lifecycle
from internxtfs.fs.journal import UNCERTAIN, FileRecord, Journal
from internxtfs.fs.remote import Remote
from internxtfs.internxt.errors import Conflict, NotFound

if TYPE_CHECKING:
    from internxtfs.internxt.drive import FileEntry

log = logging.getLogger(__name__)

RECOVERY_FOLDER = "internxtfs-recovered"  # at the root: files whose folder vanished elsewhere
RESTORED = "internxtfs restored"  # the mark of an entry a settled rename over kept beside
# A delete whose first attempt starts within this many seconds of the user's call goes
# unchecked (rule 1), and is given as long to land: a version stored before the call is the
# one the user deleted, as on a local disk. Later, the check costs one GET
# /files/{uuid}/meta (docs/semantics.md, "Deletes that go out late").
DELETE_UNCHECKED_FOR = 5.0


def marked_name(name: str, mark: str) -> str:
    """``a.tar.gz`` -> ``a.tar (MARK).gz``: the mark goes before the extension, so the file
    still opens with the same program."""
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or a leading dot only)
        stem, dot, ext = name, "", ""
    return f"{stem} ({mark}){dot}{ext}"


def conflict_copy_name(name: str, attempt: int = 0) -> str:
    """Where our version of a file changed elsewhere is stored (principle 2); ``attempt`` > 0
    for another name when that one is taken (two in the same second)."""
    mark = f"internxtfs conflict {time.strftime('%Y-%m-%d %H%M%S')}"
    return marked_name(name, f"{mark} {attempt + 1}" if attempt else mark)


# --- principle 1 before a delete: the content this mount knew an entry by ---------------------

# content id (None: an empty file's) -> size (None: not known)
KnownContent = Mapping[str | None, int | None]


def known_content(journal: Journal, record: FileRecord) -> dict[str | None, int | None]:
    """What the record's entry may hold as far as this mount knows: the content it last
    stored or saw there, and the objects of its own publishes whose outcome is unknown (a
    replace that may have landed: ours too, never another client's)."""
    known: dict[str | None, int | None] = {record.remote_file_id: record.remote_size}
    for file_id in (record.pending_file_id,):
        if file_id is not None:
            known.setdefault(file_id, None)
    for o in journal.orphan_rows():
        if o.local_id == record.local_id and o.reason == UNCERTAIN:
            known.setdefault(o.file_id, None)
    return known


def dump_known(known: KnownContent | None) -> str | None:
    """The journal's form of :data:`KnownContent` (a rename over's row)."""
    return None if known is None else json.dumps([[k, v] for k, v in known.items()])


def load_known(text: str | None) -> dict[str | None, int | None] | None:
    return None if text is None else {k: v for k, v in json.loads(text)}


def _changed(known: KnownContent, entry: FileEntry) -> bool:
    if entry.status != "EXISTS":
        return False  # trashed or deleted elsewhere: nothing of theirs for the delete to take
    if entry.file_id not in known:
        return True
    size = known[entry.file_id]
    # Same id, other size: Internxt's replace to empty keeps the old fileId with size 0
    # (docs/protocol.md, "Replace to empty"), so only the size tells that change.
    return size is not None and entry.size != size


async def changed_since_known(remote: Remote, uuid: str, known: KnownContent) -> FileEntry | None:
    """Principle 1, before a delete of ours aimed at file ``uuid``: the entry as another
    client left it when it stored a new version in place (``PUT /files/{uuid}`` gives the
    entry a new fileId) since this mount last knew its content, ``known``; None when the
    delete may go (the same content, or the entry is gone or trashed already)."""
    try:
        # A replica behind the primary answers with an older state of the entry. Behind
        # another client's replace, that is the content we know, and the delete goes as it did
        # before this check: the window left is the replica lag (well under a second; the
        # same "Known limit" as docs/protocol.md, "Read replicas"), and a stale answer never
        # keeps a file the user deleted. Behind a replace of our own (published a moment
        # before the unlink), it names content we no longer list as ours: such an answer is
        # asked again while our writes' lag window can explain it (``stale``).
        entry = await remote.file_meta(uuid, stale=lambda e: _changed(known, e))
    except NotFound:
        return None
    return entry if _changed(known, entry) else None


async def keep_instead_of_deleting(
    remote: Remote, entry: FileEntry, *, name: str, move: bool
) -> str:
    """Principle 1: ``entry`` holds a version another client stored in place after this
    mount deleted (or replaced) the file: it is not deleted. ``move`` False: it stays where
    it is (its name is free here, and it shows again at the folder's next listing). True
    (the name is ours now, or the entry is aside under a hidden name): it is moved to a
    conflict-named copy of ``name`` in its folder. Returns the name it is kept under."""
    kept = entry.name
    if move:
        for attempt in range(5):
            kept = conflict_copy_name(name, attempt)
            try:
                await remote.move_file(entry.uuid, entry.folder_uuid, kept)
                break
            except Conflict:
                if attempt == 4:
                    raise
    log.warning(
        "%r was changed elsewhere after it was deleted or replaced here: not deleted; "
        "the other version is kept as %r",
        name,
        kept,
    )
    return kept


# The uploader's hook for a create that met Conflict: the uuid of an entry to give our content,
# None to create again with the record as the hook left it, or raise (the default).
ConflictHook = Callable[[FileRecord, Conflict], Awaitable[str | None]]


async def raise_conflict(record: FileRecord, error: Conflict) -> str | None:
    raise error


class AdoptExisting:
    """The mount's :data:`ConflictHook` (principle 3): a file we never saw holds the name we
    are publishing; its entry gets our content, unless it is our own pending delete."""

    def __init__(self, remote: Remote, journal: Journal) -> None:
        self.remote = remote
        self.journal = journal

    async def __call__(self, record: FileRecord, error: Conflict) -> str | None:
        # (An empty answer may be a read replica behind that create: asked again.)
        found = await self.remote.files_exist(
            record.parent_uuid, [record.name], stale=lambda found: not found
        )
        for entry in found:
            if entry.name != record.name:
                continue
            known = self.journal.find_by_remote(entry.uuid)
            if known is not None and lifecycle.remote_delete_pending(known):
                # Our own pending delete of that entry (unlinked here, the delete not sent
                # yet): given our content, it would be deleted with it. Retried once the
                # delete has freed the name.
                raise error
            if record.blind:
                # Created without knowing the folder's content (an outage, a folder never
                # listed): that file is no older version of ours, so both are kept.
                kept = conflict_copy_name(record.name)
                log.warning("%r, created while the content of its folder was unknown, exists "
                            "remotely already: keeping both; ours is stored as %r", record.name,
                            kept)  # fmt: skip
                self.journal.update(record.local_id, name=kept)
                return None
            log.info("%r exists remotely; replacing its content", record.name)
            return str(entry.uuid)
        return None


async def keep_both_if_changed(
    remote: Remote, journal: Journal, local_id: int, record: FileRecord
) -> FileRecord:
    """Before our content replaces the file's entry (principle 2): if another client changed
    the file since our local changes began, theirs keeps the name and ours is published beside
    it under a marked name; deleted elsewhere, ours is created again. Returns the record as
    the publish should go on with it (``remote_uuid`` None: create)."""
    assert record.remote_uuid is not None
    # Our base content, or the object of our own publish cut short by a crash (resume()
    # moved that pending object to the 'uncertain' orphans: the replace may have landed).
    ours = {record.remote_file_id, record.pending_file_id}
    ours |= {
        o.file_id for o in journal.orphan_rows() if o.local_id == local_id and o.reason == UNCERTAIN
    }
    try:
        # Another object than ours may be a read replica that has not seen our last
        # replace yet: that answer is asked again until it holds past the lag window.
        entry = await remote.file_meta(
            record.remote_uuid, stale=lambda e: e.status != "EXISTS" or e.file_id not in ours
        )
    except NotFound:
        return record  # the replace finds it gone too and creates it again
    if entry.status != "EXISTS":
        log.warning("%r was deleted elsewhere; storing our version again", record.name)
        return journal.update(local_id, remote_uuid=None)
    if entry.file_id in ours:
        return record
    kept = conflict_copy_name(record.name)
    log.warning(
        "%r changed elsewhere while it had unsent local changes: keeping both; the other "
        "version keeps the name, ours is stored as %r",
        record.name,
        kept,
    )
    return journal.update(local_id, remote_uuid=None, name=kept)


async def rename_target(
    remote: Remote,
    parent_uuid: str,
    name: str,
    source_uuid: str | None,
    known: Callable[[str], bool],
) -> str | None:
    """A move of ``source_uuid`` onto ``parent_uuid``/``name`` met Conflict (principle 3).
    Returns None when the move is in fact done (the entry there is our own: an earlier
    attempt landed), or the uuid of the file there that this mount does not know (``known``
    says which it does): another client created it after our listing, and the rename may
    replace it. A folder there, or an entry this mount knows: EEXIST."""
    found = await remote.files_exist(parent_uuid, [name])
    if any(entry.uuid == source_uuid for entry in found):
        return None
    if not found:
        raise pyfuse3.FUSEError(errno.EEXIST)  # a folder holds the name
    for entry in found:
        if known(entry.uuid):
            raise pyfuse3.FUSEError(errno.EEXIST)  # known here: not ours to delete blindly
    log.info("%r appeared remotely after our listing; the rename replaces it", name)
    return str(found[0].uuid)


class RecoveryFolder:
    """Principle 5: where files go whose folder was deleted elsewhere while they had unsent
    content. The folder is made once (at the root, ``parent``) and found again if it exists."""

    def __init__(self, remote: Remote, journal: Journal, parent: str) -> None:
        self.remote = remote
        self.journal = journal
        self.parent = parent
        self._uuid: str | None = None
        self._lock = trio.Lock()  # one create of the folder, not one per upload

    async def rehome(self, record: FileRecord) -> FileRecord:
        """The record's folder is gone: the record now points into the recovery folder, under
        a name of its own so two recovered files never take each other's place."""
        if record.parent_uuid == self._uuid:
            self._uuid = None  # the recovery folder itself was deleted
        async with self._lock:
            if self._uuid is None:
                try:
                    folder = await self.remote.create_folder(self.parent, RECOVERY_FOLDER)
                except Conflict:
                    found = await self.remote.folders_exist(self.parent, [RECOVERY_FOLDER])
                    if not found:
                        raise
                    folder = found[0]
                self._uuid = folder.uuid
        name = marked_name(record.name, f"recovered {record.local_id}")
        log.warning(
            "the folder of %r was deleted elsewhere while it had unsent changes; storing it as "
            "/%s/%s instead",
            record.name,
            RECOVERY_FOLDER,
            name,
        )
        return self.journal.update(record.local_id, parent_uuid=self._uuid, name=name)
