"""Namespace changes made while Internxt cannot be reached (issue 9): journaled, shown, replayed.

While Internxt is known to be unreachable (``Remote.offline()``), or when a call to it fails
for lack of an answer, ``mkdir``, ``rename`` of a stored file or folder and ``rmdir`` of a
stored folder succeed locally. Each is one row of the journal's ``namespace_ops`` table, in the
order made, committed together with the metadata cache's view of the folders it changed, so a
kill -9 or a remount (still offline) shows the tree as it was left. While anything is queued,
every later namespace change is queued behind it too (never sent ahead of an earlier one).

A folder made offline has no uuid yet: it gets a *placeholder* (``offline-<hex>``, which can
never be a uuid: it holds letters past ``f``). Files created in it name the placeholder as their
parent. Nothing ever sends a placeholder to Internxt:

* the folders a queued change touches are *held* (:meth:`PendingNamespace.holds`): their
  listings are never fetched (the local view is the truth until the changes are sent), and
  the uploader defers every upload into a held folder (a create there could meet the name of
  an entry a queued rename has not moved away yet, or a folder not created yet);
* a listing shows the folders made offline (:meth:`folders_in`, merged like unsent files).

The replayer (:meth:`PendingNamespace.run`, a background task of the mount) sends the oldest
change once Internxt answers, removes its row, and goes on; between attempts during an outage
it waits ``retry_interval`` seconds. Each decision rests on the server's answer then:

* ``mkdir``: created in its parent; a folder of that name there already (made elsewhere, or our
  own create whose answer was lost) is adopted, as ``mkdir -p`` would. The parent deleted
  elsewhere: the folder is made in the recovery folder at the root (as files are,
  ``conflicts.RecoveryFolder``). Then the placeholder becomes the uuid everywhere in one
  journal commit (records, queued changes, metadata cache, owners) and in the inode table, and
  the uploads that waited for it start.
* ``move`` (rename of a stored file or folder): sent as the handler would have. The entry gone
  (deleted elsewhere, or our own queued unlink went first): dropped. The name taken there by
  another entry: ours is stored beside it under a marked name ``NAME (internxtfs conflict
  DATE)``, as a conflicting upload is.
* ``rmdir``: our queued unlinks in it go first; then it is deleted only if the server lists it
  empty (another client may have put something in it meanwhile: then it stays, and shows again).
  A folder this mount never listed showed only our own entries offline (a partial view), so
  ``rm -rf`` saw it empty and removed it: what the server holds in it was never shown to the
  user, and is kept the same way (the folder shows again with it; docs/semantics.md).

A change the server refuses for good (4xx other than the cases above) is dropped with a warning:
the entry stays as the server holds it, which the next listing shows. A move refused for
``REFUSAL_PATIENCE`` (404 or 422 while its entry exists) is not undone silently: if its
destination folder was deleted elsewhere, the entry goes to the recovery folder under its new
name, marked (as files do, ``conflicts.RecoveryFolder``); otherwise it keeps its place on the
server and the mount shows it there again at once; a warning and ``status`` say which. A mkdir
refused so is kept and retried (files wait in it): ``status`` shows the error.

Composed of these (fs/namespace.py): a rename over a stored file is an unlink and a move, over
an empty folder an rmdir and a move; an unlink of a file still open is a move aside (its delete
waits for the last close). Online, a rename over a stored entry runs its steps on the server
(fs/replacement.py) once the queue has drained. A symlink made offline is a new file for the
uploader, not a queued change. In a folder never listed, a partial view stands in for its
listing (fs/metadata.py), and what is made there keeps both versions on a taken name.
"""

from __future__ import annotations

import logging
import math
import time
import uuid as uuidlib
from collections import Counter
from dataclasses import replace
from typing import Any

import trio

from internxtfs.fs.conflicts import RECOVERY_FOLDER, marked_name
from internxtfs.fs.inodes import InodeTable
from internxtfs.fs.journal import FileRecord, Journal, NamespaceOp
from internxtfs.fs.remote import Remote
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt import errors as ie
from internxtfs.internxt.retry import interactive

log = logging.getLogger(__name__)

PLACEHOLDER_PREFIX = "offline-"
MKDIR, MOVE, RMDIR = "mkdir", "move", "rmdir"
# How long a queued move keeps being tried while Internxt says its entry or destination is
# not there (404, or 422 "can not be moved"): its read replicas may not show an entry written
# a moment ago, and after a restart this process has no record of that write to tell a lag
# from a refusal. An entry the server itself reports deleted or trashed is dropped at once.
REFUSAL_PATIENCE = 60.0


class _NotYet(ie.InternxtError):
    """A queued change met an answer that replica lag may explain: tried again later."""

    retryable = True


def is_placeholder(uuid: str | None) -> bool:
    """A folder made offline whose mkdir has not been sent yet."""
    return uuid is not None and uuid.startswith(PLACEHOLDER_PREFIX)


def new_placeholder() -> str:
    return PLACEHOLDER_PREFIX + uuidlib.uuid4().hex


def unreachable(exc: BaseException, remote: Remote) -> bool:
    """A handler's call failed because Internxt cannot be reached (the retry policy took it
    for an outage: no answer, not a refusal, not one bad answer among good ones): the change
    is queued instead of failing."""
    return isinstance(exc, ie.InternxtError) and exc.retryable and remote.offline()


def _worth_retrying(exc: ie.InternxtError, remote: Remote) -> bool:
    return exc.retryable or remote.offline()


class PendingNamespace:
    def __init__(
        self,
        journal: Journal,
        remote: Remote,
        table: InodeTable,
        uploader: Uploader,
        *,
        recovery_parent: str | None = None,
        retry_interval: float = 2.0,
    ) -> None:
        self.journal = journal
        self.remote = remote
        # (op seq, what) -> when the replay first met it: a lag-like refusal ("refused") or a
        # move's "name taken" ("taken"). Each is waited out for a bounded time (_waited).
        self._first_met: dict[tuple[int, str], float] = {}
        self.table = table
        self.uploader = uploader
        self.recovery_parent = recovery_parent
        self.retry_interval = retry_interval
        self._ops: list[NamespaceOp] = journal.ops()
        self._held: Counter[str] = Counter()
        self._changed = trio.Event()
        self.last_error: str | None = None
        self._refusal: str | None = None  # set by _refused_for_good for run()
        # The oldest change was refused for good and is kept, retried (a mkdir: files wait in
        # it): what waits behind it cannot be stored until that changes (fsync says so).
        self.refused: ie.InternxtError | None = None
        # Since when (trio time) the oldest change has met only errors worth retrying (5xx,
        # 429, no answer): an fsync waiting behind it gives up after a while (fs/operations.py).
        self.failing_since: float | None = None
        self._recount()
        uploader.deferred = self.defers

    # --- what the rest of the mount asks ---------------------------------------------------

    def queued(self) -> int:
        return len(self._ops)

    def holds(self, folder_uuid: str | None) -> bool:
        """A queued change touches this folder: its listing is ours until they are sent."""
        return folder_uuid is not None and (
            is_placeholder(folder_uuid) or self._held[folder_uuid] > 0
        )

    def defers(self, record: FileRecord) -> bool:
        """The uploader must not publish this file yet (see the module docstring). A pending
        remote delete is by uuid and goes at once."""
        return not record.deleted and self.holds(record.parent_uuid)

    def must_queue(self, *uuids: str | None) -> bool:
        """Queue this change instead of sending it: Internxt is unreachable, an earlier change
        is still queued, or it involves a folder that does not exist remotely yet."""
        return self.remote.offline() or bool(self._ops) or any(map(is_placeholder, uuids))

    def folders_in(self, folder_uuid: str) -> list[tuple[str, str, int]]:
        """Folders made offline that are now in ``folder_uuid``: (placeholder, name, mtime)."""
        made: dict[str, tuple[str, str, int]] = {}
        for op in self._ops:
            if op.op == MKDIR:
                made[op.uuid] = (op.parent_uuid, op.name, op.mtime_ns)
            elif op.op == MOVE and op.uuid in made:
                made[op.uuid] = (op.parent_uuid, op.name, made[op.uuid][2])
            elif op.op == RMDIR:
                made.pop(op.uuid, None)
        return [(u, name, mtime) for u, (p, name, mtime) in made.items() if p == folder_uuid]

    # --- queuing (called by the handlers, inside their journal transaction) -------------------

    def mkdir(self, parent_uuid: str, name: str, mtime_ns: int, *, maybe_sent: bool = False) -> str:
        """Queue a mkdir; ``maybe_sent``: its create was sent and not answered (it may exist)."""
        placeholder = new_placeholder()
        self._add(
            MKDIR, "folder", placeholder, parent_uuid, name, mtime_ns=mtime_ns,
            maybe_sent=maybe_sent,
        )  # fmt: skip
        return placeholder

    def move(self, kind: str, uuid: str, old_parent: str, new_parent: str, name: str) -> None:
        self._add(MOVE, kind, uuid, new_parent, name, old_parent_uuid=old_parent)

    def rmdir(self, uuid: str, parent_uuid: str, name: str) -> None:
        if is_placeholder(uuid) and self._cancel_mkdir(uuid):
            return
        self._add(RMDIR, "folder", uuid, parent_uuid, name)

    def _cancel_mkdir(self, placeholder: str) -> bool:
        """A folder made offline and removed before anything else used it: both go."""
        mine = [op for op in self._ops if placeholder in (op.uuid, op.parent_uuid,
                                                          op.old_parent_uuid)]  # fmt: skip
        if len(mine) != 1 or mine[0].op != MKDIR or mine[0].maybe_sent:
            # A create that may have landed is not cancelled: the replay adopts that folder,
            # then removes it (hostile test: otherwise it stayed on the server for good).
            return False
        if self.journal.records_in(placeholder):
            return False
        self.journal.remove_op(mine[0].seq)
        self._reload()
        return True

    def _add(self, op: str, kind: str, uuid: str, parent: str, name: str, **extra: Any) -> None:
        self.journal.add_op(op, kind, uuid, parent, name, **extra)
        if not self._ops:
            log.warning("Internxt does not take namespace changes now: they are queued and "
                        "sent once it does (internxtfs status shows them)")  # fmt: skip
        self._reload()

    def _reload(self) -> None:
        self._ops = self.journal.ops()
        # An op sent, dropped or cancelled is no longer refused: forget when that began.
        live = {op.seq for op in self._ops}
        self._first_met = {k: t for k, t in self._first_met.items() if k[0] in live}
        self._recount()
        self._changed.set()
        self._changed = trio.Event()

    def _recount(self) -> None:
        held: Counter[str] = Counter()
        for op in self._ops:
            for folder in (op.parent_uuid, op.old_parent_uuid):
                if folder is not None:
                    held[folder] += 1
            if op.kind == "folder":
                held[op.uuid] += 1
        self._held = held

    # --- replay --------------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send the queued changes, oldest first, whenever Internxt answers."""
        task_status.started()
        if self._ops:
            log.info("%d namespace change(s) queued from an earlier run", len(self._ops))
        while True:
            if not self._ops:
                await self._changed.wait()
                continue
            op = self._ops[0]
            try:
                with interactive():
                    await self._replay(op)
            except ie.InternxtError as exc:
                self.last_error = f"{op.op} {op.name!r}: {exc}"
                retrying = _worth_retrying(exc, self.remote)
                if retrying or op.op == MKDIR or isinstance(exc, ie.Conflict):
                    log.debug("cannot send the queued %s of %r yet: %r", op.op, op.name, exc)
                    # A Conflict is a name a replica may still show taken: not a refusal
                    # (a mkdir's is waited out as _NotYet first, then counts as refused).
                    transient = retrying or (isinstance(exc, ie.Conflict) and op.op != MKDIR)
                    self.refused = None if transient else exc
                    # Failing means erring (5xx, no answer). A refusal the replay waits out
                    # (_NotYet: a replica behind; a name still taken, for REFUSAL_PATIENCE or
                    # the replica window) is an answer: an fsync behind it waits, as it does
                    # for the replica window elsewhere. Only _NotYet is bounded so: a raw
                    # Conflict leaves failing_since as it is.
                    if isinstance(exc, _NotYet):
                        self.failing_since = None
                    elif retrying and self.failing_since is None:
                        self.failing_since = trio.current_time()
                    await trio.sleep(self.retry_interval)
                    continue
                log.warning("Internxt refused the queued %s of %r (%s); the entry stays as "
                            "Internxt holds it", op.op, op.name, exc)  # fmt: skip
                self.journal.remove_op(op.seq)
            except Exception as exc:  # a bug or a full disk: kept, tried again later
                self.last_error = f"{op.op} {op.name!r}: {exc!r}"
                self.refused = None
                log.exception("queued %s of %r failed unexpectedly", op.op, op.name)
                await trio.sleep(self.retry_interval * 5)
                continue
            else:
                # A move refused for good keeps its refusal in ``status`` until the next
                # change goes through (_refused_for_good).
                self.last_error, self._refusal = self._refusal, None
            self.refused = self.failing_since = None
            self._reload()
            if not self._ops:
                log.info("queued namespace changes sent")
            self.uploader.wake_deferred()

    async def wait_replayed(self) -> None:
        """Until nothing is queued (``internxtfs flush``)."""
        while self._ops:
            await self._changed.wait()

    async def _replay(self, op: NamespaceOp) -> None:
        if op.op == MKDIR:
            await self._replay_mkdir(op)
        elif op.op == MOVE:
            await self._replay_move(op)
        elif op.op == RMDIR:
            await self._replay_rmdir(op)
        else:
            log.error("unknown queued namespace change %r; dropped", op.op)
            self.journal.remove_op(op.seq)

    async def _make_folder(self, parent: str, name: str, mtime_ns: int) -> str:
        try:
            entry = await self.remote.create_folder(
                parent, name, ctime=mtime_ns / 1e9, mtime=mtime_ns / 1e9
            )
            return str(entry.uuid)
        except ie.Conflict:
            found = [f for f in await self.remote.folders_exist(parent, [name]) if f.name == name]
            if not found:
                raise  # a replica does not show it yet: asked again after a pause
            log.info("folder %r made offline exists remotely already; adopting it", name)
            return str(found[0].uuid)

    async def _replay_mkdir(self, op: NamespaceOp) -> None:
        if not op.maybe_sent:
            # From here on the create may land with its answer lost: an rmdir queued
            # meanwhile must be sent too, never cancel the pair locally (_cancel_mkdir).
            self.journal.mark_op_sent(op.seq)
            self._ops = self.journal.ops()
        try:
            real = await self._make_folder(op.parent_uuid, op.name, op.mtime_ns)
        except ie.Unreachable as exc:
            if not op.maybe_sent and not exc.sent:
                # Refused before anything left (a known outage): still cancellable.
                self.journal.mark_op_sent(op.seq, sent=False)
                self._ops = self.journal.ops()
            raise
        except ie.Conflict as exc:
            # Taken, and no folder of that name shows (_make_folder): a replica behind, for
            # a while; past REFUSAL_PATIENCE a refusal (kept and retried, fsync fails).
            if self._waited(op, "taken") < REFUSAL_PATIENCE:
                raise _NotYet(f"{exc} (no folder shows at {op.name!r})") from exc
            raise
        except ie.NotFound:
            if self.recovery_parent is None:
                raise
            # Its parent was deleted elsewhere meanwhile: what was made in it offline is kept
            # in the recovery folder at the root (as the uploader keeps files).
            recovery = await self._make_folder(self.recovery_parent, RECOVERY_FOLDER, 0)
            name = marked_name(op.name, f"recovered {time.strftime('%Y-%m-%d %H%M%S')}")
            log.warning("the folder holding %r was deleted elsewhere; storing it as /%s/%s",
                        op.name, RECOVERY_FOLDER, name)  # fmt: skip
            real = await self._make_folder(recovery, name, op.mtime_ns)
        with self.journal.transaction():
            self.journal.remove_op(op.seq)
            self.journal.substitute_uuid(op.uuid, real)
        node = self.table.by_uuid(op.uuid)
        if node is not None:
            self.table.set_uuid(node, real)

    async def _replay_move(self, op: NamespaceOp) -> None:
        name = op.name
        settled = False
        for _ in range(3):
            try:
                await self._send_move(op, name)
                break
            except (ie.NotFound, ie.Unprocessable) as exc:
                if await self._gone(op):
                    log.info("%r was deleted before its queued rename was sent (%s); dropped",
                             op.name, exc)  # fmt: skip
                    break
                if self._waited(op, "refused") < REFUSAL_PATIENCE:
                    raise _NotYet(f"{exc} (maybe a replica behind our writes)") from exc
                await self._refused_for_good(op, exc)
                return
            except ie.Conflict as exc:
                if name != op.name:
                    raise  # the marked name is taken too: everything again after a pause
                if (
                    op.kind == "file"
                    and not settled
                    and await self.uploader.settle_deletes_at(op.parent_uuid, name)
                ):
                    settled = True
                    continue  # a file we unlinked held the name: gone now
                if await self._landed_or_held(op, exc):
                    break  # our own move landed (its answer was lost)
                stamp = time.strftime("%Y-%m-%d %H%M%S")
                name = marked_name(op.name, f"internxtfs conflict {stamp}")
                log.warning("%r was taken elsewhere while our rename onto it was queued; ours is "
                            "stored as %r", op.name, name)  # fmt: skip
        else:
            raise ie.Conflict(f"{op.name!r} is still taken; tried again later")
        with self.journal.transaction():
            self.journal.remove_op(op.seq)
            record = self.journal.find_by_remote(op.uuid)
            if record is not None and not record.deleted and name != op.name:
                self.journal.update(record.local_id, name=name)
        if name != op.name:
            node = self.table.by_uuid(op.uuid)
            parent = self.table.by_uuid(op.parent_uuid)
            if node is not None and parent is not None and parent.children is not None:
                self.table.move_child(parent, node.name, parent, name)

    async def _refused_for_good(self, op: NamespaceOp, exc: ie.InternxtError) -> None:
        """A queued move Internxt keeps refusing while the entry exists (module docstring).
        Its destination folder deleted elsewhere: the entry goes to the recovery folder under
        its new name, marked, as a file made in a deleted folder does. Otherwise it keeps its
        place on the server, and the mount shows it there again at once. Either way a
        warning says where it is, and ``status`` keeps the refusal until the next change
        goes through."""
        self._refusal = f"{op.op} {op.name!r}: {exc}"
        place: tuple[str, str] | None = None
        if self.recovery_parent is not None and await self._folder_gone(op.parent_uuid):
            name = marked_name(op.name, f"recovered {time.strftime('%Y-%m-%d %H%M%S')}")
            try:
                recovery = await self._make_folder(self.recovery_parent, RECOVERY_FOLDER, 0)
                await self._send_move(replace(op, parent_uuid=recovery), name)
                place = (recovery, name)
            except ie.RequestRejected as again:
                log.debug("cannot move %r to the recovery folder either: %r", op.name, again)
            if place is not None:
                log.warning("the folder %r was to be moved into was deleted elsewhere; it is "
                            "stored as /%s/%s", op.name, RECOVERY_FOLDER, name)  # fmt: skip
        if place is None:
            place = await self._where(op)
            log.warning("Internxt refuses the queued rename of %r (%s); it keeps its place "
                        "there%s", op.name, exc,
                        "" if place is None else f" (as {place[1]!r})")  # fmt: skip
        with self.journal.transaction():
            self.journal.remove_op(op.seq)
            record = self.journal.find_by_remote(op.uuid)
            if place is not None and record is not None and not record.deleted:
                self.journal.update(record.local_id, parent_uuid=place[0], name=place[1])
        self._show_at(op, place)

    async def _folder_gone(self, uuid: str) -> bool:
        try:
            return (await self.remote.folder_meta(uuid)).status != "EXISTS"
        except ie.NotFound:
            return True

    async def _where(self, op: NamespaceOp) -> tuple[str, str] | None:
        """(folder, name) of the entry on the server now; None if that cannot be read."""
        try:
            if op.kind == "file":
                entry = await self.remote.file_meta(op.uuid)
                return entry.folder_uuid, entry.name
            folder = await self.remote.folder_meta(op.uuid)
        except ie.InternxtError:
            return None
        return (folder.parent_uuid, folder.name) if folder.parent_uuid else None

    def _show_at(self, op: NamespaceOp, place: tuple[str, str] | None) -> None:
        """The mount's view follows the server: the entry leaves the folder the move was
        for and shows at ``place``; both folders are listed again at the next look."""
        node = self.table.by_uuid(op.uuid)
        here = None if node is None else self.table.get(node.parent)
        there = None if place is None else self.table.by_uuid(place[0])
        for folder in (here, there):
            if folder is not None and folder.children is not None:
                folder.listed_at = -math.inf  # stale: listed again at the next look
        if node is None or here is None or place is None or there is None:
            return
        if there.children is not None and place[1] not in there.children:
            self.table.move_child(here, node.name, there, place[1])

    async def _landed_or_held(self, op: NamespaceOp, exc: ie.Conflict) -> bool:
        """The server refused our queued move onto ``op.name`` as taken. True: our own move
        landed (its answer was lost). False: another client's entry holds the name, and has for
        the replicas' window: ours goes beside it. Raises _NotYet while the name may be free by
        the time we ask again: nothing holds it but an entry we deleted, or nothing at all (it
        was freed since the refusal), or the holder was seen only for a moment (a lagging
        replica may still show an entry its client moved or deleted). Deciding on such an
        answer stored ours under a marked name for good (hostile test, conflict rule 7)."""
        if op.kind == "file":
            # The server just said a file holds the name: a replica that shows none has not
            # caught up, and is asked again (fs/remote.py, ``stale``).
            found: list[Any] = await self.remote.files_exist(
                op.parent_uuid, [op.name], stale=lambda entries: not entries
            )
        else:
            found = await self.remote.folders_exist(op.parent_uuid, [op.name])
        if any(str(e.uuid) == op.uuid for e in found):
            return True
        holders = [e for e in found if not self.remote.recently_deleted(str(e.uuid))]
        waited = self._waited(op, "taken")
        if not holders and waited < REFUSAL_PATIENCE:
            raise _NotYet(f"{exc} (no entry shows at {op.name!r}: being freed)") from exc
        # Another client's entry must hold the name for the replicas' window (--replica-window)
        # before ours goes beside it under a marked name (conflict rule 7): a replica behind
        # that client's move or delete still shows the entry it freed a moment ago. The window
        # counts from when these holders were first seen, not from the first refusal: one seen
        # late in a long refusal may be a replica's moment too.
        # All told, bounded: a name held by one new entry after another (another client
        # saving it again and again) is held for good, not a replica's moment.
        seen = "held " + " ".join(sorted(str(e.uuid) for e in holders))
        window = self.remote.replica_window
        if holders and self._waited(op, seen) < window and waited < REFUSAL_PATIENCE + window:
            raise _NotYet(f"{exc} (asked again in case a replica is behind)") from exc
        return False

    def _waited(self, op: NamespaceOp, what: str) -> float:
        """Seconds since the replay of ``op`` first met ``what`` (0 the first time)."""
        now = trio.current_time()
        return now - self._first_met.setdefault((op.seq, what), now)

    async def _gone(self, op: NamespaceOp) -> bool:
        """Whether the server itself reports the moved entry deleted or trashed (a 404 of the
        meta may be a replica that does not show a new entry yet: not gone)."""
        try:
            if op.kind == "file":
                meta: Any = await self.remote.file_meta(op.uuid)
            else:
                meta = await self.remote.folder_meta(op.uuid)
        except ie.NotFound:
            return False
        return getattr(meta, "status", "EXISTS") != "EXISTS"

    async def _send_move(self, op: NamespaceOp, name: str) -> None:
        if op.kind == "file":
            await self.remote.move_file(op.uuid, op.parent_uuid, name)
        elif op.old_parent_uuid == op.parent_uuid:
            await self.remote.rename_folder(op.uuid, name)
        else:
            await self.remote.move_folder(op.uuid, op.parent_uuid, name)

    async def _replay_rmdir(self, op: NamespaceOp) -> None:
        await self.uploader.wait_deletes_in(op.uuid)
        try:
            folders = await self.remote.list_folders(op.uuid)
            files = await self.remote.list_files(op.uuid)
        except ie.NotFound:
            folders, files = [], []
        # A replica may still list what we moved or deleted a moment ago.
        left = [
            e
            for e in [*folders, *files]
            if not self.remote.recently_deleted(str(e.uuid))
            and not self.remote.recently_written(str(e.uuid))
        ]
        if left:
            # Made elsewhere meanwhile, or there all along in a folder this mount never listed
            # (its rm -rf saw it empty): never shown to the user, so never theirs to remove.
            log.warning("folder %r removed offline holds %d entries on Internxt that this "
                        "mount did not show; it is kept with them", op.name, len(left))  # fmt: skip
        else:
            await self.remote.delete("folder", op.uuid, name=op.name)
        self.journal.remove_op(op.seq)

    def stats(self) -> dict[str, Any]:
        return {"namespace_queued": len(self._ops), "namespace_error": self.last_error}
