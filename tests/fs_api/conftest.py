"""Tier 2 (fs_api): the Filesystem handlers called in-process over the in-memory remote.

No kernel, no root, no /dev/fuse: each test builds the filesystem as mount.py wires it
(tests/harness/in_process.py) over ``FailingRemote(FakeRemote())`` and calls the handlers the
kernel would call. trio's autojump clock makes quiet periods and backoffs pass at once, so the
whole tier runs in seconds. test_over_emulator.py runs scenarios over the real client against
the emulator too (real time there: the clock cannot jump over socket waits).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from internxtfs.fs.modes import DeleteMode, FsyncMode, OfflineFsync
from internxtfs.fs.operations import MountOptions
from tests.harness.fake_remote import FailingRemote, FakeRemote
from tests.harness.in_process import InProcess, build


def make(
    tmp_path: Path,
    delete_mode: str = "permanent",
    fsync: str = "remote",
    fsync_offline: str = "local",
) -> InProcess:
    mode = DeleteMode(delete_mode)
    remote = FailingRemote(FakeRemote(delete_mode=mode))
    return build(
        tmp_path,
        remote,
        options=MountOptions(
            delete_mode=mode, fsync=FsyncMode(fsync), fsync_offline=OfflineFsync(fsync_offline)
        ),
        quiet_period=1.0,
        backoff_initial=5.0,
    )


@pytest.fixture
def mounted(tmp_path: Path, autojump_clock: trio.abc.Clock) -> InProcess:
    return make(tmp_path)


@asynccontextmanager
async def serving(m: InProcess) -> AsyncIterator[None]:
    """The mount's background tasks (uploads and deletes, rename-over steps) while inside."""
    async with trio.open_nursery() as nursery:
        await nursery.start(m.uploader.run)
        m.uploader.resume()
        await nursery.start(m.fs.replacements.run)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
