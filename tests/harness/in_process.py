"""The filesystem built in-process, as mount.py wires it, over any Remote (no kernel, no root).

Handlers are called directly (``fs.lookup(...)``, ``fs.write(...)``); the uploader, when
started, runs in the test's trio nursery. See tests/fs_api/ for the tier that uses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internxtfs.fs.blockcache import BlockCache, fetch_through
from internxtfs.fs.conflicts import AdoptExisting
from internxtfs.fs.inodes import ROOT_INODE
from internxtfs.fs.journal import Journal
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.operations import Filesystem, MountOptions
from internxtfs.fs.orphans import OrphanSweeper
from internxtfs.fs.uploader import Uploader
from tests.harness.fake_remote import ROOT

MiB = 1024 * 1024


class Ctx:
    """A pyfuse3.RequestContext stand-in: the calling process's ids."""

    uid = os.getuid()
    gid = os.getgid()
    pid = os.getpid()
    umask = 0o022


CTX: Any = Ctx()


@dataclass
class InProcess:
    fs: Filesystem
    journal: Journal
    cache: BlockCache
    uploader: Uploader
    sweeper: OrphanSweeper
    remote: Any

    # --- handler shortcuts (paths are one level deep: names in the root folder) ---------------

    async def lookup(self, name: str, parent: int = ROOT_INODE) -> int:
        return int((await self.fs.lookup(parent, name.encode(), CTX)).st_ino)

    async def create(self, name: str, parent: int = ROOT_INODE) -> tuple[int, int]:
        """(fh, ino) of a new file, open for writing."""
        info, attrs = await self.fs.create(parent, name.encode(), 0o644, os.O_WRONLY, CTX)
        return info.fh, int(attrs.st_ino)

    async def open(self, ino: int, flags: int = os.O_RDONLY) -> int:
        return (await self.fs.open(ino, flags, CTX)).fh

    async def write_file(self, name: str, data: bytes, parent: int = ROOT_INODE) -> int:
        """create, write, release (as ``cp``); returns the inode."""
        fh, ino = await self.create(name, parent)
        await self.fs.write(fh, 0, data)
        await self.fs.release(fh)
        return ino

    async def read_all(self, ino: int) -> bytes:
        fh = await self.open(ino)
        try:
            size = (await self.fs.getattr(ino, CTX)).st_size
            return await self.fs.read(fh, 0, size + 1)
        finally:
            await self.fs.release(fh)

    async def listdir(self, ino: int = ROOT_INODE) -> list[str]:
        fh = await self.fs.opendir(ino, CTX)
        try:
            handle = self.fs._handles[fh]
            return sorted(name for name, _ in handle.entries[2:])  # type: ignore[union-attr]
        finally:
            await self.fs.releasedir(fh)

    async def rename(self, old: str, new: str, flags: int = 0) -> None:
        await self.fs.rename(ROOT_INODE, old.encode(), ROOT_INODE, new.encode(), flags, CTX)

    async def unlink(self, name: str, parent: int = ROOT_INODE) -> None:
        await self.fs.unlink(parent, name.encode(), CTX)


def build(
    tmp_path: Path,
    remote: Any,
    *,
    options: MountOptions | None = None,
    monotonic: Any = None,
    cache_size: int = 1 << 30,
    readahead_max: int | None = None,
    root_uuid: str = ROOT,
    **uploader_args: Any,
) -> InProcess:
    """Journal, block cache, uploader, sweeper and handlers over ``remote``, as mount.py
    wires them (the uploader's and sweeper's tasks are not started: see ``start``)."""
    journal = Journal(tmp_path / "state.db")

    extra = {} if readahead_max is None else {"readahead_max": readahead_max}
    cache = BlockCache(tmp_path / "cache", journal, cache_size, fetch_through(remote), **extra)
    locks = KeyedLock()  # owned here, as by the mount wiring, and handed to each user
    # The mount's conflict policy for a create whose name is taken (fs/conflicts.py).
    uploader_args.setdefault("on_conflict", AdoptExisting(remote, journal))
    uploader = Uploader(
        journal, cache, remote, locks=locks, recovery_parent=root_uuid, **uploader_args
    )
    sweeper = OrphanSweeper(journal, remote, locks, interval=3600)
    kwargs = {} if monotonic is None else {"monotonic": monotonic}
    fs = Filesystem(
        remote=remote,
        journal=journal,
        cache=cache,
        uploader=uploader,
        locks=locks,
        root_uuid=root_uuid,
        options=options or MountOptions(),
        **kwargs,
    )
    uploader.describe = lambda record: fs.path_of(record)
    return InProcess(fs, journal, cache, uploader, sweeper, remote)
