"""A queued mkdir whose replayed create is out when an rmdir comes (fs/pending.py).

The replay tries the head of the queue while Internxt is down. Against a server that takes
requests and never answers, that create may be carried out later, after the attempt gave up
(the e2e test with a hung emulator saw it: tests/e2e/test_offline_calls.py). An rmdir of the
folder meanwhile must then be queued and sent, not cancel the pair locally, or the folder
stays on the server for good."""

from __future__ import annotations

from typing import Any

import trio

from internxtfs.fs.inodes import ROOT_INODE
from internxtfs.internxt.errors import Unreachable
from tests.fs_api.conftest import serving
from tests.harness.fake_remote import ROOT, FakeRemote
from tests.harness.in_process import CTX, InProcess


async def test_an_rmdir_while_the_replayed_create_is_out_is_sent_not_cancelled(
    mounted: InProcess,
) -> None:
    fake: FakeRemote = mounted.remote.inner  # type: ignore[attr-defined]
    real_create = fake.create_folder
    sent, release = trio.Event(), trio.Event()

    async def hung_create(*args: Any, **kwargs: Any) -> Any:
        sent.set()
        await release.wait()
        await real_create(*args, **kwargs)  # carried out late, its answer never came
        raise Unreachable("create folder: no answer within the budget")

    async with serving(mounted):
        fake.known_offline = True
        await mounted.fs.mkdir(ROOT_INODE, b"d", 0o755, CTX)
        fake.create_folder = hung_create  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            await nursery.start(mounted.fs.pending.run)
            await sent.wait()  # the replay's create is out
            await mounted.fs.rmdir(ROOT_INODE, b"d", CTX)
            assert mounted.fs.pending.queued() == 2  # the mkdir, and the rmdir behind it
            release.set()
            await trio.sleep(1)
            assert fake.folder_at(ROOT, "d") is not None  # the late create landed
            fake.create_folder = real_create  # type: ignore[method-assign]
            fake.known_offline = False
            with trio.fail_after(600):
                await mounted.fs.pending.wait_replayed()
            nursery.cancel_scope.cancel()
        assert fake.folder_at(ROOT, "d") is None
        assert await mounted.listdir() == []
