"""Hostile tests of the offline replay (fs/pending.py): queued moves whose target name is still
held on the server when they are sent, fsync meeting an outage the mount has not noticed yet.

Each test mounts for real against the emulator, breaks the server (stopped, hanging, lagging
replicas, another client), and then checks what the server holds with the protocol client
(tests/harness/remote.py), never through the mount that did it alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from internxtfs.internxt.client import InternxtClient
from tests.harness import remote
from tests.harness.durability import bounded, flush_ok, status, wait_for, write_file
from tests.harness.mounting import MountedFS

TTL = ("--dir-cache-ttl", "1")
LAG_MS = "1200"  # replicas 1.2 s behind the primary (Internxt's lag is well under that)


def _other_client(m: MountedFS, act: Callable[[InternxtClient], Awaitable[None]]) -> None:
    """Another client of the same account (the protocol client, straight to the emulator)."""

    async def run() -> None:
        emulator = m.emulator
        async with InternxtClient(
            drive_url=emulator.drive_url, network_url=emulator.network_url
        ) as client:
            await client.login(m.user["email"], m.user["password"])
            await act(client)

    trio.run(run)


def _uuid(m: MountedFS, path: str) -> str:
    m.emulator.wait_for_replicas()
    [entry] = [e for e in remote.entries(m.emulator, m.user, download=False) if e.path == path]
    return entry.uuid


def _stored(m: MountedFS) -> dict[str, bytes]:
    m.emulator.wait_for_replicas()
    return remote.snapshot(m.emulator, m.user)


def test_a_queued_move_onto_a_name_our_queued_unlink_frees_takes_it_after_kill_9(
    new_mount: Any, emulator_factory: Any
) -> None:
    """Offline: rm b.txt, mv a.txt b.txt, kill -9. Mounted again with the server back and its
    replicas 1.2 s behind: the delete of b.txt and the move go, in that order, and a.txt's
    content ends under b.txt (the name asked), not under a marked name."""
    m: MountedFS = new_mount(*TTL)
    m.unmount()
    m.emulator.stop()
    m.emulator.start(["--replica-lag-ms", LAG_MS])
    m.mount(*TTL)
    write_file(m.mountpoint / "a.txt", b"a, renamed onto b")
    write_file(m.mountpoint / "b.txt", b"b, unlinked offline")
    flush_ok(m)
    m.emulator.stop()
    try:
        time.sleep(1.5)  # past the listing TTL
        bounded(lambda: os.unlink(m.mountpoint / "b.txt"), 10, "rm")
        bounded(lambda: os.rename(m.mountpoint / "a.txt", m.mountpoint / "b.txt"), 10, "mv")
        m.kill()
    finally:
        m.emulator.start()
    m.mount(*TTL)
    flush_ok(m)
    assert _stored(m) == {"b.txt": b"a, renamed onto b"}
    assert sorted(os.listdir(m.mountpoint)) == ["b.txt"]


def test_a_queued_move_onto_a_name_another_client_frees_at_the_return_takes_it(
    new_mount: Any,
) -> None:
    """Offline: mv a.txt b.txt. Meanwhile another client made b.txt, and deletes it the moment
    the server is back, with replicas 1.2 s behind: the replay's move meets a name that only the
    lagging replicas still show taken. Ours must take b.txt, not a marked name."""
    m: MountedFS = new_mount(*TTL)
    write_file(m.mountpoint / "a.txt", b"ours, renamed offline")
    flush_ok(m)
    m.emulator.stop()
    try:
        time.sleep(1.5)
        bounded(lambda: os.rename(m.mountpoint / "a.txt", m.mountpoint / "b.txt"), 10, "mv")
        assert status(m)["uploads"]["namespace_queued"] == 1
    finally:
        m.emulator.start(["--replica-lag-ms", LAG_MS])
    root: list[str] = []

    async def make_b(client: InternxtClient) -> None:
        root.append(client.session.root_folder_uuid)
        data = b"theirs, gone soon"

        async def read(offset: int, n: int) -> bytes:
            return data[offset : offset + n]

        file_id = await client.network.upload(read, len(data))
        entry = await client.drive.create_file(root[0], "b.txt", len(data), file_id)
        await client.drive.delete_file(entry.uuid)

    _other_client(m, make_b)
    flush_ok(m)
    assert _stored(m) == {"b.txt": b"ours, renamed offline"}


def _fsync_meets_a_new_outage(m: MountedFS, break_server: Callable[[], None]) -> float:
    """Write into a stored file, break the server, fsync at once (the mount has not noticed
    the outage yet): returns how long fsync took; raises what it raised."""
    path = m.mountpoint / "doc.txt"
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"edited just before the outage", 0)
        break_server()
        start = time.monotonic()
        bounded(lambda: os.fsync(fd), 60, "fsync")
        return time.monotonic() - start
    finally:
        os.close(fd)


def test_fsync_meeting_a_server_that_just_stopped_keeps_the_data_and_returns(
    new_mount: Any,
) -> None:
    """The server stops right before fsync: fsync returns (the data durable in the cache,
    --fsync-offline local) within seconds, not after the upload's whole retry schedule; the
    edit is stored once the server is back, and a kill -9 meanwhile loses nothing."""
    m: MountedFS = new_mount(*TTL)
    write_file(m.mountpoint / "doc.txt", b"original content, stored")
    flush_ok(m)
    try:
        took = _fsync_meets_a_new_outage(m, m.emulator.stop)
        assert took < 10, took
        m.kill()  # what fsync acknowledged must survive a crash
    finally:
        m.emulator.start()
    m.mount(*TTL)
    flush_ok(m)
    assert _stored(m) == {"doc.txt": b"edited just before the outage"}


def test_fsync_meeting_a_server_that_just_hung_keeps_the_data_and_returns(
    new_mount: Any,
) -> None:
    """As above with a server that takes connections and never answers (SIGSTOP)."""
    m: MountedFS = new_mount(*TTL)
    write_file(m.mountpoint / "doc.txt", b"original content, stored")
    flush_ok(m)
    try:
        took = _fsync_meets_a_new_outage(m, m.emulator.pause)
        assert took < 20, took
    finally:
        m.emulator.resume()
    flush_ok(m)
    assert _stored(m) == {"doc.txt": b"edited just before the outage"}
