"""Cross-client: what the mount writes, rclone's Internxt backend reads, and the other way round.

rclone's Internxt backend only talks to ``https://gateway.internxt.com``, so the emulator runs in
the interop harness's private namespaces (``tests/interop/rclone_ns.py``) and the mount runs in
there too, reaching the emulator at the production URLs with the harness's throwaway CA. A FUSE
mount made in a private mount namespace is invisible outside it, but the kernel lets us walk
into that namespace's tree through ``/proc/<pid>/root`` of any process in it (the emulator's),
so the test does its file I/O with ordinary Python and ``dd`` from out here.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.mounting import BIN, fuse_available
from tests.interop.rclone_ns import GATEWAY_URL, RcloneNamespace, unavailable_reason

MiB = 1024 * 1024
REMOTE = "ix"
# A known whole-second mtime: both clients must carry it (Internxt keeps milliseconds).
MTIME = 1_614_834_367
PASSWORD = "cross client pässword"


def seeded(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class NamespacedMount:
    """``internxtfs login`` + ``internxtfs mount -f`` inside the emulator's namespaces."""

    def __init__(self, ns: RcloneNamespace, email: str, workdir: Path) -> None:
        self.ns = ns
        self.email = email
        self.workdir = workdir
        self.mountpoint = workdir / "mnt"  # the path inside the namespace
        self.cache_dir = workdir / "cache"
        self.log_file = workdir / "mount.log"
        self.env = {
            "INTERNXTFS_CONFIG_DIR": str(workdir / "config"),
            "INTERNXTFS_DRIVE_URL": f"{GATEWAY_URL}/drive",
            "INTERNXTFS_NETWORK_URL": f"{GATEWAY_URL}/network",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.mountpoint.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        """The mount as seen from outside: through the namespace's root directory."""
        return Path(f"/proc/{self.ns.pid}/root{self.mountpoint}")

    def login(self) -> None:
        password_file = self.workdir / "password"
        password_file.write_text(PASSWORD)
        argv = [str(BIN / "internxtfs"), "login", "--email", self.email]
        self.ns.run([*argv, "--password-file", str(password_file)], extra_env=self.env)

    def _mounted(self) -> bool:
        probe = self.ns.run(["mountpoint", "-q", str(self.mountpoint)], check=False)
        return probe.returncode == 0

    def mount(self, wait: float = 30.0) -> None:
        argv = [
            str(BIN / "internxtfs"),
            "--log-file",
            str(self.log_file),
            "mount",
            str(self.mountpoint),
            "-f",
            "--cache-dir",
            str(self.cache_dir),
            "--upload-delay",
            "0.2",
            # Changes rclone makes show through the mount after this many seconds.
            "--dir-cache-ttl",
            "1",
        ]
        self.proc = self.ns.popen(argv, extra_env=self.env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mount exited with {self.proc.returncode}:\n{self.log()}")
            if self._mounted():
                return
            time.sleep(0.1)
        raise RuntimeError(f"mount did not come up in {wait}s:\n{self.log()}")

    def unmount(self, timeout: float = 120.0) -> int:
        """fusermount3 -u inside the namespace; the mount process must then exit by itself."""
        if self.proc is None:
            return 0
        self.ns.run(["fusermount3", "-u", str(self.mountpoint)], check=False)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            self.ns.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)
        self.proc = None
        return code

    def remount(self, cold: bool = False) -> None:
        assert self.unmount() == 0, self.log()
        if cold:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.mount()

    def log(self) -> str:
        try:
            return self.log_file.read_text()[-5000:]
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneNamespace]:
    reason = unavailable_reason() or fuse_available()
    if reason:
        pytest.skip(f"cross-client: {reason}")
    namespace = RcloneNamespace(tmp_path_factory.mktemp("xclient"))
    namespace.start()
    try:
        yield namespace
    finally:
        namespace.stop()
        namespace.discard_data()


@pytest.fixture
def account(ns: RcloneNamespace) -> str:
    """A fresh account per test, logged in to rclone as remote ``ix``."""
    email = f"x-{uuid.uuid4().hex[:8]}@example.com"
    ns.add_user(email, PASSWORD)
    ns.config_create(REMOTE, email, PASSWORD)
    return email


@pytest.fixture
def ns_mount(ns: RcloneNamespace, account: str, tmp_path: Path) -> Iterator[NamespacedMount]:
    mount = NamespacedMount(ns, account, tmp_path / "m")
    mount.login()
    mount.mount()
    try:
        yield mount
    finally:
        mount.unmount()
        assert "Traceback" not in mount.log_file.read_text(), mount.log()


def lsjson(ns: RcloneNamespace, path: str) -> dict[str, dict[str, Any]]:
    """``rclone lsjson -R`` as path → entry."""
    out = ns.rclone("lsjson", "-R", f"{REMOTE}:{path}").stdout
    return {entry["Path"]: entry for entry in json.loads(out)}


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll: rclone's changes show through the mount only after the listing TTL."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # returns once the file is stored remotely
    finally:
        os.close(fd)


# name → size: 0 B (no network object), small, and ~3 MiB (several read-ahead windows), with
# the names Internxt splits into plainName + type.
FILES = {
    "empty": 0,
    "a.tar.gz": 1_234,
    ".bashrc": 77,
    "noext": 3 * MiB + 123,
    "sub/deeper/x.txt": 4_097,
}


@pytest.mark.interop
def test_mount_writes_read_by_rclone(ns: RcloneNamespace, ns_mount: NamespacedMount) -> None:
    top = ns_mount.root / "from-mount"
    expected: dict[str, bytes] = {}
    for seed, (name, size) in enumerate(FILES.items()):
        path = top / name
        path.parent.mkdir(parents=True, exist_ok=True)
        expected[name] = seeded(size, seed)
        path.write_bytes(expected[name])
        os.utime(path, (MTIME, MTIME))
    for name in FILES:
        _fsync(top / name)

    entries = lsjson(ns, "from-mount")
    files = {path: entry for path, entry in entries.items() if not entry["IsDir"]}
    assert sorted(files) == sorted(FILES)
    for name, data in expected.items():
        assert files[name]["Size"] == len(data), files[name]
        assert files[name]["ModTime"].startswith("2021-03-04T05:06:07"), files[name]
        assert ns.rclone("cat", f"{REMOTE}:from-mount/{name}").stdout == data, name
    big = expected["noext"]
    ranged = ns.rclone("cat", f"{REMOTE}:from-mount/noext", "--offset", "1048573", "--count", "9")
    assert ranged.stdout == big[1_048_573 : 1_048_573 + 9]

    # Without fsync: unmount must upload what is pending (an overwrite and a new file).
    changed, late = seeded(200_001, 99), b"written just before unmount"
    (top / "a.tar.gz").write_bytes(changed)
    (top / "late.bin").write_bytes(late)
    assert ns_mount.unmount() == 0, ns_mount.log()
    assert ns.rclone("cat", f"{REMOTE}:from-mount/a.tar.gz").stdout == changed
    assert ns.rclone("cat", f"{REMOTE}:from-mount/late.bin").stdout == late
    assert lsjson(ns, "from-mount")["a.tar.gz"]["Size"] == len(changed)


@pytest.mark.interop
def test_mount_multipart_upload_read_by_rclone(
    ns: RcloneNamespace, ns_mount: NamespacedMount
) -> None:
    """A file past the 100 MiB multipart threshold, uploaded by the mount in parts, is read back
    whole and across a part boundary by rclone."""
    big = seeded(101 * MiB + 77, 41)
    path = ns_mount.root / "big.bin"
    path.write_bytes(big)
    _fsync(path)
    assert lsjson(ns, "")["big.bin"]["Size"] == len(big)
    whole = ns.rclone("cat", f"{REMOTE}:big.bin", timeout=300).stdout
    assert hashlib.sha256(whole).digest() == hashlib.sha256(big).digest()
    boundary = 30 * MiB  # the client's part size: the read spans the first two parts
    ranged = ns.rclone(
        "cat", f"{REMOTE}:big.bin", "--offset", str(boundary - 5), "--count", "10"
    ).stdout
    assert ranged == big[boundary - 5 : boundary + 5]


@pytest.mark.interop
def test_rclone_uploads_read_through_mount(
    ns: RcloneNamespace, ns_mount: NamespacedMount, tmp_path: Path
) -> None:
    top = ns_mount.root / "from-rclone"
    top.mkdir()
    assert os.listdir(top) == []  # the mount has now cached an empty listing

    local = tmp_path / "local"
    local.mkdir()
    expected: dict[str, bytes] = {}
    for seed, (name, size) in enumerate(FILES.items()):
        source = local / name
        source.parent.mkdir(parents=True, exist_ok=True)
        expected[name] = seeded(size, 100 + seed)
        source.write_bytes(expected[name])
        os.utime(source, (MTIME, MTIME))
        ns.rclone("copyto", str(source), f"{REMOTE}:from-rclone/{name}")

    wait_for("rclone's files in the listing", lambda: len(os.listdir(top)) == 5)
    assert sorted(os.listdir(top)) == sorted([".bashrc", "a.tar.gz", "empty", "noext", "sub"])
    for name, data in expected.items():
        st = (top / name).stat()
        assert st.st_size == len(data), name
        assert st.st_mtime == MTIME, name
        assert (top / name).read_bytes() == data, name

    # Ranged reads after a cold remount: from the middle and the end of the object, so the
    # mount decrypts at an offset rather than from the start.
    ns_mount.remount(cold=True)
    big = expected["noext"]
    skip, count = 513, 7  # 4 KiB blocks: bytes 2_101_248 .. 2_129_920
    dd = subprocess.run(
        ["dd", f"if={top / 'noext'}", "bs=4096", f"skip={skip}", f"count={count}", "status=none"],
        capture_output=True,
        check=True,
    )
    assert dd.stdout == big[skip * 4096 : (skip + count) * 4096]
    with (top / "noext").open("rb") as fh:
        fh.seek(len(big) - 100)
        assert fh.read() == big[-100:]

    # rclone overwrites a file the mount has read (and cached): the mount must show the new
    # content after the TTL, not its cached blocks of the old one.
    assert (top / "a.tar.gz").read_bytes() == expected["a.tar.gz"]
    assert (top / "noext").read_bytes() == big
    for name, size, seed in (("a.tar.gz", 5_555, 7), ("noext", 2 * MiB + 5, 8)):
        newer = seeded(size, seed)
        (local / name).write_bytes(newer)
        os.utime(local / name, (MTIME + 60, MTIME + 60))
        ns.rclone("copyto", str(local / name), f"{REMOTE}:from-rclone/{name}")
        expected[name] = newer

    def updated() -> bool:
        return all((top / n).stat().st_size == len(expected[n]) for n in ("a.tar.gz", "noext"))

    wait_for("rclone's overwrites through the mount", updated)
    for name in ("a.tar.gz", "noext"):
        assert (top / name).stat().st_mtime == MTIME + 60, name
        assert (top / name).read_bytes() == expected[name], name

    # And a file rclone deletes disappears.
    ns.rclone("deletefile", f"{REMOTE}:from-rclone/.bashrc")
    wait_for("rclone's delete through the mount", lambda: not (top / ".bashrc").exists())


@pytest.mark.interop
def test_symlinks_shared_with_rclone_links(
    ns: RcloneNamespace, ns_mount: NamespacedMount, tmp_path: Path
) -> None:
    """A link made through the mount is what ``rclone copy -l`` makes of a local link (a file
    NAME.rclonelink holding the target), and the other way round."""
    top = ns_mount.root / "links"
    top.mkdir()
    (top / "file.txt").write_bytes(b"data\n")
    _fsync(top / "file.txt")
    os.symlink("file.txt", top / "ln")
    os.symlink("../elsewhere/x", top / "dangling")
    # A link's time is its .rclonelink file's modificationTime, as rclone -l keeps it.
    os.utime(top / "ln", (1_500_000_000, 1_500_000_000), follow_symlinks=False)

    listed = {e["Path"]: e for e in json.loads(ns.rclone("lsjson", "-l", f"{REMOTE}:links").stdout)}
    assert sorted(listed) == ["dangling.rclonelink", "file.txt", "ln.rclonelink"]
    assert listed["ln.rclonelink"]["Size"] == len("file.txt")
    assert ns.rclone("cat", f"{REMOTE}:links/ln.rclonelink").stdout == b"file.txt"
    out = tmp_path / "out"
    ns.rclone("copy", "-l", f"{REMOTE}:links", str(out))
    assert os.readlink(out / "ln") == "file.txt"
    assert os.readlink(out / "dangling") == "../elsewhere/x"
    assert (out / "ln").read_bytes() == b"data\n"
    assert os.lstat(out / "ln").st_mtime == 1_500_000_000

    src = tmp_path / "src"
    src.mkdir()
    (src / "real").write_bytes(b"real content")
    os.symlink("real", src / "made-by-rclone")
    os.utime(src / "made-by-rclone", (1_400_000_000, 1_400_000_000), follow_symlinks=False)
    ns.rclone("copy", "-l", str(src), f"{REMOTE}:links/from-rclone")
    sub = top / "from-rclone"
    wait_for("rclone's link in the mount", lambda: os.path.lexists(sub / "made-by-rclone"))
    ns_mount.remount(cold=True)
    assert sorted(os.listdir(sub)) == ["made-by-rclone", "real"]
    assert stat.S_ISLNK(os.lstat(sub / "made-by-rclone").st_mode)
    assert os.readlink(sub / "made-by-rclone") == "real"
    assert os.lstat(sub / "made-by-rclone").st_mtime == 1_400_000_000
    assert (sub / "made-by-rclone").read_bytes() == b"real content"
    assert os.readlink(top / "ln") == "file.txt"


def test_overwrite_by_another_mount_replaces_cached_content(mounted_factory: Any) -> None:
    """Another client that overwrites in place (our own mount does: ``PUT /files/{uuid}`` keeps
    the entry and switches its network object) must not leave this mount serving its cached
    blocks of the old object once the listing TTL has passed."""
    writer = mounted_factory(None, name="writer")
    reader = mounted_factory(writer.user, "--dir-cache-ttl", "1", name="reader")
    old = seeded(300_000, 1)
    (writer.mountpoint / "f.bin").write_bytes(old)
    _fsync(writer.mountpoint / "f.bin")
    wait_for("the file in the reader", lambda: (reader.mountpoint / "f.bin").exists())
    assert (reader.mountpoint / "f.bin").read_bytes() == old  # now cached by the reader

    path = reader.mountpoint / "f.bin"
    # Same size first: only the network object (and mtime) tells the reader anything changed.
    for size, seed in ((300_000, 2), (123_457, 3), (700_001, 4)):
        new = seeded(size, seed)
        (writer.mountpoint / "f.bin").write_bytes(new)
        os.utime(writer.mountpoint / "f.bin", (MTIME + seed, MTIME + seed))
        _fsync(writer.mountpoint / "f.bin")
        wait_for("the new mtime in the reader", lambda s=seed: path.stat().st_mtime == MTIME + s)
        assert path.stat().st_size == size
        assert path.read_bytes() == new, size
