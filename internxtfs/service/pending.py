"""Storing what is pending: before a mount stops, and for ``internxtfs flush`` / ``umount``.

What is pending is four things: namespace changes queued (fs/pending.py), files the uploader
has not stored, orphaned network objects the sweeper has not deleted, and renames over an entry
an outage cut short (fs/replacement.py). A flush waits for the first two with a budget and
gives the other two at most ``ORPHAN_SWEEP_TIMEOUT`` seconds; whatever is left stays in the
journal for the next mount.

A flush before the mount stops does not wait out its budget while Internxt cannot be reached
(issue 9): everything unsent is durable in the cache and the journal, and the next mount sends
it, so waiting would only keep ``fusermount3 -u``, ``systemctl stop`` or a reboot waiting on a
network that is not there. Once the retry policy takes Internxt for unreachable and a quick
request of our own gets no answer either, the flush ends and one line says what stays queued.
That request is also made when nothing has answered for a while without any error (a server
that takes requests and never answers). Reachable, it waits as before (bounded by
``--flush-timeout``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from internxtfs.fs.giving_up import unless_given_up
from internxtfs.fs.orphans import OrphanSweeper
from internxtfs.fs.replacement import Replacements
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt.retry import interactive

log = logging.getLogger(__name__)

ORPHAN_SWEEP_TIMEOUT = 10.0  # flush/unmount: at most this long deleting orphaned objects (the
# rest waits for the next sweep; the unit's TimeoutStopSec leaves 30 s over --flush-timeout)
OUTAGE_CHECK_INTERVAL = 0.5  # how often a flush before stopping looks whether Internxt is down
PROBE_INTERVAL = 2.0  # (a probe answered: the next one not before this)
PROBE_BUDGET = 3.0  # ... and how long its quick request of its own may take
SILENCE = 5.0  # without an error: no answer from Internxt for this long makes it ask too,
SILENT_PROBE_BUDGET = 10.0  # and wait this long for the answer

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Pending:
    def __init__(
        self,
        uploader: Uploader,
        sweeper: OrphanSweeper,
        replacements: Replacements,
        replayed: Callable[[], Awaitable[None]] | None = None,
        *,
        unreachable: Callable[[], bool] = lambda: False,
        failing: Callable[[], bool] = lambda: False,
        silence: Callable[[], float] = lambda: 0.0,
        probe: Callable[[], Awaitable[object]] | None = None,
        queued: Callable[[], int] = lambda: 0,
    ) -> None:
        self.uploader = uploader
        # Whether the retry policy takes Internxt for unreachable, whether the last request
        # failed, seconds since Internxt last answered (internxt/retry.py), a quick request
        # that asks again (answered, it ends the outage), and how many namespace changes are
        # queued (fs/pending.py): see the module docstring.
        self.unreachable = unreachable
        self.failing = failing
        self.silence = silence
        self.probe = probe
        self.queued = queued
        # Until the namespace changes queued offline are sent (fs/pending.py): a flush waits
        # for them first, as the files in folders made offline wait for them.
        self.replayed = replayed
        self.sweeper = sweeper
        self.replacements = replacements

    async def flush(self, timeout: float, *, final: bool = True) -> None:
        """Store what is pending within ``timeout`` seconds (the uploader stops taking new
        work), or until Internxt is found unreachable. ``final`` False: the mount still
        serves, and what is written meanwhile is stored by a second, final flush once
        detached."""
        deadline = trio.current_time() + timeout
        # The queued namespace changes first: the files in folders they make wait for them.
        await self._replayed_unless_outage(timeout)
        left = await self.uploader.close(
            max(0.0, deadline - trio.current_time()), give_up=self.outage
        )
        if self.unreachable():
            if final:
                self._log_queued()
            return
        with trio.move_on_after(ORPHAN_SWEEP_TIMEOUT):
            await self.sweeper.sweep()
            await self.replacements.resolve_all()
        if left and not final:
            log.info("%d file(s) still changing; storing them once detached", left)
        elif left:
            log.warning(
                "%d file(s) not stored yet; they stay in the journal and resume at the next mount",
                left,
            )
        if final and self.queued():
            log.warning(
                "%d namespace change(s) not sent yet; they stay in the journal, with the "
                "files that wait for them, and the next mount sends them",
                self.queued(),
            )

    async def _replayed_unless_outage(self, timeout: float) -> None:
        """Until the namespace changes queued (fs/pending.py) are sent, for at most
        ``timeout`` seconds, or until Internxt is found unreachable: they are queued while
        it answers too (a mkdir whose retries met only errors), and an unmount must not
        leave them, and the files made in their folders, for the next mount."""
        if self.replayed is None or not self.queued() or self.unreachable():
            return
        with trio.move_on_after(timeout):
            await unless_given_up(self.replayed, self.outage)

    async def outage(self) -> None:
        """Returns once Internxt is found unreachable during a flush (or an fsync waiting on
        an upload, fs/operations.py ``outage_found``): the retry policy takes
        it for down (or a request just failed), and a quick request of our own, interactive
        (one attempt while the outage is known, internxt/retry.py), gets no answer either.
        While the probe answers, or fails with the server answering, the flush waits on."""
        while True:
            if self.unreachable() or self.failing():
                budget: float | None = PROBE_BUDGET
            elif self.silence() > SILENCE:
                # Nothing failed, nothing answered: a server that takes requests and never
                # answers fails them only at the read timeout (a minute). A slow but working
                # one (a big upload on a slow line) gets a longer budget to answer the probe.
                budget = SILENT_PROBE_BUDGET
            else:
                budget = None
            if self.probe is not None and budget is not None:
                # Its failure is what is looked at, not raised: offline, or the server answered.
                with contextlib.suppress(Exception), interactive(budget):
                    await self.probe()
                if self.unreachable():
                    return
                await trio.sleep(PROBE_INTERVAL)  # not a request every check while it errs
            await trio.sleep(OUTAGE_CHECK_INTERVAL)

    def _log_queued(self) -> None:
        """The one line an unmount during an outage leaves: what the next mount sends."""
        stats = self.uploader.stats()
        if not (stats["pending_files"] or stats["pending_deletes"] or self.queued()):
            return
        log.warning(
            "Internxt cannot be reached; not waiting for it: %d file(s) to upload, %d "
            "delete(s) and %d namespace change(s) stay queued in the journal for the next "
            "mount",
            stats["pending_files"],
            stats["pending_deletes"],
            self.queued(),
        )

    async def wait(
        self,
        status: Callable[[], dict[str, Any]],
        send: Send,
        timeout: float | None,
    ) -> dict[str, Any]:
        """Wait until everything pending is stored (or failed), sending progress twice a
        second; the mount goes on serving and uploading. The control answer ``flush`` ends
        with."""
        uploader, sweeper = self.uploader, self.sweeper
        errors: dict[int, Exception] = {}
        timed_out = False
        async with trio.open_nursery() as nursery:

            async def progress() -> None:
                while True:
                    await send({"progress": status()["uploads"]})
                    await trio.sleep(0.5)

            nursery.start_soon(progress)
            started = trio.current_time()
            if self.replayed is not None:
                with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
                    await self.replayed()
                timed_out = scope.cancelled_caught
            try:
                if not timed_out:
                    left = None if timeout is None else timeout - (trio.current_time() - started)
                    errors = await uploader.wait_idle(timeout=left)
            except TimeoutError:
                timed_out = True
            if not timed_out:
                # Objects left unreferenced by what was just stored are deleted before
                # answering, and renames cut short by an outage are settled.
                with trio.move_on_after(ORPHAN_SWEEP_TIMEOUT):
                    await sweeper.sweep()
                    await self.replacements.resolve_all()
            nursery.cancel_scope.cancel()
        stats = uploader.stats() | sweeper.stats()
        return {
            "done": True,
            "timed_out": timed_out,
            "pending": stats["pending_files"],
            "errors": {
                str(k): {
                    "path": uploader.describe_id(k),
                    "error": f"{type(v).__name__}: {v}",
                }
                for k, v in errors.items()
            },
            "uploads": stats,
        }
