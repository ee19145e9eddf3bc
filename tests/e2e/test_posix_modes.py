"""Owners and modes kept by the cache (issue 11, item 1), through a real mount with
``allow_other``: a second user (``nobody``) works in it, the kernel enforces the bits
(``default_permissions``), and the bits survive a remount and a kill -9 on the same cache."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.durability import login_profile
from tests.harness.mounting import MountedFS, fuse_available

NOBODY = 65534

pytestmark = pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is missing")


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd],
        capture_output=True,
        text=True,
        check=False,
    )


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def perms(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@pytest.fixture
def shared_mount(emulator: Any, tmp_path: Path) -> Iterator[MountedFS]:
    """A mount with allow_other at a mountpoint another user can reach (pytest's tmp dirs
    are root-only)."""
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    old_umask = os.umask(0o022)  # what the tests expect new entries to get
    user = emulator.add_user(email=f"px-{uuid.uuid4().hex[:8]}@example.com", password="pw")
    m = MountedFS(emulator, user, tmp_path / "m")
    shared = Path(tempfile.mkdtemp(prefix="ixfs-modes-"))
    os.chmod(shared, 0o755)
    m.mountpoint = shared / "mnt"
    m.mountpoint.mkdir()
    done = login_profile(m)
    assert done.returncode == 0, done.stdout + done.stderr
    m.mount("-o", "allow_other")
    try:
        yield m
    finally:
        m.unmount(timeout=60)
        subprocess.run(["fusermount3", "-uz", str(m.mountpoint)], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)
        os.umask(old_umask)


def test_nobody_works_in_a_chmod_777_directory(shared_mount: MountedFS) -> None:
    mnt = shared_mount.mountpoint
    (mnt / "shared").mkdir()
    os.chmod(mnt / "shared", 0o777)
    assert perms(mnt / "shared") == (0o777, 0, 0)
    made = as_nobody("mkdir", str(mnt / "shared" / "a"))
    assert made.returncode == 0, made.stderr
    wrote = as_nobody("sh", "-c", f"echo hi > {mnt}/shared/a/f")
    assert wrote.returncode == 0, wrote.stderr
    # The creator's uid/gid, and the mode it asked for minus its umask (022).
    assert perms(mnt / "shared" / "a") == (0o755, NOBODY, NOBODY)
    assert perms(mnt / "shared" / "a" / "f") == (0o644, NOBODY, NOBODY)
    # Not nobody's: the kernel refuses (the root of the mount keeps the mount defaults).
    assert perms(mnt) == (0o755, 0, 0)
    refused = as_nobody("mkdir", str(mnt / "b"))
    assert refused.returncode != 0 and "Permission denied" in refused.stderr


def test_modes_survive_remount_and_kill_9(shared_mount: MountedFS) -> None:
    mnt = shared_mount.mountpoint
    (mnt / "secret").write_bytes(b"s")
    os.chmod(mnt / "secret", 0o600)
    (mnt / "private").mkdir(mode=0o700)
    (mnt / "script").write_bytes(b"#!/bin/sh\n")
    os.chmod(mnt / "script", 0o755)
    (mnt / "given").write_bytes(b"g")
    os.chown(mnt / "given", NOBODY, NOBODY)
    expected = {
        "secret": (0o600, 0, 0),
        "private": (0o700, 0, 0),
        "script": (0o755, 0, 0),
        "given": (0o644, NOBODY, NOBODY),
    }
    assert {name: perms(mnt / name) for name in expected} == expected
    shared_mount.remount("-o", "allow_other")  # clean unmount: everything is uploaded
    assert {name: perms(mnt / name) for name in expected} == expected
    # Changed and created just before a kill -9 (files maybe not uploaded yet).
    os.chmod(mnt / "secret", 0o640)
    (mnt / "late").write_bytes(b"l")
    os.chmod(mnt / "late", 0o700)
    expected |= {"secret": (0o640, 0, 0), "late": (0o700, 0, 0)}
    shared_mount.kill()
    shared_mount.mount("-o", "allow_other")
    assert {name: perms(mnt / name) for name in expected} == expected
    assert (mnt / "late").read_bytes() == b"l"
    # Kept by this cache only: a fresh cache directory shows the mount defaults.
    shared_mount.remount("-o", "allow_other", cold=True)
    assert perms(mnt / "secret") == (0o644, 0, 0)
    assert perms(mnt / "private") == (0o755, 0, 0)


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_rsync_a_twice_itemizes_nothing(shared_mount: MountedFS, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "run.sh").write_bytes(b"#!/bin/sh\necho run\n")
    os.chmod(src / "bin" / "run.sh", 0o755)
    (src / "key").write_bytes(b"private key\n")
    os.chmod(src / "key", 0o600)
    (src / "notes.txt").write_bytes(b"notes\n")
    os.chmod(src / "notes.txt", 0o644)
    dst = shared_mount.mountpoint / "dst"
    first = run("rsync", "-a", f"{src}/", str(dst))
    assert first.returncode == 0, first.stderr
    assert perms(dst / "bin" / "run.sh")[0] == 0o755
    assert perms(dst / "key")[0] == 0o600
    again = run("rsync", "-a", "--itemize-changes", f"{src}/", str(dst))
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""


def test_sticky_directory_protects_other_users_files(shared_mount: MountedFS) -> None:
    mnt = shared_mount.mountpoint
    tmp = mnt / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    assert perms(tmp) == (0o1777, 0, 0)
    (tmp / "roots").write_bytes(b"r")
    made = as_nobody("sh", "-c", f"echo n > {tmp}/nobodys")
    assert made.returncode == 0, made.stderr
    # Not the file's owner, nor the directory's: refused by the sticky bit.
    refused = as_nobody("rm", "-f", str(tmp / "roots"))
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
    moved = as_nobody("mv", str(tmp / "roots"), str(tmp / "mine"))
    assert moved.returncode != 0
    assert (tmp / "roots").read_bytes() == b"r"
    # Its owner can.
    removed = as_nobody("rm", str(tmp / "nobodys"))
    assert removed.returncode == 0, removed.stderr
    (tmp / "roots").unlink()
    assert sorted(os.listdir(tmp)) == []


def test_chown_by_root_only_and_chmod_by_owner_only(shared_mount: MountedFS) -> None:
    mnt = shared_mount.mountpoint
    os.chmod(mnt, 0o777)
    (mnt / "f").write_bytes(b"f")
    os.chown(mnt / "f", NOBODY, NOBODY)
    assert perms(mnt / "f") == (0o644, NOBODY, NOBODY)
    # nobody owns it now, but cannot give it away; it can chmod it.
    gave = as_nobody("chown", "0", str(mnt / "f"))
    assert gave.returncode != 0 and "Operation not permitted" in gave.stderr
    assert as_nobody("chmod", "600", str(mnt / "f")).returncode == 0
    assert perms(mnt / "f") == (0o600, NOBODY, NOBODY)
    (mnt / "g").write_bytes(b"g")
    took = as_nobody("chmod", "666", str(mnt / "g"))
    assert took.returncode != 0 and "Operation not permitted" in took.stderr
    assert perms(mnt / "g") == (0o644, 0, 0)
    os.chown(mnt / "f", 0, 0)
    assert perms(mnt / "f") == (0o600, 0, 0)


def test_setuid_and_setgid_follow_posix(shared_mount: MountedFS) -> None:
    mnt = shared_mount.mountpoint
    # A setgid folder hands its group down, and its subfolders stay setgid.
    (mnt / "team").mkdir()
    os.chown(mnt / "team", 0, NOBODY)
    os.chmod(mnt / "team", 0o2775)
    (mnt / "team" / "f").write_bytes(b"f")
    (mnt / "team" / "sub").mkdir()
    assert perms(mnt / "team" / "f") == (0o644, 0, NOBODY)
    assert perms(mnt / "team" / "sub") == (0o2755, 0, NOBODY)
    # Written by a user without CAP_FSETID: setuid goes.
    (mnt / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(mnt / "tool", 0o4777)
    wrote = as_nobody("sh", "-c", f"echo more >> {mnt}/tool")
    assert wrote.returncode == 0, wrote.stderr
    assert perms(mnt / "tool") == (0o777, 0, 0)
    # chown clears setuid and setgid (group-executable) too.
    os.chmod(mnt / "tool", 0o6755)
    os.chown(mnt / "tool", NOBODY, NOBODY)
    assert perms(mnt / "tool") == (0o755, NOBODY, NOBODY)
