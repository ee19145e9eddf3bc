"""--fsync remote and --fsync local, through the fsync handler (tier 2: no kernel)."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.fs_api.conftest import make, serving
from tests.harness.fake_remote import ROOT


async def test_fsync_remote_returns_once_the_file_is_stored(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    mounted = make(tmp_path, fsync="remote")
    fake = mounted.remote.inner
    async with serving(mounted):
        fh, _ = await mounted.create("f")
        await mounted.fs.write(fh, 0, b"durable")
        await mounted.fs.fsync(fh, False)
        assert fake.content(ROOT, "f") == b"durable"  # before the close
        await mounted.fs.release(fh)
        assert await mounted.uploader.wait_idle() == {}
    assert fake.calls.count("upload 7") == 1  # the close had nothing left to send


async def test_fsync_local_returns_with_the_data_in_the_cache_only(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    mounted = make(tmp_path, fsync="local")
    fake = mounted.remote.inner
    async with serving(mounted):
        fh, ino = await mounted.create("f")
        await mounted.fs.write(fh, 0, b"durable here")
        await mounted.fs.fsync(fh, False)
        assert fake.content(ROOT, "f") is None  # nothing sent yet
        record = mounted.journal.get(mounted.fs.table.get(ino).local_id)  # type: ignore[union-attr,arg-type]
        assert record is not None and record.dirty and record.size == len(b"durable here")
        assert mounted.cache.path(record.local_id).read_bytes() == b"durable here"
        await mounted.fs.release(fh)
        assert await mounted.uploader.wait_idle() == {}  # stored after the close, as usual
    assert fake.content(ROOT, "f") == b"durable here"
