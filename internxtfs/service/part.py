"""The shape every part of a running mount has: ``run()`` until ``stop()``.

``await nursery.start(part.run)`` returns once the part is ready (its socket listens, its
signal handler is installed, ...). ``stop()`` cancels the part's own cancel scope, so ``run``
returns; it is sync and may be called before, during or after ``run``. A part that fails ends
the mount, as any task in its nursery would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio


class Part:
    """A task of the mount. Subclasses implement :meth:`serve`."""

    name = "part"

    def __init__(self) -> None:
        self._scope = trio.CancelScope()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            await self.serve(task_status)

    def stop(self) -> None:
        self._scope.cancel()

    async def serve(self, task_status: Any) -> None:
        """The part's work; calls ``task_status.started()`` once ready."""
        raise NotImplementedError


class Background(Part):
    """A layer's own background task (``cache.run``, ``uploader.run``, ``sweeper.run``, ...),
    which already runs until cancelled, as a part. ``then`` runs once it has started (the
    uploader's crash recovery queues the journal's dirty files only once it schedules)."""

    def __init__(
        self,
        name: str,
        run: Callable[..., Awaitable[None]],
        then: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self._run = run
        self._then = then

    async def serve(self, task_status: Any) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._run)
            if self._then is not None:
                self._then()
            task_status.started()
