"""Operations: a file another client replaces while a descriptor is open on it here.

The handlers are called directly (no kernel), over a real journal and block cache, with the
in-memory remote (tests/harness/fake_remote.py), whose replace deletes the old network object
as Internxt's does. What the tests pin down: the open descriptor's version keeps its inode and
its record (detached: no remote identity, never published) until the last close; the name
leads to a new inode; nothing of the old version outlives its descriptors.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyfuse3
import pytest

from internxtfs.fs.inodes import ROOT_INODE
from internxtfs.fs.journal import Journal, Owner
from internxtfs.fs.operations import Filesystem, MountOptions
from tests.harness.fake_remote import ROOT, FakeRemote
from tests.harness.in_process import build

MiB = 1024 * 1024
FILE = "file-uuid"
OLD = bytes(range(256)) * (3 * MiB // 256)
NEW = b"\xa5" * (2 * MiB + 7)


class Server(FakeRemote):
    """The root folder holding ``f.bin`` (object ``old``); a replace deletes the old object,
    as Internxt's does."""

    def __init__(self) -> None:
        super().__init__()
        self.add_file(ROOT, "f.bin", OLD, uuid=FILE, file_id="old")

    def replace(self, data: bytes, file_id: str) -> None:
        self.replace_elsewhere(FILE, data, file_id)


def _mount(tmp_path: Path, server: Server, clock: list[float]) -> tuple[Filesystem, Journal]:
    # Read-ahead of one block: a read of block 0 leaves block 2 (2 MiB on) uncached.
    mounted = build(
        tmp_path,
        server,
        options=MountOptions(dir_cache_ttl=600.0),
        monotonic=lambda: clock[0],
        cache_size=64 * MiB,
        readahead_max=MiB,
    )
    return mounted.fs, mounted.journal


async def _open(fs: Filesystem, ino: int) -> pyfuse3.FileInfo:
    return await fs.open(ino, os.O_RDONLY, None)  # type: ignore[arg-type]


async def _lookup(fs: Filesystem) -> int:
    attrs = await fs.lookup(ROOT_INODE, b"f.bin", None)  # type: ignore[arg-type]
    return int(attrs.st_ino)


def _cache_files(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "cache" / "data"))


async def test_open_descriptor_keeps_its_version_and_the_name_moves_on(tmp_path: Path) -> None:
    server, clock = Server(), [1000.0]
    fs, journal = _mount(tmp_path, server, clock)
    old_ino = await _lookup(fs)
    old_fh = (await _open(fs, old_ino)).fh
    assert await fs.read(old_fh, 0, 4096) == OLD[:4096]  # block 0 now cached

    server.replace(NEW, "new")
    with pytest.raises(pyfuse3.FUSEError) as failure:
        await fs.read(old_fh, 2 * MiB, 4096)  # not cached, and its object is gone
    assert failure.value.errno == errno.ESTALE

    # The name leads to a new inode holding the new content, listing TTL notwithstanding.
    new_ino = await _lookup(fs)
    assert new_ino != old_ino
    assert (await fs.getattr(new_ino, None)).st_size == len(NEW)  # type: ignore[arg-type]
    # The old inode, reached through the kernel's cached entry, is stale.
    with pytest.raises(pyfuse3.FUSEError) as failure:
        await _open(fs, old_ino)
    assert failure.value.errno == errno.ESTALE
    new_fh = (await _open(fs, new_ino)).fh
    assert await fs.read(new_fh, 0, len(NEW) + 10) == NEW

    # The old descriptor reads its own version from the cache, and nothing of the new one.
    assert await fs.read(old_fh, 0, 4096) == OLD[:4096]
    with pytest.raises(pyfuse3.FUSEError):
        await fs.read(old_fh, 2 * MiB, 4096)
    records = journal.all_files()
    assert len(records) == 2
    detached = next(r for r in records if r.deleted)
    assert (detached.remote_uuid, detached.remote_file_id) == (None, "old")
    assert journal.find_by_remote(FILE) is not None
    assert journal.find_by_remote(FILE).remote_file_id == "new"  # type: ignore[union-attr]

    # Its last close drops the old version's record and cache file.
    await fs.release(old_fh)
    assert [r.local_id for r in journal.all_files()] == [journal.find_by_remote(FILE).local_id]  # type: ignore[union-attr]
    assert _cache_files(tmp_path) == [str(journal.all_files()[0].local_id)]
    await fs.release(new_fh)


async def test_replacement_with_nothing_open_keeps_the_inode_and_drops_old_pages(
    tmp_path: Path,
) -> None:
    server, clock = Server(), [1000.0]
    fs, journal = _mount(tmp_path, server, clock)
    ino = await _lookup(fs)
    fh = (await _open(fs, ino)).fh
    assert await fs.read(fh, 0, 4096) == OLD[:4096]
    await fs.release(fh)

    server.replace(NEW, "new")
    clock[0] += 601  # the listing expires and shows the new object
    assert await _lookup(fs) == ino
    info = await _open(fs, ino)
    assert not info.keep_cache  # the kernel must not serve pages of the old content
    assert await fs.read(info.fh, 0, len(NEW)) == NEW
    await fs.release(info.fh)
    assert (await _open(fs, ino)).keep_cache  # once is enough
    assert len(journal.all_files()) == 1


async def test_file_deleted_elsewhere_while_open_leaves_the_listing(tmp_path: Path) -> None:
    server, clock = Server(), [1000.0]
    fs, journal = _mount(tmp_path, server, clock)
    ino = await _lookup(fs)
    fh = (await _open(fs, ino)).fh
    assert await fs.read(fh, 0, 4096) == OLD[:4096]

    server.delete_elsewhere(FILE)
    with pytest.raises(pyfuse3.FUSEError) as failure:
        await fs.read(fh, 2 * MiB, 4096)
    assert failure.value.errno == errno.ESTALE
    with pytest.raises(pyfuse3.FUSEError) as failure:
        await _lookup(fs)
    assert failure.value.errno == errno.ENOENT
    assert await fs.read(fh, 0, 4096) == OLD[:4096]
    await fs.release(fh)
    assert journal.all_files() == []
    assert _cache_files(tmp_path) == []


async def test_the_entry_replaced_elsewhere_keeps_its_owner_and_mode(tmp_path: Path) -> None:
    """The owner and mode this mount keeps for the entry stay with it when its open version is
    detached: the name's new inode shows them, not the mount's defaults."""
    server, clock = Server(), [1000.0]
    fs, journal = _mount(tmp_path, server, clock)
    journal.set_owner(FILE, Owner(mode=0o750, uid=1234, gid=4321))
    old_ino = await _lookup(fs)
    old_fh = (await _open(fs, old_ino)).fh
    assert await fs.read(old_fh, 0, 4096) == OLD[:4096]
    server.replace(NEW, "new")
    with pytest.raises(pyfuse3.FUSEError):
        await fs.read(old_fh, 2 * MiB, 4096)
    new_ino = await _lookup(fs)
    assert new_ino != old_ino
    attrs = await fs.getattr(new_ino, None)  # type: ignore[arg-type]
    assert (attrs.st_mode & 0o7777, attrs.st_uid, attrs.st_gid) == (0o750, 1234, 4321)
    await fs.release(old_fh)
    assert journal.owner(FILE) == Owner(mode=0o750, uid=1234, gid=4321)
