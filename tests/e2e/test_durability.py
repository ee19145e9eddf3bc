"""Crash matrix: ``kill -9`` of the mount at every step of a file's way to Internxt.

Each test stops the mount at one precise point, either with an emulator fault that holds the
upload there (bandwidth cap: object PUT in flight; a failing drive call: network object
finished, drive entry not created/replaced) or with a crash point of the filesystem
(``INTERNXTFS_TEST_CRASH_AT``, internxtfs/fs/crashpoints.py) where two steps follow each other
without a network wait. Then it mounts again on the same cache directory, runs
``internxtfs flush`` and compares every remote file, read with the protocol client and not
through the mount, with what was written: every file closed before the kill is byte-identical,
nothing is duplicated, nothing deleted comes back. A :class:`RemoteWatcher` polls the remote
tree meanwhile: no file is ever visible under its name with incomplete content. Network objects
left unreferenced take the account's space on the bridge until deleted: after the flush none
may be left (the bridge's usage equals the drive's, the journal's ``orphans`` table is empty).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from typing import Any

from tests.harness import remote
from tests.harness.durability import (
    MiB,
    flush_ok,
    journal_files,
    local_tree,
    remount_after_crash,
    status,
    wait_for,
    wait_for_death,
    write_file,
)
from tests.harness.mounting import MountedFS
from tests.harness.remote import RemoteWatcher, digest

HOLD = "3600"  # --upload-delay that keeps closed files in the cache until flushed


def data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def only(expected: dict[str, bytes], also: dict[str, bytes] | None = None) -> Callable[..., Any]:
    """Watcher rule: a path may hold its expected content (or the ``also`` one), nothing else
    may be visible at all."""

    def allowed(path: str) -> set[str]:
        out = {digest(v) for k, v in (also or {}).items() if k == path}
        if path in expected:
            out.add(digest(expected[path]))
        return out

    return allowed


def check_remote(m: MountedFS, expected: dict[str, bytes]) -> None:
    got = remote.snapshot(m.emulator, m.user)
    assert sorted(got) == sorted(expected), "remote tree differs from what was written"
    for path, content in expected.items():
        assert got[path] == content, f"{path}: remote content differs ({len(got[path])} bytes)"
    total = sum(len(v) for v in expected.values())
    assert remote.usage(m.emulator, m.user) == total
    # No orphaned object is left taking space on the bridge.
    info = m.emulator.user_info(m.user["email"])
    assert (info["driveUsage"], info["networkUsage"]) == (total, total)
    assert status(m)["uploads"]["orphans"] == 0


def stats_count(emulator: Any, route: str) -> int:
    return int(emulator.stats()["requests"].get(route, 0))


def test_crash_before_upload_keeps_every_pending_change(new_mount: Any) -> None:
    """Killed with everything still in the cache: closed files, a file open mid-write, renames
    and unlinks of files never uploaded, edits/renames/unlinks of uploaded files, mtimes."""
    m: MountedFS = new_mount("--upload-delay", HOLD)
    mnt = m.mountpoint
    # Already stored before the bad day.
    (mnt / "old").mkdir()
    stored = {
        "old/keep.txt": b"untouched",
        "edit.bin": data(1, 2 * MiB + 100),
        "moved.bin": data(2, 50_000),
        "gone.bin": b"deleted before the crash",
        "target.txt": b"will be replaced by a rename",
    }
    for path, content in stored.items():
        write_file(mnt / path, content)
    flush_ok(m)

    expected = {"old/keep.txt": stored["old/keep.txt"]}
    # New files, closed: several blocks, an unaligned size, empty, Internxt-split names, mtime.
    expected["new/a.bin"] = data(3, 3 * MiB + 5)
    expected["new/empty"] = b""
    expected["new/arch.tar.gz"] = data(4, 70_001)
    (mnt / "new").mkdir()
    for path in ("new/a.bin", "new/empty", "new/arch.tar.gz"):
        write_file(mnt / path, expected[path])
    os.utime(mnt / "new/arch.tar.gz", (1_600_000_000.25, 1_600_000_000.25))
    # An uploaded file edited in place (middle overwrite + append): a pending replace.
    edited = bytearray(stored["edit.bin"])
    edited[MiB : MiB + 10] = b"X" * 10
    edited += b"appended"
    with open(mnt / "edit.bin", "r+b") as fh:
        fh.seek(MiB)
        fh.write(b"X" * 10)
        fh.seek(0, os.SEEK_END)
        fh.write(b"appended")
    expected["edit.bin"] = bytes(edited)
    # An uploaded file appended to, then renamed (the remote move is sent at once).
    with open(mnt / "moved.bin", "ab") as fh:
        fh.write(b"tail")
    (mnt / "sub").mkdir()
    os.rename(mnt / "moved.bin", mnt / "sub/moved2.bin")
    expected["sub/moved2.bin"] = stored["moved.bin"] + b"tail"
    # An uploaded file unlinked.
    os.unlink(mnt / "gone.bin")
    # Files never uploaded: renamed (journal only), unlinked, renamed over an uploaded file.
    write_file(mnt / "c.txt", b"renamed before upload")
    os.rename(mnt / "c.txt", mnt / "sub/c2.txt")
    expected["sub/c2.txt"] = b"renamed before upload"
    write_file(mnt / "d.txt", b"unlinked before upload")
    os.unlink(mnt / "d.txt")
    write_file(mnt / "newer.txt", b"the new target content")
    os.rename(mnt / "newer.txt", mnt / "target.txt")
    expected["target.txt"] = b"the new target content"
    # A file still open, partly written: every write() that returned is in the cache.
    fd = os.open(mnt / "writing.log", os.O_WRONLY | os.O_CREAT, 0o644)
    written = b""
    for i in range(3):
        chunk = data(10 + i, 300_000 + i)
        assert os.write(fd, chunk) == len(chunk)
        written += chunk
    expected["writing.log"] = written

    st = status(m)["uploads"]
    assert st["pending_files"] >= 7 and st["uploaded"] == 5, st
    m.kill()
    with contextlib.suppress(OSError):  # the mount is gone: this may fail, and must not matter
        os.close(fd)

    # Before its replace, the moved file holds its old (complete) content under the new name.
    old = stored | {"sub/moved2.bin": stored["moved.bin"]}
    with RemoteWatcher(m.emulator, m.user, only(expected, also=old)) as watcher:
        remount_after_crash(m)
        flush_ok(m)
    assert watcher.polls > 0 and not watcher.violations, watcher.violations
    check_remote(m, expected)
    # The cold view through a new mount agrees, mtime included (Internxt keeps milliseconds).
    m.remount(cold=True)
    assert local_tree(m.mountpoint) == expected
    assert (m.mountpoint / "new/arch.tar.gz").stat().st_mtime_ns == 1_600_000_000_250_000_000
    assert "Traceback" not in m.log_file.read_text()


def test_crash_while_the_object_upload_is_in_flight(new_mount: Any) -> None:
    """kill -9 while the object PUT streams (emulator bandwidth cap): nothing is published,
    and the next mount uploads the file again from the cache."""
    m: MountedFS = new_mount()
    emulator = m.emulator
    expected = {"small.txt": b"small", "big.bin": data(20, 2 * MiB)}
    write_file(m.mountpoint / "small.txt", expected["small.txt"])
    flush_ok(m)
    emulator.set_faults(bandwidth=256 * 1024)  # the 2 MiB PUT takes ~8 s
    try:
        with RemoteWatcher(emulator, m.user, only(expected)) as watcher:
            before = stats_count(emulator, "PUT /objects/{name}")
            write_file(m.mountpoint / "big.bin", expected["big.bin"])
            wait_for(
                "the object PUT", lambda: stats_count(emulator, "PUT /objects/{name}") > before
            )
            wait_for("a watcher poll", lambda: watcher.polls >= 2)
            assert status(m)["uploads"]["in_flight"] == 1
            m.kill()
            names = [f.path for f in remote.entries(emulator, m.user, download=False)]
            assert names == ["small.txt"], names
            emulator.set_faults(bandwidth=0)
            remount_after_crash(m)
            flush_ok(m)
    finally:
        emulator.set_faults(bandwidth=0)
    assert watcher.polls > 0 and not watcher.violations, watcher.violations
    check_remote(m, expected)


def test_crash_mid_multipart_upload(new_mount: Any) -> None:
    """kill -9 while the parts of a 110 MiB file (multipart from 100 MiB) stream: no entry is
    published (the unfinished network upload is never finished, so it holds no object), and the
    next mount uploads the whole file again, byte-identical."""
    m: MountedFS = new_mount()
    emulator = m.emulator
    expected = {"big.bin": data(25, 110 * MiB + 12_345)}
    emulator.set_faults(bandwidth=8 * MiB)  # per part: a 30 MiB part takes ~4 s
    try:
        with RemoteWatcher(emulator, m.user, only(expected), interval=0.5) as watcher:
            before = stats_count(emulator, "PUT /objects/{name}")
            write_file(m.mountpoint / "big.bin", expected["big.bin"])
            # One file, several PUTs at once: its parts (a single-part upload is one PUT).
            wait_for(
                "several part PUTs in flight",
                lambda: stats_count(emulator, "PUT /objects/{name}") >= before + 2,
            )
            wait_for("a watcher poll", lambda: watcher.polls >= 2)
            m.kill()
            assert remote.entries(emulator, m.user, download=False) == []
            emulator.set_faults(bandwidth=0)
            remount_after_crash(m)
            flush_ok(m, timeout=120)
    finally:
        emulator.set_faults(bandwidth=0)
    assert watcher.polls > 0 and not watcher.violations, watcher.violations
    check_remote(m, expected)


def test_object_superseded_during_its_upload_is_deleted(new_mount: Any) -> None:
    """The file changes while its object streams: that object is never published (it would
    mix versions) and, since the bridge charges for it, it is deleted; the new content is
    stored and the account pays for exactly the stored bytes."""
    m: MountedFS = new_mount()
    emulator = m.emulator
    first, second = data(70, 2 * MiB), data(71, 300_000)
    emulator.set_faults(bandwidth=512 * 1024)  # the first PUT takes ~4 s
    try:
        before = stats_count(emulator, "PUT /objects/{name}")
        write_file(m.mountpoint / "f.bin", first)
        wait_for("the object PUT", lambda: stats_count(emulator, "PUT /objects/{name}") > before)
        write_file(m.mountpoint / "f.bin", second)
        emulator.set_faults(bandwidth=0)
        flush_ok(m)
    finally:
        emulator.set_faults(bandwidth=0)
    check_remote(m, {"f.bin": second})  # includes: bridge usage == drive usage, no orphans
    assert status(m)["uploads"]["orphans_deleted"] >= 1


def _hold_drive_call(emulator: Any, path_regex: str) -> None:
    """Make every request to the matching drive path fail with 5xx until released."""
    emulator.set_faults(fault_path_regex=path_regex, fail_next=10**6)


def _release(emulator: Any) -> None:
    emulator.set_faults(fault_path_regex=None, fail_next=0)


def test_crash_between_network_finish_and_drive_create(new_mount: Any) -> None:
    """The object is finished on the network, the drive create keeps failing: kill -9. The
    object was journaled as pending, so the next mount records it as an orphan and uploads
    the file again; exactly one entry appears."""
    m: MountedFS = new_mount()
    emulator = m.emulator
    expected = {"f.bin": data(30, 700_000)}
    finish = "POST /network/v2/buckets/{bucket}/files/finish"
    _hold_drive_call(emulator, r"^/drive/files/?$")
    try:
        with RemoteWatcher(emulator, m.user, only(expected)) as watcher:
            write_file(m.mountpoint / "f.bin", expected["f.bin"])
            wait_for("the network finish", lambda: stats_count(emulator, finish) >= 1)
            wait_for(
                "a refused create",
                lambda: stats_count(emulator, "POST /drive/files") >= 2,
            )
            up = status(m)
            assert up["uploads"]["pending_files"] == 1
            m.kill()
            assert remote.entries(emulator, m.user, download=False) == []
            # The finished object has no entry, yet the bridge charges for it.
            info = emulator.user_info(m.user["email"])
            assert (info["driveUsage"], info["networkUsage"]) == (0, len(expected["f.bin"]))
            _release(emulator)
            remount_after_crash(m)
            flush_ok(m)
    finally:
        _release(emulator)
    assert not watcher.violations, watcher.violations
    check_remote(m, expected)
    assert stats_count(emulator, finish) == 2  # uploaded again, not published twice


def test_crash_after_the_drive_create_before_the_journal_knows(new_mount: Any) -> None:
    """The create landed, the process dies before journaling it: the next mount meets its own
    entry (Conflict), adopts it and points it at the re-uploaded object. One entry, right
    content, the first object recorded as a possible orphan."""
    m: MountedFS = new_mount(crash_at="after-create")
    expected = {"dir/f.txt": data(40, 123_457)}
    (m.mountpoint / "dir").mkdir()
    with RemoteWatcher(m.emulator, m.user, only(expected)) as watcher:
        write_file(m.mountpoint / "dir/f.txt", expected["dir/f.txt"])
        wait_for_death(m)
        first = remote.entries(m.emulator, m.user)
        assert [(f.path, f.data) for f in first] == [("dir/f.txt", expected["dir/f.txt"])]
        remount_after_crash(m)
        flush_ok(m)
    assert not watcher.violations, watcher.violations
    check_remote(m, expected)
    now = remote.entries(m.emulator, m.user, download=False)
    assert now[0].uuid == first[0].uuid  # the same entry, adopted


def _lost_create_then(m: MountedFS, change: Callable[[], None]) -> None:
    """Crash right after a create of ``f.txt`` landed (the journal never learnt of it), mount
    again with object transfers slowed down, and make ``change`` while the file's new upload
    is still in flight: the entry the lost create made is then a ghost of the old name."""
    write_file(m.mountpoint / "f.txt", data(41, 50_000))
    wait_for_death(m)
    assert [f.path for f in remote.entries(m.emulator, m.user, download=False)] == ["f.txt"]
    puts = stats_count(m.emulator, "PUT /objects/{name}")
    # The 50 KB object takes ~10 s: longer than a first listing right after a crash may wait
    # for the replicas to show what the dead mount wrote (fs/metadata.py hold_first_listings).
    m.emulator.set_faults(bandwidth=5_000)
    try:
        remount_after_crash(m, "--dir-cache-ttl", "1")
        wait_for("the upload again", lambda: stats_count(m.emulator, "PUT /objects/{name}") > puts)
        change()
        assert status(m)["uploads"]["in_flight"] == 1, "the change came too late to matter"
    finally:
        m.emulator.set_faults(bandwidth=0)
    flush_ok(m)


def test_file_unlinked_after_a_crash_cut_its_publish_short_stays_gone(new_mount: Any) -> None:
    """The file is unlinked before it is stored again: the entry the lost create made goes
    too (nothing deleted comes back), and its object with it."""
    m: MountedFS = new_mount(crash_at="after-create")

    def unlink() -> None:
        os.unlink(m.mountpoint / "f.txt")
        time.sleep(1.2)  # past the listing TTL: the root is listed from Internxt again
        assert os.listdir(m.mountpoint) == []

    _lost_create_then(m, unlink)
    write_file(m.mountpoint / "keep.txt", b"keep")
    flush_ok(m)
    check_remote(m, {"keep.txt": b"keep"})
    m.remount(cold=True)
    assert sorted(os.listdir(m.mountpoint)) == ["keep.txt"]


def test_file_renamed_after_a_crash_cut_its_publish_short_moves_whole(new_mount: Any) -> None:
    """The file is renamed (into another folder) before it is stored again: it is stored
    under the new name only; the old name neither stays nor shows in the meantime."""
    m: MountedFS = new_mount(crash_at="after-create")
    content = data(41, 50_000)

    def rename() -> None:
        (m.mountpoint / "sub").mkdir()
        os.rename(m.mountpoint / "f.txt", m.mountpoint / "sub/g.txt")
        time.sleep(1.2)  # past the listing TTL: the root is listed from Internxt again
        assert sorted(os.listdir(m.mountpoint)) == ["sub"]

    _lost_create_then(m, rename)
    check_remote(m, {"sub/g.txt": content})
    m.remount(cold=True)
    assert local_tree(m.mountpoint) == {"sub/g.txt": content}


def test_crash_between_network_finish_and_drive_replace(new_mount: Any) -> None:
    """An overwrite whose PUT /files/{uuid} keeps failing: the old content stays complete
    remotely the whole time, and the next mount stores the new content."""
    m: MountedFS = new_mount()
    emulator = m.emulator
    old, new = data(50, 900_000), data(51, 1_100_000)
    write_file(m.mountpoint / "f.bin", old)
    flush_ok(m)
    _hold_drive_call(emulator, r"^/drive/files/[0-9a-f-]{36}/?$")
    try:
        with RemoteWatcher(emulator, m.user, only({"f.bin": new}, also={"f.bin": old})) as w:
            before = stats_count(emulator, "PUT /drive/files/{uuid}")
            write_file(m.mountpoint / "f.bin", new)
            wait_for(
                "a refused replace",
                lambda: stats_count(emulator, "PUT /drive/files/{uuid}") > before + 1,
            )
            m.kill()
            assert remote.snapshot(emulator, m.user) == {"f.bin": old}
            _release(emulator)
            remount_after_crash(m)
            flush_ok(m)
    finally:
        _release(emulator)
    assert not w.violations, w.violations
    check_remote(m, {"f.bin": new})


def test_crash_after_the_drive_replace_before_the_journal_knows(new_mount: Any) -> None:
    m: MountedFS = new_mount(crash_at="after-replace")
    old, new = data(60, 400_000), data(61, 300_001)
    write_file(m.mountpoint / "f.bin", old)
    # The first upload is a create (no crash point); the overwrite is the replace.
    wait_for("the first upload", lambda: remote.entries(m.emulator, m.user, download=False))
    with RemoteWatcher(m.emulator, m.user, only({"f.bin": new}, also={"f.bin": old})) as w:
        write_file(m.mountpoint / "f.bin", new)
        wait_for_death(m)
        assert remote.snapshot(m.emulator, m.user) == {"f.bin": new}
        remount_after_crash(m)
        flush_ok(m)
    assert not w.violations, w.violations
    check_remote(m, {"f.bin": new})


def test_crash_after_the_remote_delete_of_an_edited_file(new_mount: Any) -> None:
    """unlink of an uploaded file with unsent edits: the remote delete went out, the process
    died before the journal forgot the file. The next mount must not bring it back."""
    m: MountedFS = new_mount("--upload-delay", HOLD, crash_at="after-remote-delete")
    write_file(m.mountpoint / "f.txt", b"first version")
    write_file(m.mountpoint / "keep.txt", b"keep")
    flush_ok(m)
    write_file(m.mountpoint / "f.txt", b"second version, never uploaded")
    with contextlib.suppress(OSError):  # the mount dies while answering
        os.unlink(m.mountpoint / "f.txt")
    wait_for_death(m)
    remount_after_crash(m)
    flush_ok(m)
    check_remote(m, {"keep.txt": b"keep"})
    assert sorted(os.listdir(m.mountpoint)) == ["keep.txt"]
    m.unmount()
    # The unlinked file's record and cache file went with its (resent) remote delete.
    assert all(name != "f.txt" for name, _, _ in journal_files(m)), journal_files(m)
    assert len(list((m.cache_dir / "data").iterdir())) <= 1


def test_crash_after_the_remote_move_of_an_edited_file(new_mount: Any) -> None:
    """rename of an uploaded file with unsent edits: moved remotely, the process died before
    the journal learnt the new name. The new content must land under the new name only."""
    m: MountedFS = new_mount("--upload-delay", HOLD, crash_at="after-remote-move")
    write_file(m.mountpoint / "a.txt", b"first version")
    (m.mountpoint / "dir").mkdir()
    flush_ok(m)
    write_file(m.mountpoint / "a.txt", b"second version")
    with contextlib.suppress(OSError):  # the mount dies while answering
        os.rename(m.mountpoint / "a.txt", m.mountpoint / "dir/b.txt")
    wait_for_death(m)
    remount_after_crash(m)
    flush_ok(m)
    check_remote(m, {"dir/b.txt": b"second version"})
    assert local_tree(m.mountpoint) == {"dir/b.txt": b"second version"}


def test_crash_while_an_unlinked_file_is_still_open(new_mount: Any) -> None:
    """A stored file unlinked while open keeps its entry (moved aside) until the last close;
    a kill -9 before that close must not leave it behind: the next mount deletes it."""
    m: MountedFS = new_mount()
    write_file(m.mountpoint / "keep.txt", b"keep")
    write_file(m.mountpoint / "f.bin", data(80, 300_000))
    flush_ok(m)
    fd = os.open(m.mountpoint / "f.bin", os.O_RDONLY)
    try:
        os.unlink(m.mountpoint / "f.bin")
        names = sorted(f.path for f in remote.entries(m.emulator, m.user, download=False))
        assert len(names) == 2 and names[1] == "keep.txt", names
        assert names[0].startswith(".internxtfs-unlinked-"), names  # moved aside, kept
        m.kill()
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    remount_after_crash(m)
    flush_ok(m)
    check_remote(m, {"keep.txt": b"keep"})
