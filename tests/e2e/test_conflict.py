"""Conflict policy: a file changed elsewhere while this mount holds unsent changes keeps both."""

from __future__ import annotations

import os
from typing import Any

import trio

from tests.harness import remote
from tests.harness.mounting import MountedFS, cli


def test_remote_change_during_unsent_local_change_keeps_both(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    a: MountedFS = mounted_factory(fs_user, "--upload-delay", "600", name="a")
    (a.mountpoint / "report.txt").write_text("base")
    assert cli("flush", str(a.mountpoint), env=a.env).returncode == 0

    b: MountedFS = mounted_factory(fs_user, "--dir-cache-ttl", "0.5", name="b")
    assert (b.mountpoint / "report.txt").read_text() == "base"

    (a.mountpoint / "report.txt").write_text("ours, not sent yet")  # held by the long delay
    (b.mountpoint / "report.txt").write_text("theirs")
    assert cli("flush", str(b.mountpoint), env=b.env).returncode == 0
    # A is to notice another client's change, which lagging replicas may not show yet.
    b.emulator.wait_for_replicas()

    assert cli("flush", str(a.mountpoint), env=a.env).returncode == 0
    assert "keeping both" in a.log()

    c: MountedFS = mounted_factory(fs_user, name="c")  # a fresh view of what is stored
    names = sorted(os.listdir(c.mountpoint))
    assert len(names) == 2, names
    assert (c.mountpoint / "report.txt").read_text() == "theirs"
    kept = next(n for n in names if n != "report.txt")
    assert kept.startswith("report (internxtfs conflict ") and kept.endswith(").txt")
    assert (c.mountpoint / kept).read_text() == "ours, not sent yet"


def test_rename_over_a_name_created_elsewhere_after_our_listing(mounted_factory: Any) -> None:
    """rsync's pattern (write a temp file, rename it over the target) when another client
    created the target after this mount listed the folder: rename(2) replaces it, it does
    not fail with EEXIST."""
    m: MountedFS = mounted_factory(None, "--dir-cache-ttl", "600")
    mnt = m.mountpoint
    (mnt / ".target.txt.tmp").write_bytes(b"ours, renamed into place")
    assert cli("flush", str(mnt), env=m.env).returncode == 0
    assert os.listdir(mnt) == [".target.txt.tmp"]  # listed: the target is not there yet

    async def create_target() -> None:
        client = await remote._login(m.emulator, m.user)
        async with client:
            data = b"theirs"

            async def read(offset: int, length: int) -> bytes:
                return data[offset : offset + length]

            file_id = await client.network.upload(read, len(data))
            await client.drive.create_file(
                client.session.root_folder_uuid, "target.txt", len(data), file_id
            )

    trio.run(create_target)
    m.emulator.wait_for_replicas()  # another client's change: replicas may not show it yet
    os.rename(mnt / ".target.txt.tmp", mnt / "target.txt")
    assert cli("flush", str(mnt), env=m.env).returncode == 0
    assert remote.snapshot(m.emulator, m.user) == {"target.txt": b"ours, renamed into place"}
    assert (mnt / "target.txt").read_bytes() == b"ours, renamed into place"


def test_rename_already_made_elsewhere_keeps_the_file(mounted_factory: Any) -> None:
    """Another client made the very same rename while our listing was stale: Internxt refuses
    our move (the name is taken, by the file itself). The rename is done; the file must not
    be taken for a stranger in the way and deleted."""
    m: MountedFS = mounted_factory(None, "--dir-cache-ttl", "600")
    mnt = m.mountpoint
    (mnt / "a.txt").write_bytes(b"precious")
    assert cli("flush", str(mnt), env=m.env).returncode == 0
    assert os.listdir(mnt) == ["a.txt"]

    async def rename_elsewhere() -> None:
        client = await remote._login(m.emulator, m.user)
        async with client:
            (entry,) = await client.drive.list_files(client.session.root_folder_uuid)
            await client.drive.move_file(entry.uuid, client.session.root_folder_uuid, "b.txt")

    m.emulator.wait_for_replicas()  # the other client lists what we just stored
    trio.run(rename_elsewhere)
    m.emulator.wait_for_replicas()
    os.rename(mnt / "a.txt", mnt / "b.txt")
    assert (mnt / "b.txt").read_bytes() == b"precious"
    assert cli("flush", str(mnt), env=m.env).returncode == 0
    assert remote.snapshot(m.emulator, m.user) == {"b.txt": b"precious"}
