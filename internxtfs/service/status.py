"""What a mount reports about itself: the ``status`` answer and systemd's STATUS line.

:class:`StatusReport` gathers the ``internxtfs status`` answer from the mount's parts.
:class:`Reporter` is the part that tells whoever waits that the mount answers (systemd's
READY=1, the ``--ready-fd`` of ``internxtfs mount`` without ``-f``) and then, under systemd,
keeps ``systemctl status`` current every ``STATUS_INTERVAL`` seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from internxtfs import kernel_readahead, sdnotify
from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.orphans import OrphanSweeper
from internxtfs.fs.replacement import Replacements
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt.client import InternxtClient
from internxtfs.service.part import Part

STATUS_INTERVAL = 5.0  # seconds between STATUS= updates under systemd


class StatusReport:
    def __init__(
        self,
        *,
        mountpoint: Path,
        profile: str,
        profile_dir: Path,
        cache_dir: Path,
        client: InternxtClient,
        uploader: Uploader,
        sweeper: OrphanSweeper,
        replacements: Replacements,
        cache: BlockCache,
        namespace: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.mountpoint = mountpoint
        self.profile = profile
        self.profile_dir = profile_dir
        self.cache_dir = cache_dir
        self.client = client
        self.uploader = uploader
        self.sweeper = sweeper
        self.replacements = replacements
        self.cache = cache
        # Namespace changes queued while offline (fs/pending.py): counted with the uploads.
        self.namespace = namespace

    def __call__(self) -> dict[str, Any]:
        """The ``internxtfs status`` answer."""
        manager = self.client.session_manager
        return {
            "mountpoint": str(self.mountpoint),
            "account": manager.session.email,
            "profile": self.profile,
            "profile_dir": str(self.profile_dir),
            "cache_dir": str(self.cache_dir),
            "uploads": self.uploader.stats()
            | self.sweeper.stats()
            | {"renames_unsettled": self.replacements.pending()}
            | self.namespace(),
            "cache": self.cache.stats(),
            "network": self.client.retry.stats.as_dict(),
            "session": {
                "expires_at": manager.session.expires_at,
                "refreshes": manager.refreshes,
                "relogins": manager.relogins,
                # Set when the session cannot be renewed (e.g. the password changed).
                "error": manager.last_error,
            },
        }

    def line(self) -> str:
        """systemd's STATUS line for this mount."""
        return status_line(
            self.uploader.stats() | self.namespace(),
            self.client.session_manager.last_error,
            self.client.retry.stats.offline_since,
        )


def status_line(
    uploads: dict[str, Any], session_error: str | None = None, offline_since: float | None = None
) -> str:
    line = f"{uploads['pending_files']} file(s) pending upload ({uploads['pending_bytes']} bytes)"
    if uploads["errors"]:
        line += f", {len(uploads['errors'])} failing"
    if uploads.get("namespace_queued"):
        line += f", {uploads['namespace_queued']} namespace change(s) queued"
    if offline_since is not None:
        # First too: while Internxt cannot be reached, nothing else moves.
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(offline_since))
        line = f"OFFLINE since {since}, serving from the cache; {line}"
    if session_error:
        # First: `systemctl status` cuts long lines, and this one needs a person.
        line = f"NOT LOGGED IN ({session_error}); {line}"
    return line


class Reporter(Part):
    """Announces the mount once it answers, then keeps systemd's STATUS line current."""

    name = "status reporter"

    def __init__(
        self,
        mountpoint: Path,
        line: Callable[[], str],
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.mountpoint = mountpoint
        self.line = line
        self.on_ready = on_ready

    async def serve(self, task_status: Any) -> None:
        # Started at once: the announcement needs the request loop, which runs only after
        # every part has started.
        task_status.started()
        await announce_ready(self.mountpoint, self.on_ready)
        while os.environ.get("NOTIFY_SOCKET"):
            sdnotify.notify(STATUS=self.line())
            await trio.sleep(STATUS_INTERVAL)


async def announce_ready(mountpoint: Path, on_ready: Callable[[], None] | None) -> None:
    # The mount answers once the request loop runs: a stat served by us proves it.
    st = await trio.to_thread.run_sync(os.stat, mountpoint)
    # Past INIT now (which would cap it again): larger kernel read requests, where permitted.
    await trio.to_thread.run_sync(kernel_readahead.raise_read_ahead, st.st_dev)
    sdnotify.notify(READY=1, STATUS="mounted")
    if on_ready is not None:
        on_ready()
