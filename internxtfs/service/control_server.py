"""The mount's side of its control socket (``internxtfs status | flush | umount``).

The socket itself, its path and the line protocol are in ``internxtfs/control.py``; this part
answers the requests:

* ``status``: the status answer (service/status.py).
* ``flush``: wait until everything pending is stored, with progress lines (service/pending.py).
* ``umount``: like umount(8), a busy mount is refused before anything is done, and again by
  the kernel after the flush (``fusermount3 -u`` without ``-z``; busy.py). ``lazy``: flush,
  answer, then stop as a signal would (``Mount.stop``), so processes still using the mount
  get ENOTCONN.
* ``reload-credentials``: a new ``internxtfs login`` of this profile (service/login.py).
* ``uses-profile``: asked by ``logout``, which refuses while a mount uses the profile.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from internxtfs import busy, control
from internxtfs.service.login import Login
from internxtfs.service.part import Part
from internxtfs.service.pending import Pending, Send

Stop = Callable[[str, float], Awaitable[None]]  # stop(reason, flush budget in seconds)


class ControlServer(Part):
    name = "control socket"

    def __init__(
        self,
        mountpoint: Path,
        *,
        status: Callable[[], dict[str, Any]],
        pending: Pending,
        login: Login,
        open_paths: Callable[[str], list[str]],
        stop: Stop,
        flush_timeout: float,
    ) -> None:
        super().__init__()
        self.mountpoint = mountpoint  # as given: names the socket
        self.canonical = control.canonical_mountpoint(mountpoint)  # what /proc shows
        self.status = status
        self.pending = pending
        self.login = login
        self.open_paths = open_paths  # paths open through the mount, under a mountpoint
        self.stop_mount = stop
        self.flush_timeout = flush_timeout

    async def serve(self, task_status: Any) -> None:
        await control.serve(
            control.socket_path(self.mountpoint), self.request, task_status=task_status
        )

    async def request(self, req: dict[str, Any], send: Send) -> None:
        cmd = req.get("cmd")
        if cmd == "status":
            await send(self.status())
            return
        if cmd == "reload-credentials":
            await send(await self.login.reload(req.get("profile")))
            return
        if cmd == "uses-profile":  # asked by `logout`, which refuses while we run
            uses = req.get("profile") == self.login.profile_dir
            await send({"uses": uses, "mountpoint": str(self.mountpoint)})
            return
        if cmd not in ("flush", "umount"):
            await send({"error": f"unknown command {cmd!r}"})
            return
        mountpoint = self.canonical
        lazy = cmd == "umount" and bool(req.get("lazy"))
        if cmd == "umount" and not lazy:
            # Like umount(8): a busy mount is refused before anything else is done.
            found = await trio.to_thread.run_sync(busy.holders, mountpoint, {os.getpid()})
            if found:
                await send(busy.busy_answer(mountpoint, found, self.open_paths(mountpoint)))
                return
        timeout = req.get("timeout")
        result = await self.pending.wait(self.status, send, timeout)
        if cmd == "umount" and not lazy:
            # Shielded: once the kernel lets go, main() returns and the nursery closes,
            # which must not cut this answer off.
            with trio.CancelScope(shield=True):
                await self._umount_unless_busy(result, send)
        elif cmd == "umount":
            result["unmounting"] = True
            await send(result)
            await self.stop_mount(
                "umount requested", 0 if result["pending"] else self.flush_timeout
            )
        else:
            await send(result)

    async def _umount_unless_busy(self, result: dict[str, Any], send: Send) -> None:
        mountpoint = self.canonical
        # The kernel has the last word (a process may have opened a file meanwhile, or
        # one /proc does not show us): refused, the mount serves on as before.
        refused = await busy.detach(mountpoint)
        if refused is not None:
            found = await trio.to_thread.run_sync(busy.holders, mountpoint, {os.getpid()})
            await send(busy.busy_answer(mountpoint, found, self.open_paths(mountpoint), refused))
            return
        # Detached: main() returns and stores what came in since the flush.
        result["unmounting"] = True
        await send(result)
