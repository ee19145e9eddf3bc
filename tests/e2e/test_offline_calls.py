"""Every kind of call on the mount during an outage answers within the issue's 10 s (issue 9).

"With the server down, no call on the mount takes longer than 10 s to answer, success or
error." The other offline tests check the calls they happen to make; this one runs every kind
of call a program makes on a mount with stored and cached content, on what this mount has
listed and on what it has not, and checks both the time (each call runs under ``bounded``:
past 10 s the test fails, it does not hang) and the answer the design gives offline
(docs/semantics.md, Durability): success for what is served from the metadata cache, the
block cache and the journal, EIO within seconds for content never fetched.

Two outages: the server stopped (connections refused at once), and the server hanging (it
accepts connections and never answers: the emulator process is SIGSTOPped, see
``EmulatorProcess.pause``), where every request waits on a timeout instead of failing fast.
The 10 s is the issue's requirement and generous next to what the calls take (a few seconds
at most): a bound, not a timed measurement.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import remote
from tests.harness.durability import bounded, flush_ok, wait_for, write_file
from tests.harness.mounting import MountedFS

CALL_BOUND = 10.0  # the issue: with the server down, no call takes longer than this
OK = "ok"


def _open_close(path: Any, flags: int) -> None:
    fd = os.open(path, flags, 0o644)
    os.close(fd)


def _write_close(path: Any, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _fsync(path: Any) -> None:
    with open(path, "ab") as fh:
        fh.write(b"synced ")
        fh.flush()
        os.fsync(fh.fileno())


LINK_TIME = 1_500_000_000_123_000_000  # touch -h offline: stored with the link once back


def _lutimes(path: Any, ns: int) -> None:
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def _ls_l(path: Any) -> list[tuple[str, int]]:
    return [(name, os.lstat(path / name).st_size) for name in sorted(os.listdir(path))]


@pytest.mark.parametrize("outage", ["stopped", "hanging"])
def test_every_kind_of_call_answers_within_10_s_during_an_outage(
    new_mount: Any, outage: str
) -> None:
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    docs = mnt / "docs"
    (docs / "sub").mkdir(parents=True)
    (mnt / "empty").mkdir()
    (mnt / "over-me").mkdir()
    (mnt / "mover").mkdir()
    write_file(docs / "cached.txt", b"cached content " * 100)
    write_file(docs / "renamed.txt", b"renamed offline")
    write_file(docs / "gone.txt", b"unlinked offline")
    write_file(docs / "sub/inner.txt", b"moves with its folder")
    os.symlink("cached.txt", docs / "link")
    flush_ok(m)
    # Listed here but never read (content not cached), and a folder this mount sees in the
    # root's listing but never lists: written through a second mount of the account.
    other: MountedFS = new_mount(user=m.user, name="other")
    write_file(other.mountpoint / "docs/uncached.bin", b"never read here" * 1000)
    (other.mountpoint / "unlisted").mkdir()
    write_file(other.mountpoint / "unlisted/inside.txt", b"in a folder never listed here")
    flush_ok(other)
    other.unmount()
    wait_for("the other mount's entries", lambda: "uncached.bin" in os.listdir(docs), 30)
    wait_for("the other mount's folder", lambda: "unlisted" in os.listdir(mnt), 30)
    # df offline shows the last quota the mount read: it reads one at start, so df need not
    # have run before (it answered EIO then). Read here through the protocol client.
    quota = remote.limit(m.emulator, m.user) // 4096

    calls: list[tuple[str, Callable[[], Any], str | int]] = [
        ("stat of a listed file", lambda: os.stat(docs / "cached.txt"), OK),
        ("ls -l of a listed folder", lambda: _ls_l(docs), OK),
        ("ls -l of the root", lambda: _ls_l(mnt), OK),
        ("stat of a name not in a listed folder", lambda: os.stat(docs / "nope"), errno.ENOENT),
        ("stat of a folder never listed", lambda: os.stat(mnt / "unlisted"), OK),
        ("ls of a folder never listed", lambda: os.listdir(mnt / "unlisted"), OK),
        # A folder never listed shows only this mount's own entries offline (docs/semantics.md).
        (
            "stat in a folder never listed",
            lambda: os.stat(mnt / "unlisted/inside.txt"),
            errno.ENOENT,
        ),
        ("cat of a cached file", lambda: (docs / "cached.txt").read_bytes(), OK),
        ("cat of an uncached file", lambda: (docs / "uncached.bin").read_bytes(), errno.EIO),
        ("df (statfs)", lambda: os.statvfs(mnt).f_blocks, OK),
        ("mkdir", lambda: (docs / "made").mkdir(), OK),
        ("rmdir of a folder made offline", lambda: (docs / "made").rmdir(), OK),
        ("rmdir of a stored folder", lambda: (mnt / "empty").rmdir(), OK),
        ("touch (create)", lambda: _open_close(docs / "new.txt", os.O_CREAT | os.O_WRONLY), OK),
        ("write + close", lambda: _write_close(docs / "new.txt", b"written offline"), OK),
        ("fsync", lambda: _fsync(docs / "new.txt"), OK),
        ("truncate", lambda: os.truncate(docs / "cached.txt", 6), OK),
        ("chmod", lambda: os.chmod(docs / "cached.txt", 0o600), OK),
        ("utime", lambda: os.utime(docs / "cached.txt", (1e9, 1e9)), OK),
        ("rename of a file", lambda: os.rename(docs / "renamed.txt", docs / "moved.txt"), OK),
        ("rename of a folder", lambda: os.rename(docs / "sub", docs / "sub2"), OK),
        ("unlink", lambda: os.unlink(docs / "gone.txt"), OK),
        ("readlink", lambda: os.readlink(docs / "link"), OK),
        ("lutimes of a stored link", lambda: _lutimes(docs / "link", LINK_TIME), OK),
        ("setxattr", lambda: os.setxattr(docs / "cached.txt", "user.k", b"v"), errno.ENOTSUP),
        ("getxattr", lambda: os.getxattr(docs / "cached.txt", "user.k"), errno.ENOTSUP),
        ("link", lambda: os.link(docs / "cached.txt", docs / "hard"), errno.EPERM),
        ("symlink", lambda: os.symlink("moved.txt", docs / "link2"), OK),
        ("rename over a stored folder", lambda: os.rename(mnt / "mover", mnt / "over-me"), OK),
        ("mkdir in a folder never listed", lambda: (mnt / "unlisted/new").mkdir(), OK),
        ("create in a folder never listed", lambda: write_file(mnt / "unlisted/n.txt", b"n"), OK),
    ]

    (m.emulator.stop if outage == "stopped" else m.emulator.pause)()
    answers: dict[str, str | int] = {}
    returned: dict[str, Any] = {}
    try:
        time.sleep(1.5)  # past --dir-cache-ttl and the kernel's entry/attr timeouts
        for what, call, _ in calls:
            try:
                returned[what] = bounded(call, CALL_BOUND, what)  # fails past CALL_BOUND
                answers[what] = OK
            except OSError as exc:
                answers[what] = exc.errno
        expected = {what: want for what, _, want in calls}
        got = {what: answers[what] for what in expected}
        shown = {k: v if v == OK else errno.errorcode.get(v, v) for k, v in answers.items()}
        assert got == expected, f"answers during the outage: {shown}"
        assert returned["df (statfs)"] == quota
        assert returned["readlink"] == "cached.txt"
        assert os.lstat(docs / "link").st_mtime_ns == LINK_TIME
        assert returned["cat of a cached file"] == b"cached content " * 100
        assert (docs / "cached.txt").read_bytes() == b"cached"  # truncated, from the cache
    finally:
        (m.emulator.start if outage == "stopped" else m.emulator.resume)()

    # What succeeded offline is stored once the server answers again.
    flush_ok(m, timeout=120)
    stored = remote.snapshot(m.emulator, m.user)
    assert stored["docs/cached.txt"] == b"cached"
    assert stored["docs/new.txt"] == b"written offlinesynced "
    assert stored["docs/moved.txt"] == b"renamed offline"
    assert stored["docs/sub2/inner.txt"] == b"moves with its folder"
    assert not {"docs/gone.txt", "docs/renamed.txt", "docs/sub/inner.txt"} & set(stored)
    folders = remote.folders(m.emulator, m.user)
    assert "empty" not in folders and "docs/made" not in folders, folders
    assert "mover" not in folders and {"over-me", "unlisted/new"} <= set(folders), folders
    assert stored["unlisted/n.txt"] == b"n"
    assert stored["unlisted/inside.txt"] == b"in a folder never listed here"
    assert os.readlink(docs / "link2") == "moved.txt"
    held = {e.path: e for e in remote.entries(m.emulator, m.user)}
    assert held["docs/link.rclonelink"].data == b"cached.txt"
    assert held["docs/link.rclonelink"].modified == pytest.approx(LINK_TIME / 1e9, abs=1e-6)
    assert os.lstat(docs / "link").st_mtime_ns == LINK_TIME
    assert "Traceback" not in m.log_file.read_text()
