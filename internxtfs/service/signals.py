"""Signals a mount answers: SIGTERM/SIGINT stop it, SIGHUP re-reads its login.

SIGTERM (``systemctl stop``) or SIGINT (Ctrl-C on ``-f``) stop the mount once: flush while
serving, then detach (``Mount.stop``). Only the first is handled here: the handler is removed
after it, and a second signal meets the default handling. SIGHUP
(``systemctl reload``) re-reads the profile as a new ``internxtfs login`` does; the mount keeps
serving (it used to unmount and exit 0, which ``Restart=on-failure`` then left down).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from internxtfs.service.login import Login
from internxtfs.service.part import Part

log = logging.getLogger(__name__)

Stop = Callable[[str, float], Awaitable[None]]  # stop(reason, flush budget in seconds)


class Signals(Part):
    name = "signal handling"

    def __init__(self, stop: Stop, flush_timeout: float, login: Login) -> None:
        super().__init__()
        self.stop_mount = stop
        self.flush_timeout = flush_timeout
        self.login = login

    async def serve(self, task_status: Any) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._stop_on_signal)
            await nursery.start(self._reload_on_hangup)
            task_status.started()

    async def _stop_on_signal(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
            task_status.started()
            async for signum in sigs:
                await self.stop_mount(f"received {signal.Signals(signum).name}", self.flush_timeout)
                return

    async def _reload_on_hangup(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGHUP) as sigs:
            task_status.started()
            async for _ in sigs:
                try:
                    answer = await self.login.reload(self.login.profile_dir)
                except Exception:
                    log.exception("SIGHUP: re-reading profile %r failed", self.login.profile.name)
                    continue
                if answer.get("reloaded"):
                    log.info(
                        "SIGHUP: profile %r re-read; its login is in use", self.login.profile.name
                    )
