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

from internxtfs.fs.crashpoints import ENV as CRASH_ENV
from internxtfs.internxt.client import InternxtClient
from tests.harness import remote
from tests.harness.durability import bounded, flush_ok, local_tree, status, wait_for, write_file
from tests.harness.mounting import MountedFS

TTL = ("--dir-cache-ttl", "1")
LAG_MS = "1200"  # replicas 1.2 s behind the primary (Internxt's lag is well under that)


def _other_client(m: MountedFS, act: Callable[[InternxtClient], Awaitable[None]]) -> None:
    """Another client of the same account (the protocol client, straight to the emulator)."""
    remote.as_other_client(m.emulator, m.user, act)


def _uuid(m: MountedFS, path: str) -> str:
    return remote.uuid_of(m.emulator, m.user, path)


def _stored(m: MountedFS) -> dict[str, bytes]:
    m.emulator.wait_for_replicas()
    return remote.snapshot(m.emulator, m.user)


def test_a_queued_move_onto_a_name_another_client_frees_at_the_return_takes_it(
    new_mount: Any,
) -> None:
    """Offline: mv a.txt b.txt. Once the server is back, another client makes b.txt and deletes
    it at once, with replicas 2.5 s behind: the replay's move meets a name that only the
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
        # The replay's move is refused (5xx) until the other client has come and gone, and
        # replicas lag long enough that its next attempt meets the name still shown taken.
        m.emulator.start(["--replica-lag-ms", "2500", "--fault-method", "PATCH",
                          "--fail-rate", "1"])  # fmt: skip
    wait_for("the replay to try the move", lambda: m.emulator.stats()["faults_injected"], 20)
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
    m.emulator.set_faults(fail_rate=0.0)
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


def _tree(root: Any) -> list[str]:
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


def _offline_workload(mnt: Any) -> None:
    """A queue that mixes every kind of change, each depending on the one before: folders
    made, renamed, removed and made again under the same name; files moved into folders made
    offline; renames over stored files; an unlink; a file made offline renamed over."""
    calls: list[tuple[str, Callable[[], object]]] = [
        ("mkdir n1/n2", lambda: (mnt / "n1/n2").mkdir(parents=True)),
        ("mv d1/f1 n1/n2", lambda: os.rename(mnt / "d1/f1.txt", mnt / "n1/n2/f1.txt")),
        ("mv d1 d1r", lambda: os.rename(mnt / "d1", mnt / "d1r")),
        ("rmdir d2", lambda: os.rmdir(mnt / "d2")),
        ("mv x over y", lambda: os.rename(mnt / "x.txt", mnt / "y.txt")),
        ("mv f2 over f3", lambda: os.rename(mnt / "d1r/f2.txt", mnt / "d1r/f3.txt")),
        ("rm f4", lambda: os.unlink(mnt / "d1r/f4.txt")),
        ("mkdir d2 again", lambda: (mnt / "d2").mkdir()),
        ("mv y into d2", lambda: os.rename(mnt / "y.txt", mnt / "d2/y.txt")),
        ("new file", lambda: write_file(mnt / "n1/new.txt", b"made offline")),
        ("new over f5", lambda: write_file(mnt / "d1r/.f5.tmp", b"f5, rewritten")),
        ("tmp over f5", lambda: os.rename(mnt / "d1r/.f5.tmp", mnt / "d1r/f5.txt")),
        ("mv n1 d2/n1", lambda: os.rename(mnt / "n1", mnt / "d2/n1")),
    ]
    for what, call in calls:
        bounded(call, 10, what)


def test_kill_9_in_the_middle_of_a_lagging_replay_lands_the_tree_once(new_mount: Any) -> None:
    """A queue of dependent changes made offline; the server comes back with replicas 1.2 s
    behind and 150 ms per request; kill -9 while the replay is half done, mount again: the
    server ends with exactly the tree the mount showed, and so does a fresh mount. (The same
    with the server hanging for 8 s, or stopped for 4 s, in the middle of the replay instead
    of the kill, or 40 % of answers lost during it, passed too: not kept, for time.)"""
    m: MountedFS = new_mount(*TTL)
    mnt = m.mountpoint
    (mnt / "d1").mkdir()
    (mnt / "d2").mkdir()
    for i in range(1, 6):
        write_file(mnt / f"d1/f{i}.txt", f"file {i}".encode())
    write_file(mnt / "x.txt", b"x, renamed over y")
    write_file(mnt / "y.txt", b"y, replaced")
    flush_ok(m)
    m.emulator.stop()
    try:
        time.sleep(1.5)
        _offline_workload(mnt)
        expected_tree = bounded(lambda: _tree(mnt), 10, "ls -R")
        expected = bounded(lambda: local_tree(mnt), 10, "read all")
        queued = status(m)["uploads"]["namespace_queued"]
        assert queued >= 8, queued
    finally:
        m.emulator.start(["--replica-lag-ms", LAG_MS, "--latency-ms", "150"])
    wait_for(
        "the replay to be half done",
        lambda: status(m)["uploads"]["namespace_queued"] <= queued // 2,
        60,
    )
    m.kill()
    m.emulator.set_faults(latency_ms=0)
    m.mount(*TTL)
    flush_ok(m, timeout=120)
    assert _stored(m) == expected
    assert sorted(f + "/" for f in remote.folders(m.emulator, m.user)) == [
        p for p in expected_tree if p.endswith("/")
    ]
    assert _tree(mnt) == expected_tree
    m.remount(*TTL, cold=True)
    assert _tree(mnt) == expected_tree and local_tree(mnt) == expected
    assert "Traceback" not in m.log_file.read_text()


def test_a_file_whose_replace_was_cut_by_a_crash_then_unlinked_offline_stays_deleted(
    new_mount: Any,
) -> None:
    """An edit's replace lands and the mount dies before its journal knows (kill -9 at the
    crash point); mounted again with the server down, the file is removed (rm) and another
    renamed over a second one. Back online: the late deletes check the entries' content and
    must take our own lost replace for ours, not for another client's version: nothing the
    user deleted comes back."""
    m: MountedFS = new_mount(*TTL, crash_at="after-replace")
    write_file(m.mountpoint / "b.txt", b"v1")
    write_file(m.mountpoint / "t.txt", b"target v1")
    write_file(m.mountpoint / "s.txt", b"source")
    flush_ok(m)
    time.sleep(1.5)  # the listings are saved every second: after a crash, older ones show
    write_file(m.mountpoint / "b.txt", b"v2, replace landed, crash before the journal knew")
    wait_for("the crash point", lambda: m.proc is not None and m.proc.poll() is not None, 30)
    m.proc = None
    m.env.pop(CRASH_ENV)
    m.emulator.stop()
    try:
        m.mount(*TTL)
        bounded(lambda: os.unlink(m.mountpoint / "b.txt"), 10, "rm")
        bounded(lambda: os.rename(m.mountpoint / "s.txt", m.mountpoint / "t.txt"), 10, "mv")
        m.kill()
    finally:
        m.emulator.start()
    m.mount(*TTL)
    flush_ok(m)
    assert _stored(m) == {"t.txt": b"source"}
    assert sorted(os.listdir(m.mountpoint)) == ["t.txt"]


def test_two_mounts_queue_renames_onto_the_same_name_offline_and_both_are_kept(
    new_mount: Any,
) -> None:
    """Two mounts of one account, each renames its own stored file onto the same new name
    while the server is down (and one also renames a folder both know). Back online, both
    replays run at once: one file takes the name, the other is stored beside it under a
    marked name; nothing is lost, and both mounts end showing the server's tree."""
    a: MountedFS = new_mount(*TTL, name="a")
    b: MountedFS = new_mount(*TTL, user=a.user, name="b")
    write_file(a.mountpoint / "from-a.txt", b"written by a")
    (a.mountpoint / "shared").mkdir()
    flush_ok(a)
    write_file(b.mountpoint / "from-b.txt", b"written by b")
    flush_ok(b)
    wait_for("b to see a's files", lambda: "shared" in os.listdir(b.mountpoint), 10)
    wait_for("a to see b's file", lambda: "from-b.txt" in os.listdir(a.mountpoint), 10)
    a.emulator.stop()
    try:
        time.sleep(1.5)
        bounded(lambda: os.rename(a.mountpoint / "from-a.txt", a.mountpoint / "z.txt"), 10, "mv")
        bounded(lambda: os.rename(b.mountpoint / "from-b.txt", b.mountpoint / "z.txt"), 10, "mv")
        bounded(lambda: os.rename(b.mountpoint / "shared", b.mountpoint / "moved"), 10, "mv")
    finally:
        a.emulator.start()
    flush_ok(a)
    flush_ok(b)
    stored = _stored(a)
    assert sorted(stored.values()) == [b"written by a", b"written by b"]
    names = sorted(stored)
    assert "z.txt" in names, names
    [marked] = [n for n in names if n != "z.txt"]
    assert marked.startswith("z (internxtfs conflict ") and marked.endswith(").txt"), names
    assert remote.folders(a.emulator, a.user) == ["moved"]
    for m in (a, b):
        wait_for(
            f"{m.mountpoint} to show the server's tree",
            lambda m=m: sorted(os.listdir(m.mountpoint)) == sorted([*names, "moved"]),
            15,
        )
        assert "Traceback" not in m.log_file.read_text()
