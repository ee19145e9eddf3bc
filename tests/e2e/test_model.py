"""Model-based tests: random operation sequences on the mount and on a local directory agree.

Every operation is applied to a real ``internxtfs mount`` (against the emulator) and to a
directory on the local disk, the reference. Results must match: the same return values and
bytes, or the same errno. Operations: create (O_EXCL), write at any offset (sparse, past EOF,
across 1 MiB cache blocks), O_TRUNC rewrite, O_APPEND, truncate up/down, rename of files and
folders (within/between folders, over existing entries), mkdir, rmdir, unlink, whole and
ranged reads, listdir, utime, fsync (through a descriptor that wrote nothing), descriptors
kept open across other operations (pread/pwrite/fstat after rename, unlink, overwrite),
"settle" (wait for uploads and listing refreshes) and remounts: plain, cold (cache deleted,
so reads come from the emulator), crash (kill -9; the journal resumes) and crash-cold (fsync
of every file, kill -9, cache deleted: what fsync stored must be on the server).

After every step the two trees are compared by names, types, sizes and (for files whose
mtime was set with ``os.utime``) mtimes; after a remount and at the end of each example the
bytes of every file are compared too.

Two drivers share :class:`Model`:

* ``test_model_hypothesis``: a hypothesis ``RuleBasedStateMachine``; one mount per test
  function, a fresh subdirectory per example (removed at its end, which tests recursive
  delete too). Hypothesis prints the shrunk step list on failure.
* ``test_model_fsx_long_run``: fsx-style, one fixed seed, a few hundred operations; on failure
  the seed and the op log are in the assertion message.

mtimes: Internxt keeps milliseconds, so an explicit mtime must be exact (to the ns) while the
mount that set it runs, and exact or cut to its millisecond after a remount (semantics.md).
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.inodes import ROOT_INODE, InodeTable
from internxtfs.fs.journal import FileRecord, Journal
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.metadata import Metadata
from internxtfs.fs.operations import Filesystem, MountOptions
from internxtfs.mount import clear_stale_mount
from tests.harness.fake_remote import FakeRemote, NoLag
from tests.harness.mounting import MountedFS

T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB
# A small alphabet, so operations often hit existing entries (and each other's names):
# names Internxt splits into plainName + type, a dotfile, a trailing dot, non-ASCII.
NAMES = ("a.tar.gz", ".hidden", "noext", "x.", "x", "ünï.cödé", "d")
MAX_WRITE = 300 * KiB
MAX_OFFSET = 2 * MiB + 300 * KiB  # files stay below ~2.6 MiB: three 1 MiB cache blocks
FD_SLOTS = 3
# Mount options of the model tests: a short listing TTL makes the mount re-read listings from
# the emulator often, so the merge of remote listings with local, not-yet-uploaded state is
# exercised while uploads run in the background (upload delay 0.2 s, from the harness).
MOUNT_ARGS = ("--dir-cache-ttl", "0.5")
SETTLE_SECONDS = 0.8  # > upload delay (0.2 s) + a small upload + the listing TTL above


def _data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _outcome(fn: Callable[[Path], T], root: Path) -> tuple[str, Any]:
    try:
        return ("ok", fn(root))
    except OSError as exc:
        # The errno is what programs see; the exception class follows from it.
        return ("error", errno.errorcode.get(exc.errno or 0, exc.errno))


def _describe(value: Any) -> str:
    if isinstance(value, bytes) and len(value) > 64:
        return f"<{len(value)} bytes>"
    return repr(value)


def _first_difference(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f"sizes differ: mount {len(a)}, local {len(b)}"
    at = next(i for i in range(len(a)) if a[i] != b[i])
    return f"first difference at byte {at} (block {at // MiB}, offset in block {at % MiB})"


def _wait_dead(mountpoint: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.stat(mountpoint)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                return
            raise
        time.sleep(0.05)
    raise AssertionError(f"{mountpoint} still answers after its process was killed")


class Model:
    """The mount and the reference directory, driven by the same operations.

    Paths are picked by integer selectors resolved against the reference tree (modulo the
    number of candidates), so both drivers can produce them from plain random numbers.
    """

    def __init__(self, fs: MountedFS, mnt: Path, ref: Path, mount_args: tuple[str, ...]) -> None:
        self.fs = fs
        self.mnt = mnt
        self.ref = ref
        self.mount_args = mount_args
        self.log: list[str] = []
        # mtimes set with os.utime -> exact (True) or known to the millisecond only (False,
        # after a remount). A reference file whose mtime is one of these still has it.
        self.explicit: dict[int, bool] = {}
        self.fds: dict[int, tuple[int, int]] = {}  # slot -> (mount fd, local fd)
        self.mnt.mkdir()
        self.ref.mkdir(parents=True)

    # --- choosing paths -----------------------------------------------------------------------

    def _walk(self) -> tuple[list[str], list[str]]:
        dirs, files = [""], []
        for top, subdirs, filenames in os.walk(self.ref):
            rel = os.path.relpath(top, self.ref)
            prefix = "" if rel == "." else rel + "/"
            dirs += [prefix + d for d in subdirs]
            files += [prefix + f for f in filenames]
        return sorted(dirs), sorted(files)

    def named(self, d: int, n: int) -> str:
        """``NAMES[n]`` in an existing directory: may exist (as a file or folder) or not."""
        dirs, _ = self._walk()
        parent = dirs[d % len(dirs)]
        name = NAMES[n % len(NAMES)]
        return f"{parent}/{name}" if parent else name

    def file(self, kind: int, i: int, n: int) -> str:
        """Mostly an existing file; sometimes any name (missing, or a folder)."""
        _, files = self._walk()
        if files and kind % 8 != 0:
            return files[i % len(files)]
        return self.named(i, n)

    def entry(self, kind: int, i: int, n: int) -> str:
        """Mostly an existing file or folder below the root; sometimes any name."""
        dirs, files = self._walk()
        entries = dirs[1:] + files
        if entries and kind % 4 != 0:
            return sorted(entries)[i % len(entries)]
        return self.named(i, n)

    def size_of(self, rel: str) -> int:
        try:
            return (self.ref / rel).stat().st_size
        except OSError:
            return 0

    # --- applying -----------------------------------------------------------------------------

    def both(self, desc: str, fn: Callable[[Path], T]) -> T | None:
        """Run ``fn`` on the mount and on the reference; results or errnos must match."""
        self.log.append(desc)
        got = _outcome(fn, self.mnt)
        want = _outcome(fn, self.ref)
        if got != want:
            if got[0] == want[0] == "ok" and isinstance(got[1], bytes):
                detail = _first_difference(got[1], want[1])
            else:
                detail = f"mount {got[0]} {_describe(got[1])}, local {want[0]} {_describe(want[1])}"
            raise AssertionError(f"{desc}: {detail}")
        return got[1] if got[0] == "ok" else None

    def create(self, rel: str, size: int, seed: int) -> None:
        data = _data(seed, size)

        def op(root: Path) -> int:
            fd = os.open(root / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)

        self.both(f"create({rel!r}, {size}, seed={seed})", op)

    def rewrite(self, rel: str, size: int, seed: int) -> None:
        """open(O_CREAT | O_TRUNC) and write: how most programs overwrite a file."""
        data = _data(seed, size)

        def op(root: Path) -> int:
            fd = os.open(root / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)

        self.both(f"rewrite({rel!r}, {size}, seed={seed})", op)

    def offset(self, rel: str, kind: int, r: int, size: int) -> int:
        """Where to write: inside, at EOF, past EOF (sparse) or across a 1 MiB block boundary."""
        current = self.size_of(rel)
        kind %= 4
        if kind == 0:
            off = r % (current + 1)
        elif kind == 1:
            off = current
        elif kind == 2:
            off = current + 1 + r % (600 * KiB)
        else:
            boundary = (1 + r % 2) * MiB
            off = max(0, boundary - 1 - r % max(1, size))
        return min(off, MAX_OFFSET)

    def write(self, rel: str, offset: int, size: int, seed: int) -> None:
        data = _data(seed, size)

        def op(root: Path) -> int:
            fd = os.open(root / rel, os.O_WRONLY)
            try:
                return os.pwrite(fd, data, offset)
            finally:
                os.close(fd)

        self.both(f"write({rel!r}, off={offset}, {size}, seed={seed})", op)

    def append(self, rel: str, sizes: list[int], seed: int) -> None:
        chunks = [_data(seed + i, n) for i, n in enumerate(sizes)]

        def op(root: Path) -> list[int]:
            fd = os.open(root / rel, os.O_WRONLY | os.O_APPEND)
            try:
                return [os.write(fd, c) for c in chunks]
            finally:
                os.close(fd)

        self.both(f"append({rel!r}, {sizes}, seed={seed})", op)

    def new_size(self, rel: str, kind: int, r: int) -> int:
        current = self.size_of(rel)
        kind %= 5
        if kind == 0:
            return 0
        if kind == 1:
            return r % (current + 1)  # down (or same)
        if kind == 2:
            return current + r % (700 * KiB)  # up (or same)
        if kind == 3:
            return current  # same size: POSIX leaves mtime alone
        return max(0, (1 + r % 2) * MiB + r % 5 - 2)  # around a block boundary

    def truncate(self, rel: str, size: int) -> None:
        self.both(f"truncate({rel!r}, {size})", lambda root: os.truncate(root / rel, size))

    def read(self, rel: str) -> None:
        self.both(f"read({rel!r})", lambda root: (root / rel).read_bytes())

    def read_range(self, rel: str, offset: int, size: int) -> None:
        def op(root: Path) -> bytes:
            fd = os.open(root / rel, os.O_RDONLY)
            try:
                return os.pread(fd, size, offset)
            finally:
                os.close(fd)

        self.both(f"read_range({rel!r}, off={offset}, {size})", op)

    def rename(self, src: str, dst: str) -> None:
        self.both(f"rename({src!r}, {dst!r})", lambda root: os.rename(root / src, root / dst))

    def mkdir(self, rel: str) -> None:
        self.both(f"mkdir({rel!r})", lambda root: os.mkdir(root / rel))

    def rmdir(self, rel: str) -> None:
        self.both(f"rmdir({rel!r})", lambda root: os.rmdir(root / rel))

    def unlink(self, rel: str) -> None:
        self.both(f"unlink({rel!r})", lambda root: os.unlink(root / rel))

    def listdir(self, rel: str) -> None:
        self.both(f"listdir({rel!r})", lambda root: sorted(os.listdir(root / rel)))

    def utime(self, rel: str, mtime_ns: int) -> None:
        self.explicit[mtime_ns] = True
        times = (mtime_ns, mtime_ns)
        self.both(f"utime({rel!r}, {mtime_ns})", lambda root: os.utime(root / rel, ns=times))

    def fsync(self, rel: str, writable: bool) -> None:
        flags = os.O_WRONLY if writable else os.O_RDONLY

        def op(root: Path) -> None:
            fd = os.open(root / rel, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        self.both(f"fsync({rel!r}, writable={writable})", op)

    def settle(self) -> None:
        """Let uploads finish and listings expire (TTL of MOUNT_ARGS): ``stat`` must not move
        when a file's upload completes or its directory is listed from the server again."""
        self.log.append("settle")
        time.sleep(SETTLE_SECONDS)

    # --- descriptors kept open across operations ----------------------------------------------

    def fd_open(self, slot: int, rel: str, writable: bool) -> None:
        self.fd_close(slot)
        flags = os.O_RDWR if writable else os.O_RDONLY
        self.log.append(f"fd_open({slot}, {rel!r}, writable={writable})")
        got = _outcome(lambda root: os.open(root / rel, flags), self.mnt)
        want = _outcome(lambda root: os.open(root / rel, flags), self.ref)
        if got[0] == want[0] == "ok":
            self.fds[slot] = (got[1], want[1])
            return
        for outcome in (got, want):  # do not leak the one that succeeded
            if outcome[0] == "ok":
                os.close(outcome[1])
        assert got == want, f"fd_open({slot}, {rel!r}): mount {got}, local {want}"

    def _fd_both(self, slot: int, desc: str, fn: Callable[[int], T]) -> None:
        fds = self.fds.get(slot)
        if fds is None:
            return
        by_root = {self.mnt: fds[0], self.ref: fds[1]}
        self.both(f"fd {slot}: {desc}", lambda root: fn(by_root[root]))

    def fd_write(self, slot: int, offset: int, size: int, seed: int) -> None:
        data = _data(seed, size)
        self._fd_both(
            slot,
            f"pwrite(off={offset}, {size}, seed={seed})",
            lambda fd: os.pwrite(fd, data, offset),
        )

    def fd_read(self, slot: int, offset: int, size: int) -> None:
        self._fd_both(slot, f"pread(off={offset}, {size})", lambda fd: os.pread(fd, size, offset))

    def fd_stat(self, slot: int) -> None:
        self._fd_both(slot, "fstat size", lambda fd: os.fstat(fd).st_size)

    def fd_close(self, slot: int) -> None:
        fds = self.fds.pop(slot, None)
        if fds is not None:
            self.log.append(f"fd_close({slot})")
            for fd in fds:
                os.close(fd)

    def close_all(self) -> None:
        for slot in sorted(self.fds):
            self.fd_close(slot)

    # --- mount lifecycle ----------------------------------------------------------------------

    def remount(self, how: str) -> None:
        """``plain``, ``cold`` (cache deleted), ``crash`` (kill -9, cache kept: the journal
        resumes), ``crash-cold`` (fsync of every file, kill -9, cache deleted: what fsync
        stored must be on the server)."""
        self.close_all()
        self.log.append(f"remount({how})")
        if how == "crash-cold":
            for rel in self._walk()[1]:
                self.fsync(rel, writable=False)
        problem = ""
        if how.startswith("crash"):
            self.fs.kill()
            # The next `internxtfs mount` clears the dead mount itself. But for up to the
            # attribute timeout the kernel answers stat() of the dead root from its cache,
            # which the harness would take for the new mount being up: wait for ENOTCONN.
            _wait_dead(self.fs.mountpoint)
        else:
            seen = self.fs.log_file.stat().st_size
            code = self.fs.unmount()
            with self.fs.log_file.open("rb") as log_file:
                log_file.seek(seen)
                unmount_log = log_file.read().decode(errors="replace")
            if code != 0 or "not stored yet" in unmount_log:
                problem = f"unmount: exit code {code}, log:\n{unmount_log}"
        if how.endswith("cold") and not problem:
            shutil.rmtree(self.fs.cache_dir)
        # Mounted again even after a problem, so the example's teardown still finds the mount.
        self.fs.mount(*self.mount_args)
        assert not problem, problem
        # Internxt keeps mtimes to the millisecond: from now on that is all we can expect.
        self.explicit = dict.fromkeys(self.explicit, False)
        self.check(full=True)

    # --- comparing ----------------------------------------------------------------------------

    def check(self, full: bool = False) -> None:
        """Same tree on both sides: names, types, sizes, explicit mtimes (+ bytes if full)."""
        for top, subdirs, files in os.walk(self.ref):
            rel = os.path.relpath(top, self.ref)
            mtop = self.mnt if rel == "." else self.mnt / rel
            want = sorted(subdirs + files)
            got = sorted(os.listdir(mtop))
            assert got == want, f"listing of {rel!r}: mount {got}, local {want}"
            for name in subdirs:
                assert stat.S_ISDIR(os.stat(mtop / name).st_mode), f"{rel}/{name} not a folder"
            for name in files:
                self._check_file(Path(top) / name, mtop / name, f"{rel}/{name}", full)

    def _check_file(self, ref: Path, mnt: Path, rel: str, full: bool) -> None:
        r, m = os.stat(ref), os.stat(mnt)
        assert stat.S_ISREG(m.st_mode), f"{rel}: not a regular file on the mount"
        assert m.st_size == r.st_size, f"{rel}: size {m.st_size} on the mount, {r.st_size} local"
        exact = self.explicit.get(r.st_mtime_ns)
        if exact is True:
            assert m.st_mtime_ns == r.st_mtime_ns, (
                f"{rel}: mtime {m.st_mtime_ns} != {r.st_mtime_ns}"
            )
        elif exact is False:
            # Exact while the journal still holds it (not uploaded yet), else what Internxt kept.
            kept = (r.st_mtime_ns, r.st_mtime_ns - r.st_mtime_ns % 1_000_000)
            assert m.st_mtime_ns in kept, f"{rel}: mtime {m.st_mtime_ns}, expected one of {kept}"
        if full:
            got, want = mnt.read_bytes(), ref.read_bytes()
            assert got == want, f"{rel}: {_first_difference(got, want)}"

    def finish(self) -> None:
        """End of a run: close, compare everything, then remove the tree on both sides."""
        self.close_all()
        self.check(full=True)
        self.log.append("rmtree")
        shutil.rmtree(self.mnt)
        shutil.rmtree(self.ref)
        assert not self.mnt.exists()


# --- random parameters, shared by both drivers ------------------------------------------------


def mtime_value(base: int, sub: int) -> int:
    """An mtime in the past (never "now"), often at a millisecond edge: .000, .999999, .5."""
    seconds = 1_000_000_000 + base % 700_000_000
    ms = base % 1000
    tail = (0, 999_999, 500_000, 1, sub % 1_000_000)[sub % 5]
    return seconds * 1_000_000_000 + ms * 1_000_000 + tail


def write_size(r: int) -> int:
    """0..300 KiB, mostly small: tiny, a few KiB, or large."""
    kind = r % 4
    if kind == 0:
        return r % 64
    if kind in (1, 2):
        return r % (16 * KiB)
    return r % (MAX_WRITE + 1)


# --- hypothesis driver ----------------------------------------------------------------------

selectors = st.tuples(st.integers(0, 15), st.integers(0, 1 << 16), st.integers(0, 1 << 16))
numbers = st.integers(0, 1 << 30)


@pytest.mark.timeout(900)
def test_model_hypothesis(mounted_factory: Any, tmp_path: Path) -> None:
    fs: MountedFS = mounted_factory(None, *MOUNT_ARGS)
    counter = itertools.count()

    class MountMachine(RuleBasedStateMachine):
        model: Model

        @initialize()
        def start(self) -> None:
            n = next(counter)
            self.model = Model(
                fs, fs.mountpoint / f"ex{n}", tmp_path / "ref" / f"ex{n}", MOUNT_ARGS
            )

        @rule(sel=selectors, size=numbers, seed=numbers)
        def create(self, sel: tuple[int, int, int], size: int, seed: int) -> None:
            self.model.create(self.model.named(sel[1], sel[2]), write_size(size), seed)

        @rule(sel=selectors, size=numbers, seed=numbers)
        def rewrite(self, sel: tuple[int, int, int], size: int, seed: int) -> None:
            self.model.rewrite(self.model.file(*sel), write_size(size), seed)

        @rule(sel=selectors, kind=st.integers(0, 3), r=numbers, size=numbers, seed=numbers)
        def write(self, sel: tuple[int, int, int], kind: int, r: int, size: int, seed: int) -> None:
            rel = self.model.file(*sel)
            n = write_size(size)
            self.model.write(rel, self.model.offset(rel, kind, r, n), n, seed)

        @rule(sel=selectors, sizes=st.lists(numbers, min_size=1, max_size=2), seed=numbers)
        def append(self, sel: tuple[int, int, int], sizes: list[int], seed: int) -> None:
            self.model.append(self.model.file(*sel), [write_size(s) for s in sizes], seed)

        @rule(sel=selectors, kind=st.integers(0, 4), r=numbers)
        def truncate(self, sel: tuple[int, int, int], kind: int, r: int) -> None:
            rel = self.model.file(*sel)
            self.model.truncate(rel, self.model.new_size(rel, kind, r))

        @rule(sel=selectors, whole=st.booleans(), r=numbers, size=numbers)
        def read(self, sel: tuple[int, int, int], whole: bool, r: int, size: int) -> None:
            rel = self.model.file(*sel)
            if whole:
                self.model.read(rel)
            else:
                current = self.model.size_of(rel)
                self.model.read_range(rel, r % (current + 2), write_size(size))

        @rule(src=selectors, dst=selectors, onto_entry=st.booleans())
        def rename(
            self, src: tuple[int, int, int], dst: tuple[int, int, int], onto_entry: bool
        ) -> None:
            source = self.model.entry(*src)
            target = self.model.entry(*dst) if onto_entry else self.model.named(dst[1], dst[2])
            self.model.rename(source, target)

        @rule(sel=selectors)
        def mkdir(self, sel: tuple[int, int, int]) -> None:
            self.model.mkdir(self.model.named(sel[1], sel[2]))

        @rule(sel=selectors)
        def rmdir(self, sel: tuple[int, int, int]) -> None:
            self.model.rmdir(self.model.entry(*sel))

        @rule(sel=selectors)
        def unlink(self, sel: tuple[int, int, int]) -> None:
            self.model.unlink(self.model.entry(*sel))

        @rule(sel=selectors)
        def listdir(self, sel: tuple[int, int, int]) -> None:
            self.model.listdir(self.model.entry(*sel))

        @rule(sel=selectors, base=numbers, sub=numbers)
        def utime(self, sel: tuple[int, int, int], base: int, sub: int) -> None:
            self.model.utime(self.model.file(*sel), mtime_value(base, sub))

        @rule(sel=selectors, writable=st.booleans())
        def fsync(self, sel: tuple[int, int, int], writable: bool) -> None:
            self.model.fsync(self.model.file(*sel), writable)

        @rule(slot=st.integers(0, FD_SLOTS - 1), sel=selectors, writable=st.booleans())
        def fd_open(self, slot: int, sel: tuple[int, int, int], writable: bool) -> None:
            self.model.fd_open(slot, self.model.file(*sel), writable)

        @precondition(lambda self: bool(self.model.fds))
        @rule(slot=st.integers(0, FD_SLOTS - 1), r=numbers, size=numbers, seed=numbers)
        def fd_write(self, slot: int, r: int, size: int, seed: int) -> None:
            self.model.fd_write(slot, r % (MAX_OFFSET + 1), write_size(size), seed)

        @precondition(lambda self: bool(self.model.fds))
        @rule(slot=st.integers(0, FD_SLOTS - 1), r=numbers, size=numbers)
        def fd_read(self, slot: int, r: int, size: int) -> None:
            self.model.fd_read(slot, r % (MAX_OFFSET + 1), write_size(size))
            self.model.fd_stat(slot)

        @precondition(lambda self: bool(self.model.fds))
        @rule(slot=st.integers(0, FD_SLOTS - 1))
        def fd_close(self, slot: int) -> None:
            self.model.fd_close(slot)

        @rule(roll=st.integers(0, 1))
        def settle(self, roll: int) -> None:
            if roll == 0:
                self.model.settle()

        # Remounts take about a second each: only one in three draws of this rule does one.
        @rule(
            roll=st.integers(0, 2),
            how=st.sampled_from(["plain", "cold", "crash", "crash-cold"]),
        )
        def remount(self, roll: int, how: str) -> None:
            if roll == 0:
                self.model.remount(how)

        @invariant()
        def same_tree(self) -> None:
            if hasattr(self, "model"):
                self.model.check()

        def teardown(self) -> None:
            if hasattr(self, "model"):
                self.model.finish()

    run_state_machine_as_test(
        MountMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        ),
    )


# --- fsx-style driver -----------------------------------------------------------------------


def random_step(model: Model, rng: random.Random, allow_remount: bool) -> None:
    """One random operation with random parameters (the fsx-style driver)."""

    def sel() -> tuple[int, int, int]:
        return rng.randrange(16), rng.randrange(1 << 16), rng.randrange(1 << 16)

    def num() -> int:
        return rng.randrange(1 << 30)

    ops: list[tuple[int, Callable[[], None]]] = []

    def op(weight: int) -> Callable[[Callable[[], None]], Callable[[], None]]:
        def register(fn: Callable[[], None]) -> Callable[[], None]:
            ops.append((weight, fn))
            return fn

        return register

    @op(8)
    def create() -> None:
        s = sel()
        model.create(model.named(s[1], s[2]), write_size(num()), num())

    @op(6)
    def rewrite() -> None:
        model.rewrite(model.file(*sel()), write_size(num()), num())

    @op(14)
    def write() -> None:
        rel, n = model.file(*sel()), write_size(num())
        model.write(rel, model.offset(rel, rng.randrange(4), num(), n), n, num())

    @op(5)
    def append() -> None:
        model.append(
            model.file(*sel()), [write_size(num()) for _ in range(rng.randint(1, 2))], num()
        )

    @op(6)
    def truncate() -> None:
        rel = model.file(*sel())
        model.truncate(rel, model.new_size(rel, rng.randrange(5), num()))

    @op(8)
    def read() -> None:
        rel = model.file(*sel())
        if rng.random() < 0.5:
            model.read(rel)
        else:
            model.read_range(rel, rng.randrange(model.size_of(rel) + 2), write_size(num()))

    @op(7)
    def rename() -> None:
        src, dst = sel(), sel()
        target = model.entry(*dst) if rng.random() < 0.5 else model.named(dst[1], dst[2])
        model.rename(model.entry(*src), target)

    @op(4)
    def mkdir() -> None:
        s = sel()
        model.mkdir(model.named(s[1], s[2]))

    @op(3)
    def rmdir() -> None:
        model.rmdir(model.entry(*sel()))

    @op(4)
    def unlink() -> None:
        model.unlink(model.entry(*sel()))

    @op(2)
    def listdir() -> None:
        model.listdir(model.entry(*sel()))

    @op(3)
    def utime() -> None:
        model.utime(model.file(*sel()), mtime_value(num(), num()))

    @op(2)
    def fsync() -> None:
        model.fsync(model.file(*sel()), rng.random() < 0.5)

    @op(3)
    def fd_open() -> None:
        model.fd_open(rng.randrange(FD_SLOTS), model.file(*sel()), rng.random() < 0.6)

    @op(4)
    def fd_io() -> None:
        slot = rng.randrange(FD_SLOTS)
        if rng.random() < 0.5:
            model.fd_write(slot, rng.randrange(MAX_OFFSET + 1), write_size(num()), num())
        else:
            model.fd_read(slot, rng.randrange(MAX_OFFSET + 1), write_size(num()))
            model.fd_stat(slot)

    @op(2)
    def fd_close() -> None:
        model.fd_close(rng.randrange(FD_SLOTS))

    @op(1)
    def settle() -> None:
        model.settle()

    if allow_remount:

        @op(1)
        def remount() -> None:
            model.remount(rng.choice(["plain", "cold", "crash", "crash-cold"]))

    weights = [w for w, _ in ops]
    rng.choices([fn for _, fn in ops], weights)[0]()


# Override to explore: INTERNXTFS_MODEL_SEED=n INTERNXTFS_MODEL_STEPS=m pytest -k fsx
FSX_SEED = int(os.environ.get("INTERNXTFS_MODEL_SEED", "20240611"))
FSX_STEPS = int(os.environ.get("INTERNXTFS_MODEL_STEPS", "600"))


@pytest.mark.timeout(900)
def test_model_fsx_long_run(mounted_factory: Any, tmp_path: Path) -> None:
    fs: MountedFS = mounted_factory(None, *MOUNT_ARGS)
    model = Model(fs, fs.mountpoint / "fsx", tmp_path / "ref" / "fsx", MOUNT_ARGS)
    rng = random.Random(FSX_SEED)
    try:
        for step in range(FSX_STEPS):
            random_step(model, rng, allow_remount=True)
            if step % 10 == 9:
                model.check()
        model.finish()
    except Exception as exc:
        tail = "\n".join(f"  {i}: {line}" for i, line in enumerate(model.log))
        raise AssertionError(f"fsx seed {FSX_SEED}: {exc}\nop log:\n{tail}") from exc


# --- regressions found by the model tests -----------------------------------------------------


def _mountpoints() -> set[str]:
    with open("/proc/self/mounts") as mounts:
        return {line.split()[1] for line in mounts}


def test_restart_right_after_a_crash_clears_the_dead_mount(mounted: MountedFS) -> None:
    # stat() of a dead mount's root is answered from the kernel's attribute cache for up to
    # attr_timeout, so a restart right after a crash (systemd's RestartSec is 100 ms) took the
    # dead mount for a live one and mounted on top of it.
    os.stat(mounted.mountpoint)
    mounted.kill()
    clear_stale_mount(mounted.mountpoint)
    assert str(mounted.mountpoint) not in _mountpoints()


class _Crash(BaseException):
    """Stands for kill -9 at one point of a sequence of journal and cache-file changes."""


@pytest.mark.parametrize(
    "crash_at", ["Journal.delete", "Journal.delete_blocks_from", "Path.unlink"]
)
async def test_crash_while_dropping_an_unlinked_file_leaves_a_usable_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    # Dropping an unlinked file's local state removed its cache file before its journal
    # rows: a crash in between (the model test's kill -9 right after the last close) left
    # dirty blocks without a cache file, and the next mount refused to start.
    journal = Journal(tmp_path / "state.db")
    cache = BlockCache(tmp_path, journal, 1 << 30, _no_remote)
    fs = Filesystem(
        remote=FakeRemote(),
        journal=journal,
        cache=cache,
        # Not used by drop_local; the offline queue only reads where recovery goes.
        uploader=SimpleNamespace(recovery_parent="root"),  # type: ignore[arg-type]
        locks=KeyedLock(),
        root_uuid="root",
        options=MountOptions(),
    )
    record = journal.new_file(parent_uuid="root", name="f", dirty=True)
    await cache.write(record.local_id, 0, b"unsent data")
    node = fs.table.new_node(is_dir=False, parent=ROOT_INODE, name="f")
    fs.table.set_local(node, record.local_id)

    owner, name = crash_at.split(".")
    original = getattr({"Journal": Journal, "Path": Path}[owner], name)
    seen: list[str] = []

    def crash(*args: Any, **kwargs: Any) -> Any:
        if owner == "Path" and not str(args[0]).startswith(str(tmp_path / "data")):
            return original(*args, **kwargs)
        seen.append(crash_at)
        raise _Crash

    monkeypatch.setattr({"Journal": Journal, "Path": Path}[owner], name, crash)
    with pytest.raises(_Crash):
        fs.namespace.drop_local(node)
    assert seen
    monkeypatch.undo()

    # The next mount: must open, and either still hold the file whole or not at all.
    journal2 = Journal(tmp_path / "state.db")
    cache2 = BlockCache(tmp_path, journal2, 1 << 30, _no_remote)
    left = journal2.get(record.local_id)
    if left is not None:
        assert await cache2.read(record.local_id, 0, 100) == b"unsent data"
    else:
        assert not cache2.path(record.local_id).exists()


async def _no_remote(record: FileRecord, offset: int, length: int) -> bytes:
    raise AssertionError("nothing is fetched in this test")


@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_WRONLY], ids=["rdonly", "wronly"])
def test_fsync_of_another_descriptor_stores_the_file(mounted: MountedFS, flags: int) -> None:
    # fsync() through a descriptor that wrote nothing returned at once, even with the file's
    # content (written through another, closed descriptor) not uploaded yet; `sync FILE` and
    # the model test's "fsync everything, kill -9, drop the cache" lost those files.
    data = os.urandom(200_000)
    (mounted.mountpoint / "f").write_bytes(data)
    fd = os.open(mounted.mountpoint / "f", flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    mounted.kill()
    _wait_dead(mounted.mountpoint)
    shutil.rmtree(mounted.cache_dir)
    mounted.mount()
    assert (mounted.mountpoint / "f").read_bytes() == data


def test_unmount_after_unlinking_a_new_file_does_not_warn(mounted: MountedFS) -> None:
    # The queue entry of a file unlinked within its quiet period was counted as a pending
    # upload: unmount logged "1 file(s) not stored yet" although nothing was pending.
    (mounted.mountpoint / "gone").write_bytes(b"x" * 1000)
    os.unlink(mounted.mountpoint / "gone")
    assert mounted.unmount() == 0
    assert "not stored yet" not in mounted.log()


async def test_listing_keeps_a_new_file_published_while_it_was_fetched(tmp_path: Path) -> None:
    # A listing fetched before a new file's first upload was published, and merged after it,
    # held the file neither as a remote entry (too old) nor as a not-uploaded record (it had
    # a uuid by then): the file vanished from its directory until the next refresh. The model
    # test saw it right after a crash, when the resumed uploads race the first listings.
    journal = Journal(tmp_path / "state.db")
    table = InodeTable("root", 0)
    fetching, published = trio.Event(), trio.Event()

    class Drive(NoLag):
        async def list_folders(self, folder_uuid: str) -> list[Any]:
            return []

        async def list_files(self, folder_uuid: str) -> list[Any]:
            fetching.set()
            await published.wait()
            return []  # the server's answer was made before the publish

    meta = Metadata(Drive(), table, journal, 10.0)
    record = journal.new_file(parent_uuid="root", name="new.txt", size=3, dirty=True)
    root = table.get(ROOT_INODE)
    assert root is not None
    listing: dict[str, int] = {}

    async def list_root() -> None:
        listing.update(await meta.children(root))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(list_root)
        await fetching.wait()
        journal.update(record.local_id, remote_uuid="uuid-of-new", dirty=False)  # the uploader
        published.set()
    assert "new.txt" in listing


def test_mtime_stays_put_across_upload_and_listing_refresh(mounted_factory: Any) -> None:
    # The upload sent the mtime as a float of the ns time; …123.999999 s reached Internxt as
    # .124, and the next listing refresh moved `stat`'s mtime by 1 ns (rclone then re-hashes).
    fs: MountedFS = mounted_factory(None, *MOUNT_ARGS)
    path = fs.mountpoint / "f"
    path.write_bytes(b"abc")
    mtime_ns = 1_600_000_000_123_999_999
    os.utime(path, ns=(mtime_ns, mtime_ns))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # stored remotely
    finally:
        os.close(fd)
    time.sleep(1.2)  # past the listing TTL and the kernel's attribute timeout
    os.listdir(fs.mountpoint)  # lists from the server again
    time.sleep(1.2)
    assert os.stat(path).st_mtime_ns == mtime_ns
    fs.remount(cold=True)
    assert os.stat(path).st_mtime_ns == 1_600_000_000_123_000_000  # Internxt keeps ms
