"""The same handler scenarios over the in-memory remote and over the real protocol client
against the emulator (sockets, encryption, the retry and replica-lag logic): what this tier
proves over FakeRemote holds over what mount.py wires. A contract test of FakeRemote too: a
scenario passing on one and failing on the other means the fake has drifted from Internxt.

Needs the emulator process (no root, no /dev/fuse); a few seconds per scenario, so only the
namespace scenarios are run both ways. Checks go through the Remote interface only, and
"another client" is a second login of the same account.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from internxtfs.fs.modes import DeleteMode
from internxtfs.fs.operations import MountOptions
from internxtfs.fs.remote import InternxtRemote, Remote
from internxtfs.internxt.client import InternxtClient
from tests.fs_api.conftest import serving
from tests.harness.fake_remote import ROOT, FakeRemote
from tests.harness.in_process import InProcess, build


@dataclass
class Setup:
    mounted: InProcess
    root: str  # the account's root folder
    other: Remote  # another client of the same account


async def _login(emulator: Any, user: dict[str, Any]) -> InternxtClient:
    client = InternxtClient(drive_url=emulator.drive_url, network_url=emulator.network_url)
    await client.login(user["email"], user["password"])
    return client


@asynccontextmanager
async def _setup(
    kind: str, tmp_path: Path, emulator_factory: Callable[..., Any], mode: DeleteMode
) -> AsyncIterator[Setup]:
    options = MountOptions(delete_mode=mode)
    if kind == "fake":
        fake = FakeRemote(delete_mode=mode)
        yield Setup(build(tmp_path, fake, options=options, quiet_period=0.0), ROOT, fake)
        return
    emulator = emulator_factory()
    user = emulator.add_user()
    ours, theirs = await _login(emulator, user), await _login(emulator, user)
    async with ours, theirs:
        root = ours.session.root_folder_uuid
        remote = InternxtRemote(ours.drive, ours.network, delete_mode=mode)
        mounted = build(tmp_path, remote, options=options, root_uuid=root, quiet_period=0.0)
        yield Setup(mounted, root, InternxtRemote(theirs.drive, theirs.network))


@pytest.fixture(params=["fake", "emulator"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _names(remote: Remote, folder: str) -> list[str]:
    files = [f.name for f in await remote.list_files(folder)]
    return sorted(files + [d.name for d in await remote.list_folders(folder)])


async def _content(remote: Remote, folder: str, name: str) -> bytes | None:
    found = await remote.files_exist(folder, [name])
    if not found:
        return None
    entry = found[0]
    return (
        b"" if entry.file_id is None else await remote.download_range(entry.file_id, 0, entry.size)
    )


async def _replace(remote: Remote, uuid: str, data: bytes) -> None:
    async def read(offset: int, n: int) -> bytes:
        return data[offset : offset + n]

    await remote.replace_file(uuid, await remote.upload(read, len(data)), len(data))


async def test_rename_over_a_stored_file(
    kind: str, tmp_path: Path, emulator_factory: Callable[..., Any]
) -> None:
    async with _setup(kind, tmp_path, emulator_factory, DeleteMode.PERMANENT) as s:
        m = s.mounted
        async with serving(m):
            await m.write_file("a", b"new content")
            await m.write_file("b", b"old content")
            assert await m.uploader.wait_idle() == {}
            await m.rename("a", "b")
            assert await m.fs.replacements.resolve_all() == 0
        assert await _names(s.other, s.root) == ["b"]
        assert await _content(s.other, s.root, "b") == b"new content"


async def test_unlink_while_open(
    kind: str, tmp_path: Path, emulator_factory: Callable[..., Any]
) -> None:
    data = os.urandom(200_000)
    async with _setup(kind, tmp_path, emulator_factory, DeleteMode.PERMANENT) as s:
        m = s.mounted
        async with serving(m):
            ino = await m.write_file("f", data)
            assert await m.uploader.wait_idle() == {}
            fh = await m.open(ino)
            await m.unlink("f")
            assert await _names(s.other, s.root) != ["f"]  # moved aside: the name is free
            local_id = m.fs.table.get(ino).local_id  # type: ignore[union-attr]
            m.cache.invalidate(local_id)  # read from the entry kept aside
            assert await m.fs.read(fh, 0, len(data)) == data
            await m.fs.release(fh)
            assert await m.uploader.wait_idle() == {}
        assert await _names(s.other, s.root) == []


async def test_changed_elsewhere_with_unsent_changes_keeps_both(
    kind: str, tmp_path: Path, emulator_factory: Callable[..., Any]
) -> None:
    async with _setup(kind, tmp_path, emulator_factory, DeleteMode.PERMANENT) as s:
        m = s.mounted
        async with serving(m):
            ino = await m.write_file("notes.txt", b"base")
            assert await m.uploader.wait_idle() == {}
            (entry,) = await s.other.files_exist(s.root, ["notes.txt"])
            fh = await m.open(ino, os.O_WRONLY)
            await m.fs.write(fh, 0, b"ours")
            await _replace(s.other, entry.uuid, b"theirs")
            await m.fs.release(fh)
            assert await m.uploader.wait_idle() == {}
        names = await _names(s.other, s.root)
        assert len(names) == 2 and "notes.txt" in names
        ours = next(n for n in names if n != "notes.txt")
        assert ours.startswith("notes (internxtfs conflict ")
        assert await _content(s.other, s.root, "notes.txt") == b"theirs"
        assert await _content(s.other, s.root, ours) == b"ours"


async def test_unlink_in_trash_mode(
    kind: str, tmp_path: Path, emulator_factory: Callable[..., Any]
) -> None:
    async with _setup(kind, tmp_path, emulator_factory, DeleteMode.TRASH) as s:
        m = s.mounted
        async with serving(m):
            await m.write_file("f", b"keep me")
            assert await m.uploader.wait_idle() == {}
            (entry,) = await s.other.files_exist(s.root, ["f"])
            await m.unlink("f")
            assert await m.uploader.wait_idle() == {}
        assert await _names(s.other, s.root) == []
        assert (await s.other.file_meta(entry.uuid)).status == "TRASHED"
