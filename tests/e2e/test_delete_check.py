"""Conflict rule 1 before a late delete (docs/semantics.md, "Conflicts"; fs/conflicts.py).

A delete of ours is aimed at the entry's uuid. When it goes out later than the user's call (queued
during an outage, held across a kill -9, a rename over's target whose delete failed first),
another client may have stored a new version *in place* meanwhile (``PUT /files/{uuid}``: same
entry, new content). That version must survive. The other client here is the project's protocol
client talking to the emulator directly; what is stored is read back the same way.
"""

from __future__ import annotations

import os
import time
from typing import Any

from internxtfs.fs.conflicts import DELETE_UNCHECKED_FOR
from internxtfs.internxt.client import InternxtClient
from tests.harness import remote
from tests.harness.durability import bounded, flush_ok, status, wait_for, write_file
from tests.harness.mounting import MountedFS

TTL = ("--dir-cache-ttl", "1")
# Only the mount reads a file's meta (the check before a late delete); the other client never
# does. Failing those reads keeps the mount's delete from going while the other client writes.
META_READS = r"^/drive/files/[^/]+/meta$"


def _uuid_of(m: MountedFS, path: str) -> str:
    return remote.uuid_of(m.emulator, m.user, path)


def _replace_in_place(m: MountedFS, uuid: str, data: bytes) -> None:
    """Another client stores a new version of the entry in place (new object, same uuid)."""

    async def replace(client: InternxtClient) -> None:
        async def read(offset: int, n: int) -> bytes:
            return data[offset : offset + n]

        file_id = await client.network.upload(read, len(data))
        await client.drive.replace_file(uuid, file_id, len(data))

    remote.as_other_client(m.emulator, m.user, replace)
    m.emulator.wait_for_replicas()  # the mount's check must not read a replica behind it


def _shows(m: MountedFS, name: str, data: bytes) -> bool:
    try:
        return (m.mountpoint / name).read_bytes() == data
    except OSError:
        return False


def test_unlink_during_an_outage_keeps_a_version_stored_in_place_meanwhile(
    new_mount: Any,
) -> None:
    """(a) rm while Internxt is down; once it is back, and before the queued delete is
    sent, another client stores a new version of the file in place. After flush, that version
    is still there under its name, on the server and in the mount."""
    m: MountedFS = new_mount(*TTL)
    write_file(m.mountpoint / "a.txt", b"ours, deleted during the outage")
    flush_ok(m)
    uuid = _uuid_of(m, "a.txt")
    theirs = b"theirs, stored in place after our rm"

    m.emulator.stop()
    try:
        bounded(lambda: os.unlink(m.mountpoint / "a.txt"), 10.0, "rm")
        # The delete met the outage: queued, failing (retried with backoff).
        wait_for(
            "the delete to fail",
            lambda: "a.txt" in str(status(m)["uploads"]["errors"]),
        )
    finally:
        m.emulator.start(["--fault-method", "GET", "--fault-path-regex", META_READS,
                          "--fail-rate", "1"])  # fmt: skip
    _replace_in_place(m, uuid, theirs)
    m.emulator.set_faults(fail_rate=0.0)
    flush_ok(m)

    assert remote.snapshot(m.emulator, m.user) == {"a.txt": theirs}
    wait_for("the kept version to show in the mount", lambda: _shows(m, "a.txt", theirs))
    assert "not deleted" in m.log_file.read_text()


def test_a_delete_held_across_kill_9_keeps_a_version_stored_in_place_meanwhile(
    new_mount: Any,
) -> None:
    """(b) rm while Internxt is down, then kill -9: the delete waits in the journal. Another
    client stores a new version in place before the next mount, which then sends what the
    journal holds: the new version survives."""
    m: MountedFS = new_mount(*TTL)
    write_file(m.mountpoint / "a.txt", b"ours, deleted before the crash")
    write_file(m.mountpoint / "b.txt", b"deleted before the crash, unchanged elsewhere")
    flush_ok(m)
    uuid = _uuid_of(m, "a.txt")
    theirs = b"theirs, stored in place while we were down"

    m.emulator.stop()
    try:
        bounded(lambda: os.unlink(m.mountpoint / "a.txt"), 10.0, "rm a")
        bounded(lambda: os.unlink(m.mountpoint / "b.txt"), 10.0, "rm b")
        m.kill()
    finally:
        m.emulator.start()
    _replace_in_place(m, uuid, theirs)
    m.mount(*TTL)
    flush_ok(m)

    # The unchanged file's delete went as asked; the changed one is kept.
    assert remote.snapshot(m.emulator, m.user) == {"a.txt": theirs}
    wait_for("the kept version to show in the mount", lambda: _shows(m, "a.txt", theirs))
    assert sorted(os.listdir(m.mountpoint)) == ["a.txt"]


def test_rename_over_keeps_the_targets_version_stored_in_place_before_its_delete(
    new_mount: Any,
) -> None:
    """(c) mv new.txt a.txt: the old a.txt is moved aside, new.txt takes the name, and the old
    entry's delete fails (5xx). Before the next attempt,
    another client stores a new version of the old entry in place (it knows it by uuid).
    The name keeps our renamed file; the other version is kept beside it."""
    m: MountedFS = new_mount(*TTL)
    write_file(m.mountpoint / "a.txt", b"old target")
    write_file(m.mountpoint / "new.txt", b"ours, renamed over a.txt")
    flush_ok(m)
    target = _uuid_of(m, "a.txt")
    theirs = b"theirs, stored in place into the replaced entry"

    m.emulator.set_faults(fault_method="DELETE", fail_rate=1.0)
    os.rename(m.mountpoint / "new.txt", m.mountpoint / "a.txt")
    wait_for("the target's delete to be tried", lambda: m.emulator.stats()["faults_injected"])
    # A delete sent at once goes unchecked, but only for DELETE_UNCHECKED_FOR seconds after
    # the rename; its first attempt is over then, and the rename settler tries again 30 s
    # later (fs/replacement.py, RETRY_INTERVAL) or at flush: the other client writes now.
    time.sleep(DELETE_UNCHECKED_FOR + 1)
    _replace_in_place(m, target, theirs)
    m.emulator.set_faults(fail_rate=0.0, fault_method=None)
    flush_ok(m)

    stored = remote.snapshot(m.emulator, m.user)
    assert stored.pop("a.txt") == b"ours, renamed over a.txt"
    [(kept, data)] = stored.items()
    assert kept.startswith("a (internxtfs conflict ") and kept.endswith(").txt"), kept
    assert data == theirs
    wait_for("the kept copy to show in the mount", lambda: _shows(m, kept, theirs))
