"""--fsync remote and --fsync local, through the fsync handler (tier 2: no kernel)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyfuse3
import pytest
import trio

from internxtfs.fs.inodes import ROOT_INODE
from tests.fs_api.conftest import make, serving
from tests.harness.fake_remote import ROOT
from tests.harness.in_process import CTX


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


async def test_fsync_remote_while_internxt_is_known_to_be_down_keeps_the_data_locally(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """--fsync-offline local (the default): the data is made durable in the cache and fsync
    returns, so a backup run during an outage completes; it is stored once Internxt is back."""
    mounted = make(tmp_path, fsync="remote")
    fake = mounted.remote.inner
    async with serving(mounted):
        fake.known_offline = True
        fh, ino = await mounted.create("f")
        await mounted.fs.write(fh, 0, b"during the outage")
        await mounted.fs.fsync(fh, False)
        assert fake.content(ROOT, "f") is None
        record = mounted.journal.get(mounted.fs.table.get(ino).local_id)  # type: ignore[union-attr,arg-type]
        assert record is not None and record.dirty
        assert mounted.cache.path(record.local_id).read_bytes() == b"during the outage"
        await mounted.fs.release(fh)
        fake.known_offline = False
        assert await mounted.uploader.wait_idle() == {}
    assert fake.content(ROOT, "f") == b"during the outage"


async def test_fsync_offline_eio_fails_and_still_keeps_the_data(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    mounted = make(tmp_path, fsync="remote", fsync_offline="eio")
    fake = mounted.remote.inner
    async with serving(mounted):
        fake.known_offline = True
        fh, _ = await mounted.create("f")
        await mounted.fs.write(fh, 0, b"kept")
        with pytest.raises(pyfuse3.FUSEError) as failed:
            await mounted.fs.fsync(fh, False)
        assert failed.value.errno == errno.EIO
        await mounted.fs.release(fh)
        fake.known_offline = False
        assert await mounted.uploader.wait_idle() == {}
    assert fake.content(ROOT, "f") == b"kept"


async def test_fsync_of_a_directory_puts_the_journal_log_on_the_disk(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restic renames a pack into place and fsyncs the directory. During an outage the
    rename is queued in the journal, whose log (WAL) reaches the disk only at a checkpoint:
    the directory's fsync must put it there (it was answered ENOSYS, taken for done)."""
    mounted = make(tmp_path, fsync="remote")
    fake = mounted.remote.inner
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    async with serving(mounted):
        await mounted.write_file("pack-tmp", b"pack")
        assert await mounted.uploader.wait_idle() == {}
        await mounted.listdir()
        fake.known_offline = True
        await mounted.rename("pack-tmp", "pack")  # queued: Internxt is down
        synced.clear()
        fh = await mounted.fs.opendir(ROOT_INODE, CTX)
        await mounted.fs.fsyncdir(fh, False)
        await mounted.fs.releasedir(fh)
        assert synced == [str(mounted.journal.log_path)]
        fake.known_offline = False
