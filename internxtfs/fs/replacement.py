"""rename(2) over an existing entry, in steps that never leave the name with nothing behind it.

Internxt refuses to move an entry onto a name that is taken, so a rename over an existing file
(or an empty folder) takes several requests. Deleting the target first and then moving the
source lost the target for good whenever the move failed (an outage, a run of 5xx). rename(2)
promises the target is either the old entry or the new one, never nothing, so instead:

1. a journal row (state ``aside``) records the rename, then the target is moved to a hidden
   name in its own folder (:func:`aside_name`); the name is now free;
2. the caller moves the source onto the name;
3. the row becomes ``replaced`` and the target is deleted (``--delete-mode`` applies) in the
   background; the row carries that pending delete across a crash. A delete that goes out
   late (after a crash, a failure, or more than a few seconds after the rename) first checks
   the target's content against what the row says this mount knew: a version another client
   stored in place meanwhile is kept as a conflict-named copy instead (fs/conflicts.py, rule 1).

A failure at step 1 or 2 puts the target back (moves it to its name again) before the error
reaches the caller (except when step 1 was sent without an answer while Internxt cannot be
reached, a hanging server which may still carry it out: :class:`Undecided`, and the caller
queues the rename instead, fs/namespace.py). When even that fails (the server is down), the row
stays ``aside`` and :meth:`Replacements.resolve` finishes the job later (the background task
retries it, and every start runs it). It decides from the server, not from memory, what the
rename did: the source found on the name means the rename landed (delete the target); anything
else means it did not (move the target back). Meanwhile listings show an ``aside`` target under
its own name (:meth:`Replacements.shown_as`), so it never vanishes from the mount.

A row is only ever worked on under its target's lock (``_targets``): the live rename holds it
from start to end, and the background task takes it per row and reads the row again once it
has it. Without that, a pass that had read a row before a second rename over the same name
took it over went on to settle the first rename's row after the second had landed: it found
the name taken and kept the replaced entry as "restored". A rename over a target whose
earlier rename is still unsettled settles that one first (:meth:`Replacements.rename_over`).

Shared state: the journal rows (changed without awaits in between), ``_targets`` (the
per-target locks) and ``_resolving`` (a lock: one :meth:`Replacements.resolve_all` at a time).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from internxtfs.fs.conflicts import (
    DELETE_UNCHECKED_FOR,
    RESTORED,
    KnownContent,
    changed_since_known,
    dump_known,
    keep_instead_of_deleting,
    load_known,
    marked_name,
)
from internxtfs.fs.crashpoints import crash_point
from internxtfs.fs.journal import ASIDE, REPLACED, Journal, Replacement
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.remote import Remote
from internxtfs.internxt import errors as ie

log = logging.getLogger(__name__)

ASIDE_PREFIX = ".internxtfs-unlinked-"
RETRY_INTERVAL = 30.0  # seconds between background attempts at unfinished rows
RESTORE_TIMEOUT = 60.0  # how long a failed rename may spend putting its target back


def _where(row: Replacement, meta: Any) -> tuple[str, str]:
    """(parent folder, name) of a file or folder record."""
    parent = meta.folder_uuid if row.kind == "file" else meta.parent_uuid
    return parent, meta.name


def aside_name(uuid: str) -> str:
    """The hidden name of an entry kept aside: unique, since no other entry has its uuid."""
    return f"{ASIDE_PREFIX}{uuid}"


class Undecided(ie.Unreachable):
    """The move aside was sent and not answered while Internxt cannot be reached (a server
    that takes requests and hangs): it may land at any time, even later. The row stays
    journaled (``aside``) and nothing is settled now (no one answers; trying would spend
    the call's time). The caller carries the rename forward in steps that hold whatever the
    server does with that request (fs/namespace.py: a delete of the target by uuid and a
    queued move of the source), then :meth:`Replacements.forget` the row."""


class Replacements:
    def __init__(self, remote: Remote, journal: Journal) -> None:
        self.remote = remote
        self.journal = journal
        self._targets = KeyedLock()  # per target uuid: the live rename or one settling step
        self._wake = trio.Event()
        # One resolve_all at a time (the background task, flush and unmount all call it): two
        # passes over the same row would both move its target back, the second onto a name
        # the first had just filled (kept as "restored"). The checks of a pass can take the
        # replica-lag window, which made that overlap likely.
        self._resolving = trio.Lock()
        # When each row of this run landed (trio time): its target's delete, sent soon after
        # and at the first attempt, goes unchecked (conflict rule 1, DELETE_UNCHECKED_FOR).
        self._landed_at: dict[str, float] = {}

    # --- the live rename --------------------------------------------------------------------

    async def rename_over(
        self,
        *,
        target_uuid: str,
        kind: str,
        parent_uuid: str,
        name: str,
        source_uuid: str | None,
        source_local_id: int | None,
        move: Callable[[], Awaitable[None]],
        keep_target: bool = False,
        on_landed: Callable[[], None] | None = None,
        target_content: KnownContent | None = None,
    ) -> None:
        """Replace entry ``target_uuid`` (at ``parent_uuid``/``name``) by what ``move`` puts
        there. Returns once the source holds the name; raises the move's error otherwise,
        with the target back in place (or its restore journaled). ``on_landed`` runs in the
        journal transaction that records the landing (the caller's local bookkeeping).
        ``keep_target``: leave the target aside and forget the row, for ``on_landed`` to
        journal its delete another way (at the last close of an open file).
        ``target_content``: what this mount knew the target (a file) to hold, checked before a
        late delete of it (None: unchecked). An :class:`ie.Unreachable` whose ``sent`` is
        False means nothing was done on the server and nothing is journaled."""
        row = Replacement(
            target_uuid,
            kind,
            parent_uuid,
            name,
            source_uuid,
            source_local_id,
            ASIDE,
            dump_known(target_content),
        )
        async with self._targets.hold(target_uuid):
            earlier = self.journal.replacement(target_uuid)
            if earlier is not None:
                await self._settle_earlier(earlier)
            self.journal.add_replacement(row)
            try:
                await self._move_target(row, aside_name(target_uuid))
            except ie.NotFound:
                # Gone already (deleted elsewhere): the name is free, nothing to keep.
                self.journal.remove_replacement(target_uuid)
                await move()
                if on_landed is not None:
                    on_landed()
                return
            except ie.Unreachable as exc:
                if exc.sent and self.remote.offline():
                    raise Undecided(str(exc)) from exc
                if exc.sent:
                    await self._settle_after_failure(row)
                    raise
                # No attempt reached Internxt (no connection was made): the target never
                # moved and there is nothing to settle. The caller may queue the rename as
                # one made offline instead (fs/namespace.py).
                self.journal.remove_replacement(target_uuid)
                raise
            except BaseException:
                await self._settle_after_failure(row)
                raise
            crash_point("after-target-aside")
            try:
                await move()
            except BaseException:
                if await self._settle_after_failure(row):
                    return  # the move landed all the same (its answer was lost)
                raise
            crash_point("after-source-moved")
            with self.journal.transaction():
                if keep_target:
                    self.journal.remove_replacement(target_uuid)
                else:
                    self.journal.set_replacement_state(target_uuid, REPLACED)
                if on_landed is not None:
                    on_landed()
            if not keep_target:
                self._landed_at[target_uuid] = trio.current_time()
            self._wake.set()  # the target's delete runs in the background

    async def _settle_earlier(self, row: Replacement) -> None:
        """A rename over ``row.target_uuid`` failed earlier and could not put its target back
        yet (the row is still journaled). Settle it before a new one starts: left alone, the
        new row would replace it and the first rename's outcome would be forgotten. Raises
        when that cannot be settled now (the new rename fails, the row stays), or when the
        earlier rename turns out to have landed: the name no longer holds the entry the
        caller wanted to replace."""
        if await self._resolve(row, live=True):
            raise ie.InternxtError(
                f"an earlier rename onto {row.name!r} reported failed had landed after all;"
                " the listing is stale, try again"
            )

    async def _settle_after_failure(self, row: Replacement) -> bool:
        """A step failed: find out what the server holds and put the target back if the
        rename did not land. True when it did land. Never raises: what cannot be settled now
        stays journaled for the background task."""
        with trio.CancelScope(shield=True), trio.move_on_after(RESTORE_TIMEOUT):
            try:
                return await self._resolve(row, live=True)
            except Exception as exc:
                log.warning(
                    "rename onto %r failed and its old entry could not be put back yet (%s); "
                    "retrying in the background",
                    row.name,
                    exc,
                )
                self._wake.set()
        return False

    async def forget(self, target_uuid: str) -> None:
        """Drop the row of a rename carried forward another way (:class:`Undecided`): the
        target is not to be put back. Under the target's lock, so no pass is settling it."""
        async with self._targets.hold(target_uuid):
            if self.journal.replacement(target_uuid) is not None:
                self.journal.remove_replacement(target_uuid)

    # --- settling rows: after a failure, at start, in the background -----------------------

    async def _resolve(self, row: Replacement, *, live: bool = False) -> bool:
        """Finish one row; returns True when the rename had landed."""
        if row.state == ASIDE and not await self._landed(row):
            await self._restore(row)
            self.journal.remove_replacement(row.target_uuid)
            if not live:
                log.warning("a rename onto %r did not complete; its old entry is back", row.name)
            return False
        if row.state == ASIDE:
            self.journal.set_replacement_state(row.target_uuid, REPLACED)
        if not live:
            left = self._unchecked_for(row)
            checkable = row.kind == "file" and row.target_content is not None
            if not checkable or left > 0 or not await self._kept_instead(row):
                # Unchecked (started soon after the rename), it must land soon too: its
                # retries could span an outage. Past that it is given up, and the next pass
                # checks first. Nothing to check (a folder): sent as before, unbounded.
                bounded = checkable and left > 0
                with trio.move_on_after(DELETE_UNCHECKED_FOR if bounded else math.inf) as bound:
                    await self.remote.delete(row.kind, row.target_uuid, name=row.name)  # type: ignore[arg-type]
                if bound.cancelled_caught:
                    raise ie.Unreachable("no answer to the delete of a replaced entry in time")
            self.journal.remove_replacement(row.target_uuid)
            self._landed_at.pop(row.target_uuid, None)
        else:
            self._wake.set()
        return True

    def _unchecked_for(self, row: Replacement) -> float:
        """How long the target's delete may still go out unchecked: its first attempt soon
        after the rename landed in this run, as an unlink's delete (fs/uploader.py,
        ``Uploader._unchecked_for``); <= 0: checked first (a row of an earlier run, or an
        attempt after a failed one)."""
        landed = self._landed_at.pop(row.target_uuid, None)  # a later attempt is checked
        if landed is None:
            return 0.0
        return DELETE_UNCHECKED_FOR - (trio.current_time() - landed)

    async def _kept_instead(self, row: Replacement) -> bool:
        """Conflict rule 1 before a late delete of the target: when the target holds another
        version than the row knew (another client replaced it in place), it is kept beside
        the name as a conflict-named copy; True then."""
        known = load_known(row.target_content)
        assert row.kind == "file" and known is not None
        entry = await changed_since_known(self.remote, row.target_uuid, known)
        if entry is None:
            return False
        # Aside under its hidden name, and our source holds the name now: moved beside it.
        await keep_instead_of_deleting(self.remote, entry, name=row.name, move=True)
        return True

    async def _landed(self, row: Replacement) -> bool:
        """Does the source hold the name? Asked of the server (or, for a file never uploaded,
        whose rename only changed the journal, of its record)."""
        if row.source_uuid is None:
            record = None if row.source_local_id is None else self.journal.get(row.source_local_id)
            return (
                record is not None
                and not record.deleted
                and (record.parent_uuid, record.name) == (row.parent_uuid, row.name)
            )

        def landed(meta: Any) -> bool:
            return meta.status == "EXISTS" and _where(row, meta) == (row.parent_uuid, row.name)

        # "Not there" may be a read replica that has not seen our move yet: asked again until
        # it holds past the lag window, since it decides whether the target is moved back.
        stale = lambda meta: not landed(meta)  # noqa: E731
        try:
            if row.kind == "file":
                meta = await self.remote.file_meta(row.source_uuid, stale=stale)
            else:
                meta = await self.remote.folder_meta(row.source_uuid, stale=stale)
        except ie.NotFound:
            return False
        return landed(meta)

    async def _restore(self, row: Replacement) -> None:
        """Move the target back to its name (or beside it, if something else took it)."""

        def at_name(meta: Any) -> bool:
            return meta.status == "EXISTS" and _where(row, meta) == (row.parent_uuid, row.name)

        try:
            # "Still at its name" may be a replica that has not seen the move aside yet: left
            # there, the target would stay hidden. Asked again until it holds past the window.
            if row.kind == "file":
                meta = await self.remote.file_meta(row.target_uuid, stale=at_name)
            else:
                meta = await self.remote.folder_meta(row.target_uuid, stale=at_name)
            where = _where(row, meta)
            if meta.status != "EXISTS":
                log.info("the entry a rename would have replaced, %r, is gone", row.name)
                return
            if where == (row.parent_uuid, row.name):
                return  # never moved aside (the first step failed before it landed)
            await self._move_target(row, row.name)
        except ie.NotFound:
            log.info("the entry a rename would have replaced, %r, is gone", row.name)
        except ie.Conflict:
            # Someone else's entry took the name meanwhile: keep both, ours beside it.
            kept = marked_name(row.name, RESTORED)
            log.warning("%r was taken meanwhile; its old entry is kept as %r", row.name, kept)
            await self._move_target(row, kept)

    async def _move_target(self, row: Replacement, new_name: str) -> None:
        if row.kind == "file":
            await self.remote.move_file(row.target_uuid, row.parent_uuid, new_name)
        else:
            await self.remote.rename_folder(row.target_uuid, new_name)

    async def resolve_all(self) -> int:
        """Settle every journaled row not handled by a live rename; returns how many are
        left (the server did not answer)."""
        async with self._resolving:
            left = 0
            for listed in self.journal.replacements():
                if self._targets.locked(listed.target_uuid):
                    continue  # a live rename has it and settles it itself
                async with self._targets.hold(listed.target_uuid):
                    # Read again under the lock: a live rename may have settled or taken
                    # over the row since the list was read.
                    row = self.journal.replacement(listed.target_uuid)
                    if row is None:
                        continue
                    try:
                        await self._resolve(row)
                    except Exception as exc:
                        left += 1
                        log.debug("cannot settle the rename onto %r yet: %r", row.name, exc)
            return left

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Background task: settles rows at start, when woken, and every RETRY_INTERVAL."""
        task_status.started()
        while True:
            self._wake = trio.Event()
            try:
                left = await self.resolve_all()
            except Exception:  # a bug must not end the mount; the rows stay journaled
                log.exception("settling renames failed")
                left = 1
            with trio.move_on_after(RETRY_INTERVAL if left else math.inf):
                await self._wake.wait()

    # --- what listings show -----------------------------------------------------------------

    def pending(self) -> int:
        return len(self.journal.replacements())

    def shown_as(self, parent_uuid: str) -> dict[str, str]:
        """Hidden entries of ``parent_uuid`` that listings must show under another name:
        uuid -> name, for targets aside whose rename did not (or not yet) land."""
        return {
            row.target_uuid: row.name
            for row in self.journal.replacements()
            if row.state == ASIDE and row.parent_uuid == parent_uuid
        }
