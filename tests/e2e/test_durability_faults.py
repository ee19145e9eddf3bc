"""Network and service faults: an outage, 429/5xx/reset storms, a full quota, expiring sessions.

Every check of the mount during trouble is bounded (``bounded``): a FUSE call that hangs fails
the test instead of hanging CI. What ends up stored is read with the protocol client, not
through the mount (``tests/harness/remote.py``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.harness import remote
from tests.harness.durability import (
    MiB,
    bounded,
    flush,
    flush_ok,
    local_tree,
    login_profile,
    new_user,
    status,
    wait_for,
    write_file,
)
from tests.harness.mounting import MountedFS, cli


def data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def read(path: Path) -> bytes:
    return path.read_bytes()


def test_outage_serves_the_cache_and_resumes_by_itself(new_mount: Any) -> None:
    """Emulator down: cached reads, listings and writes keep working (past the cache bound,
    which stretches and says so), status shows the pending uploads and the error, nothing
    hangs; when it is back, the uploads resume without help and everything is stored."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1", "--cache-size", "8M")
    emulator = m.emulator
    mnt = m.mountpoint
    stored = {f"dir/s{i}.bin": data(i, 500_000 + i) for i in range(3)}
    (mnt / "dir").mkdir()
    for path, content in stored.items():
        write_file(mnt / path, content)
    flush_ok(m)

    emulator.stop()
    try:
        time.sleep(1.5)  # past --dir-cache-ttl and the kernel's entry/attr timeouts
        # Reads of cached files, and the listings leading to them, still work.
        for path, content in stored.items():
            assert bounded(lambda p=path: read(mnt / p), 30, f"read {path}") == content
        assert sorted(bounded(lambda: os.listdir(mnt / "dir"), 30, "listdir")) == [
            "s0.bin", "s1.bin", "s2.bin",
        ]  # fmt: skip
        # Writes go to the cache: new files, and an edit of a stored file.
        written = {f"dir/new{i}.bin": data(100 + i, 1_000_000) for i in range(3)}
        for path, content in written.items():
            bounded(lambda p=path, c=content: write_file(mnt / p, c), 30, f"write {path}")
        edited = stored["dir/s0.bin"][:1000] + b"edited during the outage"
        bounded(lambda: write_file(mnt / "dir/s0.bin", edited), 30, "overwrite")
        # The cache holds 8 MiB and no upload can drain it: the bound stretches rather than
        # refuse the write, and the mount says so.
        bounded(lambda: write_file(mnt / "dir/big.bin", data(9, 8 * MiB)), 60, "fill")
        written["dir/big.bin"] = data(9, 8 * MiB)
        assert status(m)["cache"]["bytes_over_bound"] > 0
        assert "going over the bound" in m.log_file.read_text()
        # The mount says what is going on.
        st = bounded(lambda: status(m), 30, "status")
        assert st["uploads"]["pending_files"] == 5, st["uploads"]
        wait_for(
            "an upload error in status",
            lambda: status(m)["uploads"]["errors"] and status(m)["network"]["last_error"],
        )
        assert "Unreachable" in status(m)["network"]["last_error"]

        # fsync during the outage neither hangs nor fails: the data is made durable in the
        # cache (--fsync-offline local, the default) and stored once Internxt is back (below).
        def fsync_one() -> None:
            with open(mnt / "dir/new0.bin", "rb") as fh:
                os.fsync(fh.fileno())

        bounded(fsync_one, 60, "fsync")
        assert "fsync keeps data durable in the cache" in m.log_file.read_text()
    finally:
        emulator.start()  # same data dir and port

    expected = stored | written | {"dir/s0.bin": edited}
    # No flush: the uploader retries on its own.
    wait_for("the uploads to resume", lambda: status(m)["uploads"]["pending_files"] == 0, 90)
    assert remote.snapshot(emulator, m.user) == expected
    assert status(m)["uploads"]["errors"] == {}
    assert "Traceback" not in m.log_file.read_text()


def _flush_through_faults(m: MountedFS) -> None:
    """At these rates an upload can lose every one of its attempts (30% of object PUTs are
    cut): flush then reports that file, and the mount tries it again by itself after its
    backoff, so a later flush sees it stored. Three flushes losing the same file are a bug."""
    for _ in range(2):
        if flush(m, timeout=120).returncode == 0:
            return
    flush_ok(m, timeout=120)


def _rename_as_a_user_would(src: Path, dst: Path) -> None:
    """A rename is a call the process waits on: it gets 5 s of retries (docs/semantics.md),
    and at these rates (about 4 requests in 10 fail) a loaded machine can use them all up.
    It then fails with EIO and leaves the file under its old name, as far as the mount shows,
    and the user runs `mv` again; what the server holds is checked after the flush."""
    for attempt in range(4):
        try:
            os.rename(src, dst)
            return
        except OSError as exc:
            if exc.errno != errno.EIO or attempt == 3:
                raise
            assert src.exists() and not dst.exists(), "a failed rename changed the view"


def test_429_5xx_and_resets_are_retried_without_duplicates(new_mount: Any) -> None:
    """Uploads, overwrites and renames under 5xx bursts, 429 with Retry-After and connections
    cut mid-body: every file ends up stored once, with the right content."""
    m: MountedFS = new_mount()
    emulator = m.emulator
    mnt = m.mountpoint
    emulator.set_faults(fail_rate=0.15, throttle_rate=0.05, reset_rate=0.3, seed=4)
    expected: dict[str, bytes] = {}
    try:
        (mnt / "d").mkdir()
        for i in range(24):
            path = f"d/f{i}.bin"
            expected[path] = data(200 + i, random.Random(i).randrange(1, 1_500_000))
            write_file(mnt / path, expected[path])
        _flush_through_faults(m)
        for i in range(0, 24, 4):  # overwrite some, rename others
            path = f"d/f{i}.bin"
            expected[path] = data(300 + i, 400_000)
            write_file(mnt / path, expected[path])
            _rename_as_a_user_would(mnt / f"d/f{i + 1}.bin", mnt / f"d/g{i + 1}.bin")
            expected[f"d/g{i + 1}.bin"] = expected.pop(f"d/f{i + 1}.bin")
        _flush_through_faults(m)
        injected = emulator.stats()["faults_injected"]
    finally:
        emulator.set_faults(fail_rate=0, throttle_rate=0, reset_rate=0)
    assert injected.get("429") and injected.get("reset"), injected
    assert injected.get("500", 0) + injected.get("503", 0) > 0, injected
    assert remote.snapshot(emulator, m.user) == expected  # snapshot() refuses duplicates
    assert status(m)["network"]["retries"] > 0
    m.remount(cold=True)
    assert sorted(os.listdir(m.mountpoint / "d")) == sorted(p[2:] for p in expected)


UUID = "[0-9a-f-]{36}"


def test_lost_answers_to_changes_that_were_made(new_mount: Any) -> None:
    """The emulator carries out a change and then cuts the connection before answering, once
    for each kind of change the mount makes, then for a third of all changes at random. Each
    must be recognised as done (looked up, not resent blindly, not reported as a failure, not
    taken for a conflict): the tree ends up exactly as written, every call in the mount
    succeeds, and status shows no error."""
    m: MountedFS = new_mount()
    emulator = m.emulator
    mnt = m.mountpoint
    expected: dict[str, bytes] = {}

    def losing_one(method: str, path_regex: str, change: Callable[[], None]) -> None:
        before = emulator.stats()["faults_injected"].get("lost_answer", 0)
        emulator.set_faults(lose_answer_next=1, fault_method=method, fault_path_regex=path_regex)
        change()
        flush_ok(m, timeout=60)
        after = emulator.stats()["faults_injected"].get("lost_answer", 0)
        assert after == before + 1, f"no answer to {method} {path_regex} was lost"

    def write(path: str, content: bytes) -> None:
        expected[path] = content
        write_file(mnt / path, content)

    def rename(old: str, new: str) -> None:
        os.rename(mnt / old, mnt / new)
        for path in [p for p in expected if p == old or p.startswith(old + "/")]:
            expected[new + path[len(old) :]] = expected.pop(path)

    def remove(path: str) -> None:
        os.unlink(mnt / path)
        del expected[path]

    try:
        losing_one("POST", "^/drive/folders$", lambda: (mnt / "a").mkdir())
        for d in ("a/b", "c", "gone"):
            (mnt / d).mkdir()
        losing_one("POST", "^/drive/files$", lambda: write("a/f0.bin", data(500, 70_000)))
        for i in range(1, 8):
            write(f"{'a/b' if i % 2 else 'a'}/f{i}.bin", data(500 + i, 1000 + 37_000 * i))
        flush_ok(m)
        losing_one("PUT", f"^/drive/files/{UUID}$", lambda: write("a/f0.bin", data(600, 900)))
        # A file is renamed in place through the same move call (it sends name and type).
        losing_one("PATCH", f"^/drive/files/{UUID}$", lambda: rename("a/f2.bin", "a/r.bin"))
        losing_one("PATCH", f"^/drive/files/{UUID}$", lambda: rename("a/b/f1.bin", "c/f1.bin"))
        losing_one("PATCH", f"^/drive/folders/{UUID}$", lambda: rename("a/b", "c/b2"))
        losing_one("PUT", f"^/drive/folders/{UUID}/meta$", lambda: rename("c/b2", "c/b3"))
        losing_one("DELETE", f"^/drive/files/{UUID}$", lambda: remove("a/f4.bin"))
        write_file(mnt / "gone/x.txt", b"short-lived")
        flush_ok(m)
        os.unlink(mnt / "gone/x.txt")
        losing_one("DELETE", f"^/drive/folders/{UUID}$", lambda: os.rmdir(mnt / "gone"))

        # Then at random, over every change, while files are written, replaced and moved.
        forced = emulator.stats()["faults_injected"]["lost_answer"]
        emulator.set_faults(
            lose_answer_rate=0.35,
            fault_method=None,
            fault_path_regex=f"^/drive/(files|folders)(/{UUID}(/meta)?)?$",
            seed=11,
        )
        (mnt / "d").mkdir()
        for i in range(10):
            write(f"d/g{i}.bin", data(700 + i, 20_000 * i))
        flush_ok(m, timeout=120)
        for i in range(0, 10, 2):
            write(f"d/g{i}.bin", data(800 + i, 3000))
            rename(f"d/g{i + 1}.bin", f"c/g{i + 1}.bin")
        flush_ok(m, timeout=120)
        injected = emulator.stats()["faults_injected"]
    finally:
        emulator.set_faults(lose_answer_rate=0, fault_method=None, fault_path_regex=None)
    assert injected["lost_answer"] - forced >= 4, injected  # the random phase's own
    assert remote.snapshot(emulator, m.user) == expected
    assert status(m)["uploads"]["errors"] == {}
    m.remount(cold=True)
    dirs = {str(Path(root).relative_to(m.mountpoint)) for root, _, _ in os.walk(m.mountpoint)}
    assert dirs == {".", "a", "c", "c/b3", "d"}
    assert local_tree(m.mountpoint) == expected
    assert "Traceback" not in m.log_file.read_text()


def test_quota_exceeded_keeps_the_data_and_stores_it_when_space_is_freed(
    new_mount: Any, emulator: Any
) -> None:
    user = new_user(emulator, quota=3 * MiB)
    m: MountedFS = new_mount(user=user)
    mnt = m.mountpoint
    small, big = data(1, MiB), data(2, 3 * MiB)
    with open(mnt / "small.bin", "wb") as fh:
        fh.write(small)
        os.fsync(fh.fileno())
    with open(mnt / "big.bin", "wb") as fh:
        fh.write(big)
        with pytest.raises(OSError) as full:
            bounded(lambda: os.fsync(fh.fileno()), 60, "fsync")
    assert full.value.errno in (errno.ENOSPC, errno.EDQUOT)
    st = status(m)["uploads"]
    assert st["pending_files"] == 1
    assert [e["quota"] for e in st["errors"].values()] == [True], st["errors"]
    assert "quota" in cli("status", str(mnt), env=m.env).stdout.lower()
    # The data stays readable from the cache; nothing of it is visible remotely.
    assert (mnt / "big.bin").read_bytes() == big
    assert remote.snapshot(emulator, m.user) == {"small.bin": small}
    assert flush(m, timeout=30).returncode == 1  # flush reports what it could not store

    emulator.update_user(user["email"], quota=100 * MiB)
    flush_ok(m)
    assert remote.snapshot(emulator, m.user) == {"small.bin": small, "big.bin": big}


def test_sessions_expire_refresh_relogin_with_totp_then_password_change(
    new_mount: Any, emulator: Any
) -> None:
    """Tokens that live 4 s: the mount refreshes them while busy and logs in again (password +
    stored TOTP secret) after an idle spell. When the password changes, re-login fails: a clear
    error in the log and status, no data lost, no account lockout from retrying a bad
    password; after ``internxtfs login`` with the new password, the running mount stores it."""
    user = new_user(emulator, totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    emulator.set_faults(token_lifetime=4)
    try:
        m: MountedFS = new_mount(user=user)
        mnt = m.mountpoint
        expected: dict[str, bytes] = {}
        for i in range(16):
            if i in (5, 11):
                time.sleep(4.5)  # idle past the token's (and refresh token's) lifetime
            expected[f"f{i}"] = data(i, 20_000 + i)
            write_file(mnt / f"f{i}", expected[f"f{i}"])
            time.sleep(0.5)
        flush_ok(m)
        session = status(m)["session"]
        assert session["refreshes"] >= 1 and session["relogins"] >= 2, session
        assert remote.snapshot(emulator, user) == expected

        # The password changes elsewhere; the token runs out; re-login cannot work.
        emulator.update_user(user["email"], password="a new password", old_password="pw-dur")
        user["password"] = "a new password"
        time.sleep(4.5)
        expected["late.bin"] = data(99, 300_000)
        write_file(mnt / "late.bin", expected["late.bin"])
        assert flush(m, timeout=20).returncode == 1
        st = status(m)
        assert st["uploads"]["pending_files"] == 1
        assert "WrongCredentials" in str(st["session"].get("error")), st["session"]
        assert "WrongCredentials" in m.log_file.read_text()
        # Cached data stays readable; more writes keep going into the cache.
        assert bounded(lambda: read(mnt / "f3"), 30, "read") == expected["f3"]
        expected["later.bin"] = b"written while logged out"
        bounded(lambda: write_file(mnt / "later.bin", expected["later.bin"]), 30, "write")
        for _ in range(12):  # activity must not turn into a login attempt each time
            assert flush(m, timeout=5).returncode == 1
        assert emulator._admin("GET", f"/users/{user['email']}")["failedLogins"] <= 2

        # A new `internxtfs login` reaches the running mount: no remount, and what waited
        # in the cache is stored.
        done = login_profile(m, password="a new password")
        assert done.returncode == 0, done.stderr
        assert "running mount of this profile now uses this login" in done.stdout
        flush_ok(m)
        assert status(m)["session"].get("error") is None
        assert remote.snapshot(emulator, user) == expected
    finally:
        emulator.set_faults(token_lifetime=None)


def test_full_cache_disk_is_enospc_and_corrupts_nothing(new_mount: Any, tmp_path: Path) -> None:
    """The disk under the cache fills up (not the --cache-size bound: the filesystem itself):
    the writer gets ENOSPC, the mount keeps serving, what was written before is intact, and
    once space is freed writes and uploads go on; the journal survives a remount."""
    cache = tmp_path / "m" / "cache"
    cache.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(cache)], check=True)
    m: MountedFS | None = None
    try:
        m = new_mount("--cache-size", "1G", "--upload-delay", "3600")
        mnt = m.mountpoint
        stored = {"a.bin": data(1, 4 * MiB), "pending.bin": data(2, 3 * MiB)}
        write_file(mnt / "a.bin", stored["a.bin"])
        flush_ok(m)
        write_file(mnt / "pending.bin", stored["pending.bin"])  # held back: dirty in the cache
        with pytest.raises(OSError) as full:
            bounded(lambda: write_file(mnt / "big.bin", data(3, 40 * MiB)), 60, "fill the disk")
        assert full.value.errno == errno.ENOSPC
        # Another program takes the last bytes of that disk: now even the journal may be out of
        # room. New files and renames get ENOSPC (or succeed), never EIO, never a broken mount.
        filler = cache / "someone-else.bin"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                while os.write(fd, bytes(64 * 1024)):
                    pass
        finally:
            os.close(fd)
        for i in range(3):
            name = f"x{i}.txt"
            try:
                bounded(lambda n=name: write_file(mnt / n, b"x" * 10_000), 30, "create")
                os.rename(mnt / name, mnt / f"y{i}.txt")
                stored[f"y{i}.txt"] = b"x" * 10_000
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(mnt / name)
        filler.unlink()
        # Still serving, and nothing already written was touched.
        for path, content in stored.items():
            assert bounded(lambda p=path: read(mnt / p), 30, f"read {path}") == content
        os.unlink(mnt / "big.bin")
        write_file(mnt / "after.txt", b"written once space was free")
        stored["after.txt"] = b"written once space was free"
        flush_ok(m)
        assert remote.snapshot(m.emulator, m.user) == stored
        assert status(m)["uploads"]["errors"] == {}
        m.remount()  # same cache on the same small disk: the journal opens fine
        assert local_tree(mnt) == stored
        assert "Traceback" not in m.log_file.read_text()
    finally:
        if m is not None:
            m.unmount()  # before the disk under its cache goes
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_unsent_files_of_a_folder_deleted_elsewhere_are_stored_in_recovery(
    new_mount: Any,
) -> None:
    """Another client deletes a folder while this mount holds unsent changes in it (a new
    file, an edit of a stored one): they are stored in /internxtfs-recovered instead of
    failing forever out of sight, and the mount shows them there."""
    m: MountedFS = new_mount("--upload-delay", "3600", "--dir-cache-ttl", "1")
    mnt = m.mountpoint
    (mnt / "dir2").mkdir()
    write_file(mnt / "dir2" / "old.txt", b"stored version")
    flush_ok(m)
    write_file(mnt / "dir2" / "new.txt", b"never stored")
    write_file(mnt / "dir2" / "old.txt", b"edited, not stored")

    async def delete_dir2() -> None:
        client = await remote._login(m.emulator, m.user)
        async with client:
            root = client.session.root_folder_uuid
            (folder,) = [f for f in await client.drive.list_folders(root) if f.name == "dir2"]
            await client.drive.delete_folder(folder.uuid)

    trio.run(delete_dir2)
    # Within the replica lag, drive-server's create-file checks the folder on a replica that
    # still shows it (docs/protocol.md, "Read replicas": a known limit); past it, the case
    # this test is about.
    m.emulator.wait_for_replicas()
    flush_ok(m)
    got = remote.snapshot(m.emulator, m.user)
    # Each under a name of its own ("NAME (recovered N).EXT"): recovered files from different
    # folders never take each other's place.
    assert sorted(got.values()) == [b"edited, not stored", b"never stored"], got
    assert all(
        re.fullmatch(r"internxtfs-recovered/(new|old) \(recovered \d+\)\.txt", p) for p in got
    )
    expected = got
    time.sleep(1.5)  # past the listing TTL
    assert local_tree(mnt) == expected
    assert status(m)["uploads"]["errors"] == {}
