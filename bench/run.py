#!/usr/bin/env python3
"""internxtfs benchmarks: absolute numbers and ratios, all measured in one run.

Run as root with the project's venv: ``/work/venv/bin/python bench/run.py [--quick]``.
See bench/README.md for what each ratio compares and why. Nothing here asserts a time: the
script prints a table (and writes it as JSON with ``--json``), and its exit status only says
whether every benchmark ran.

Comparison points, all on this machine in this run:
* a local directory on the same disk as the cache and the emulator data;
* pyfuse3's own ``examples/passthroughfs.py``, downloaded at run time from the pyfuse3 sdist of
  the installed version (never vendored);
* rclone's ``mount`` of the same emulator, run inside the interop namespace
  (tests/interop/rclone_ns.py), with its I/O done inside that namespace too;
* for the listing benchmark, the listing pages fetched one after another with httpx.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import trio

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from internxtfs.internxt.client import InternxtClient  # noqa: E402
from tests.harness.emulator import EmulatorProcess  # noqa: E402
from tests.harness.mounting import MountedFS, fuse_available  # noqa: E402
from tests.interop import rclone_ns  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
PASSWORD = "bench-password"
LIST_PAGE = 50  # the server's page size for folder listings (protocol §7.2)


# --- sizes ---------------------------------------------------------------------------------


@dataclass
class Sizes:
    seq_bytes: int = GiB
    io_chunk: int = MiB
    small_files: int = 1000
    small_size: int = 4096
    latency_ms: int = 30
    list_files: int = 5000
    warm_folders: int = 50
    rss_bytes: int = 2 * GiB
    rounds: int = 3
    cold_read_bytes: int = 512 * MiB
    cold_read_latencies: tuple[int, ...] = (0, 30)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            seq_bytes=128 * MiB,
            small_files=100,
            list_files=1000,
            rss_bytes=256 * MiB,
            rounds=2,
            cold_read_bytes=64 * MiB,
        )


# --- results -------------------------------------------------------------------------------


@dataclass
class Row:
    bench: str
    subject: str
    value: float | None
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    not_measured: list[tuple[str, str]] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.bench}: {row.subject} = {_fmt(row.value)} {row.unit}", flush=True)
        return row

    def skip(self, what: str, why: str) -> None:
        self.not_measured.append((what, why))
        print(f"  not measured: {what}: {why}", flush=True)

    def table(self) -> str:
        head = ("benchmark", "subject", "value", "baseline", "ratio", "target", "")
        lines = [head]
        for r in self.rows:
            base = f"{r.baseline} {_fmt(r.baseline_value)}" if r.baseline else ""
            verdict = "" if r.ok is None else ("PASS" if r.ok else "MISS")
            lines.append(
                (
                    r.bench,
                    r.subject,
                    f"{_fmt(r.value)} {r.unit}",
                    base,
                    _fmt(r.ratio, 3),
                    r.target,
                    verdict,
                )
            )
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
        out = []
        for n, line in enumerate(lines):
            out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        for r in self.rows:
            if r.note:
                out.append(f"* {r.bench} / {r.subject}: {r.note}")
        for what, why in self.not_measured:
            out.append(f"not measured: {what}: {why}")
        return "\n".join(out)


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


# --- environment ---------------------------------------------------------------------------


def filesystem_type(path: Path) -> str:
    """fstype of the mount holding ``path`` (longest matching mountpoint in /proc/mounts)."""
    best, kind = "", "?"
    real = str(path.resolve())
    with open("/proc/mounts") as mounts:
        for line in mounts:
            parts = line.split()
            point = parts[1].replace("\\040", " ")
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(
                best
            ):
                best, kind = point, parts[2]
    return kind


def pick_tmp_root(requested: str | None) -> Path:
    candidates = [requested] if requested else [tempfile.gettempdir(), "/var/tmp", str(REPO.parent)]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and filesystem_type(Path(candidate)) != "tmpfs":
            return Path(tempfile.mkdtemp(prefix="internxtfs-bench-", dir=candidate))
    raise SystemExit(f"no non-tmpfs temp dir among {candidates}; pass --tmp-dir")


def drop_caches() -> bool:
    """Drop the page cache so 'cold' reads really read; False when not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def wait_for_mount(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if os.path.ismount(path):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} not mounted after {timeout}s")


# --- I/O kernels (also run inside the rclone namespace, so self-contained source) -----------

IO_KERNELS = textwrap.dedent(
    '''
    import os, time

    def pattern(chunk):
        # Incompressible and position-dependent enough to catch misplaced blocks on read.
        base = os.urandom(chunk)
        return base

    def seq_write(path, total, chunk, data):
        """Seconds from open to the end of close()."""
        view = memoryview(data)
        start = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            done = 0
            while done < total:
                n = os.write(fd, view[: min(chunk, total - done)])
                done += n
        finally:
            os.close(fd)
        return time.perf_counter() - start

    def seq_read(path, chunk, data):
        """(seconds, bytes, mismatches): read to EOF, comparing against the written pattern."""
        buf = bytearray(chunk)
        view = memoryview(buf)
        total = bad = 0
        start = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        try:
            while True:
                n = os.readv(fd, [view])
                if n == 0:
                    break
                if view[:n] != data[total % len(data): total % len(data) + n]:
                    bad += 1
                total += n
        finally:
            os.close(fd)
        return time.perf_counter() - start, total, bad

    def small_files(folder, count, size):
        payload = os.urandom(size)
        start = time.perf_counter()
        for i in range(count):
            fd = os.open(os.path.join(folder, "f%05d.bin" % i), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)
        return time.perf_counter() - start
    '''
)
_kernels: dict[str, Any] = {}
exec(IO_KERNELS, _kernels)
seq_write: Callable[[str, int, int, bytes], float] = _kernels["seq_write"]
seq_read: Callable[[str, int, bytes], tuple[float, int, int]] = _kernels["seq_read"]
small_files: Callable[[str, int, int], float] = _kernels["small_files"]


def chunk_pattern(size: int) -> bytes:
    # A chunk whose length does not divide MiB-aligned offsets evenly would be better at
    # catching misplaced blocks, but the read loop compares chunk by chunk; a random chunk
    # repeated still catches lost, zeroed or truncated data.
    return os.urandom(size)


def mibps(nbytes: int, seconds: float) -> float:
    return nbytes / MiB / seconds


# --- RSS sampling --------------------------------------------------------------------------


class RssSampler:
    """Polls /proc/<pid>/status; keeps the largest VmRSS and the last VmHWM seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.max_rss_kib = 0
        self.hwm_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.max_rss_kib = max(self.max_rss_kib, int(line.split()[1]))
                    elif line.startswith("VmHWM:"):
                        self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))
        except (OSError, ValueError):
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set() and self._sample():
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return max(self.max_rss_kib, self.hwm_kib) / 1024


# --- the comparison filesystems ------------------------------------------------------------


def fetch_passthrough(dest: Path) -> Path:
    """pyfuse3's examples/passthroughfs.py from the sdist of the installed pyfuse3."""
    version = metadata.version("pyfuse3")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"),
            *("--no-deps", f"pyfuse3=={version}", "-d", str(dest)),
        ],
        check=True,
        timeout=300,
    )
    (sdist,) = dest.glob("pyfuse3-*.tar.gz")
    member = f"pyfuse3-{version}/examples/passthroughfs.py"
    with tarfile.open(sdist) as tar:
        source = tar.extractfile(member)
        if source is None:
            raise RuntimeError(f"{member} not in {sdist.name}")
        script = dest / "passthroughfs.py"
        script.write_bytes(source.read())
    return script


class Passthrough:
    def __init__(self, script: Path, source: Path, mountpoint: Path) -> None:
        self.script, self.source, self.mountpoint = script, source, mountpoint
        self.proc: subprocess.Popen[bytes] | None = None
        source.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), str(self.source), str(self.mountpoint)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_mount(self.mountpoint, self.proc)

    def unmount(self) -> None:
        if self.proc is None:
            return
        subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=False)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)
        self.proc = None


class Bench:
    def __init__(self, root: Path, sizes: Sizes, report: Report) -> None:
        self.root = root
        self.sizes = sizes
        self.report = report
        self.emulator = EmulatorProcess(root / "emulator").start()
        self._users = 0
        self._mounts: list[MountedFS] = []
        self._passthroughs: list[Passthrough] = []

    def close(self) -> None:
        for m in self._mounts:
            with contextlib.suppress(Exception):
                m.unmount(timeout=30)
        for p in self._passthroughs:
            with contextlib.suppress(Exception):
                p.unmount()
        self.emulator.cleanup()

    # --- helpers -------------------------------------------------------------------------

    def new_user(self) -> dict[str, Any]:
        self._users += 1
        return self.emulator.add_user(email=f"bench{self._users}@example.com", password=PASSWORD)

    def new_mount(self, name: str, user: dict[str, Any] | None = None) -> MountedFS:
        m = MountedFS(self.emulator, user or self.new_user(), self.root / name)
        m.login()
        self._mounts.append(m)
        return m

    def unmount(self, m: MountedFS) -> float:
        """Unmount (the uploader flushes first); returns the seconds it took."""
        start = time.perf_counter()
        code = m.unmount(timeout=3600)
        elapsed = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"mount exited with {code}:\n{m.log()}")
        return elapsed

    def latency(self, ms: int) -> None:
        self.emulator.set_faults(latency_ms=ms)

    @contextlib.asynccontextmanager
    async def _api(self, user: dict[str, Any]) -> AsyncIterator[InternxtClient]:
        """Our protocol client, logged in as ``user`` (for setup and checks, not timed)."""
        async with InternxtClient(
            drive_url=self.emulator.drive_url, network_url=self.emulator.network_url
        ) as client:
            await client.login(user["email"], PASSWORD)
            yield client

    # --- 1. sequential write and cold read ------------------------------------------------

    def sequential(self, passthrough_script: Path | None) -> dict[str, float]:
        """Median of ``rounds`` runs, the subjects interleaved within each round.

        Before every timed run the page cache is written back and dropped, so no run pays
        for the previous one's writeback. Writes rewrite the same file (O_TRUNC).
        """
        s = self.sizes
        data = chunk_pattern(s.io_chunk)
        runs: dict[str, list[float]] = {}
        size_txt = f"{s.seq_bytes // MiB} MiB in {s.io_chunk // 1024} KiB writes"

        def timed(key: str, fn: Callable[[], float]) -> None:
            drop_caches()
            runs.setdefault(key, []).append(fn())

        def write(path: Path) -> Callable[[], float]:
            return lambda: mibps(s.seq_bytes, seq_write(str(path), s.seq_bytes, s.io_chunk, data))

        def read(path: Path) -> Callable[[], float]:
            def run() -> float:
                seconds, total, bad = seq_read(str(path), s.io_chunk, data)
                if total != s.seq_bytes or bad:
                    raise RuntimeError(f"read of {path}: {total} bytes, {bad} bad chunks")
                return mibps(total, seconds)

            return run

        local = self.root / "local"
        local.mkdir()
        pt: Passthrough | None = None
        if passthrough_script is not None:
            pt = Passthrough(passthrough_script, self.root / "pt-src", self.root / "pt-mnt")
            self._passthroughs.append(pt)
            pt.mount()
        self.latency(0)
        m = self.new_mount("seq")
        # The uploader starts only after close() anyway; a long quiet period keeps one
        # round's upload out of the next round's timed write. Unmount uploads what is left.
        m.mount("--upload-delay", "3600", "--flush-timeout", "3600")

        # Warm-up, not timed: the first large write after boot (or after memory was given back
        # to the host) pays for faulting in fresh guest pages, whichever subject comes first.
        seq_write(str(local / "warmup"), 2 * s.seq_bytes, s.io_chunk, data)
        (local / "warmup").unlink()
        for _ in range(s.rounds):
            timed("local_write", write(local / "big"))
            if pt is not None:
                timed("pt_write", write(pt.mountpoint / "big"))
            timed("ixt_write", write(m.mountpoint / "big"))
        upload_s = self.unmount(m)
        for _ in range(s.rounds):
            timed("local_read", read(local / "big"))
            if pt is not None:
                pt.unmount()  # cold: the FUSE inode's page cache goes with the mount
                pt.mount()
                timed("pt_read", read(pt.mountpoint / "big"))
            shutil.rmtree(m.cache_dir, ignore_errors=True)  # cold: data from the emulator
            m.mount()
            timed("ixt_read", read(m.mountpoint / "big"))
            self.unmount(m)
        if pt is not None:
            pt.unmount()
            (pt.source / "big").unlink()
        (local / "big").unlink()
        shutil.rmtree(m.cache_dir, ignore_errors=True)

        speeds = {key: statistics.median(values) for key, values in runs.items()}
        speeds["ixt_upload"] = mibps(s.seq_bytes, upload_s)

        def spread(key: str) -> str:
            values = runs.get(key, [])
            return f"median of {len(values)}: " + ", ".join(f"{v:.0f}" for v in values)

        r = self.report
        pt_w, pt_r = speeds.get("pt_write"), speeds.get("pt_read")
        w, rd = speeds["ixt_write"], speeds["ixt_read"]
        r.add(
            Row(
                "1 seq write",
                "local dir",
                speeds["local_write"],
                "MiB/s",
                note=f"{size_txt}; {spread('local_write')}",
            )
        )
        if pt_w is not None:
            r.add(Row("1 seq write", "passthroughfs", pt_w, "MiB/s", note=spread("pt_write")))
        r.add(
            Row(
                "1 seq write",
                "internxtfs (to close)",
                w,
                "MiB/s",
                "passthrough",
                pt_w,
                w / pt_w if pt_w else None,
                ">= 0.8",
                w / pt_w >= 0.8 if pt_w else None,
                note=f"{spread('ixt_write')}; vs local dir {w / speeds['local_write']:.3f}x",
            )
        )
        r.add(
            Row(
                "1 upload",
                "internxtfs flush at unmount",
                speeds["ixt_upload"],
                "MiB/s",
                note="info only: encrypt + upload of the file written, to the emulator",
            )
        )
        caches = "page cache dropped before each run" if drop_caches() else "page cache NOT dropped"
        r.add(
            Row(
                "1 cold read",
                "local dir",
                speeds["local_read"],
                "MiB/s",
                note=f"{caches}; {spread('local_read')}",
            )
        )
        if pt_r is not None:
            r.add(
                Row(
                    "1 cold read",
                    "passthroughfs (remounted)",
                    pt_r,
                    "MiB/s",
                    note=spread("pt_read"),
                )
            )
        r.add(
            Row(
                "1 cold read",
                "internxtfs (cache dir deleted, remounted)",
                rd,
                "MiB/s",
                "passthrough",
                pt_r,
                rd / pt_r if pt_r else None,
                ">= 0.6",
                rd / pt_r >= 0.6 if pt_r else None,
                note=spread("ixt_read"),
            )
        )
        return speeds

    # --- 2. many small files, parallel vs one-at-a-time uploads --------------------------

    def small(self) -> None:
        s = self.sizes
        results: dict[str, tuple[float, float]] = {}
        for label, extra in (
            ("default", []),
            ("one at a time", ["--upload-concurrency", "1"]),
        ):
            self.latency(0)
            user = self.new_user()
            m = self.new_mount(f"small-{len(results)}", user)
            # The harness passes --upload-delay 0.2; give the real default back, and let the
            # flush at unmount take as long as it needs (60 s is the default).
            m.mount("--upload-delay", "1.0", "--flush-timeout", "3600", *extra)
            folder = m.mountpoint / "small"
            folder.mkdir()
            self.latency(s.latency_ms)
            start = time.perf_counter()
            written = small_files(str(folder), s.small_files, s.small_size)
            self.unmount(m)
            total = time.perf_counter() - start
            self.latency(0)
            stored = trio.run(self._count_files, user, "small")
            if stored != s.small_files:
                raise RuntimeError(f"{label}: {stored} of {s.small_files} files stored")
            results[label] = (total, written)
            shutil.rmtree(m.cache_dir, ignore_errors=True)
        par, one = results["default"][0], results["one at a time"][0]
        what = f"{s.small_files} x {s.small_size} B, {s.latency_ms} ms latency"
        self.report.add(
            Row(
                "2 small files",
                "upload-concurrency 1",
                one,
                "s",
                note=f"{what}; writing took {results['one at a time'][1]:.2f} s of it",
            )
        )
        self.report.add(
            Row(
                "2 small files",
                "default settings",
                par,
                "s",
                "one at a time",
                one,
                par / one,
                "<= 0.2",
                par / one <= 0.2,
                note=f"write + upload until unmount returns; writing took "
                f"{results['default'][1]:.2f} s of it",
            )
        )

    async def _count_files(self, user: dict[str, Any], folder_name: str) -> int:
        async with self._api(user) as client:
            root = client.session.root_folder_uuid
            folders = [f for f in await client.drive.list_folders(root) if f.name == folder_name]
            return len(await client.drive.list_files(folders[0].uuid)) if folders else -1

    # --- 3. ls -l of a big folder, cold --------------------------------------------------

    def listing(self) -> None:
        s = self.sizes
        self.latency(0)
        user = self.new_user()
        folder_uuid, token = trio.run(self._populate, user, "big", s.list_files)
        self.latency(s.latency_ms)

        # Baseline: the folder's file pages one after another, as a naive client would.
        url = f"{self.emulator.drive_url}/folders/content/{folder_uuid}/files"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(headers=headers, timeout=60) as http:
            http.get(url, params={"limit": 1, "offset": 0}).raise_for_status()  # connect
            pages = seen = 0
            start = time.perf_counter()
            while True:
                params = {"limit": LIST_PAGE, "offset": seen, "sort": "plainName", "order": "ASC"}
                answer = http.get(url, params=params)
                answer.raise_for_status()
                items = answer.json()["files"]
                pages += 1
                seen += len(items)
                if len(items) < LIST_PAGE:
                    break
            sequential = time.perf_counter() - start
        if seen != s.list_files:
            raise RuntimeError(f"listing pages gave {seen} files, not {s.list_files}")

        m = self.new_mount("ls", user)
        m.mount()  # fresh mount, empty cache: nothing listed yet
        start = time.perf_counter()
        done = subprocess.run(
            ["ls", "-l", str(m.mountpoint / "big")], capture_output=True, check=True
        )
        elapsed = time.perf_counter() - start
        lines = done.stdout.count(b"\n") - 1  # minus "total N"
        self.unmount(m)
        shutil.rmtree(m.cache_dir, ignore_errors=True)
        self.latency(0)
        if lines != s.list_files:
            raise RuntimeError(f"ls -l listed {lines} entries, not {s.list_files}")
        what = f"{s.list_files} files, {s.latency_ms} ms latency"
        self.report.add(
            Row(
                "3 ls -l cold",
                "pages one after another (httpx)",
                sequential,
                "s",
                note=f"{what}; {pages} page requests",
            )
        )
        self.report.add(
            Row(
                "3 ls -l cold",
                "internxtfs ls -l (fresh mount)",
                elapsed,
                "s",
                "sequential pages",
                sequential,
                elapsed / sequential,
                "<= 0.2",
                elapsed / sequential <= 0.2,
            )
        )

    async def _populate(self, user: dict[str, Any], name: str, count: int) -> tuple[str, str]:
        """A folder of ``count`` empty files, created through the API (fast, no latency)."""
        async with self._api(user) as client:
            root = client.session.root_folder_uuid
            folder = await client.drive.create_folder(root, name)
            limiter = trio.CapacityLimiter(16)

            async def one(i: int) -> None:
                async with limiter:
                    await client.drive.create_file(folder.uuid, f"entry-{i:05d}.dat", 0, None)

            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(one, i)
            return folder.uuid, client.session.token

    # --- 6. ls -lR after a remount: the metadata cache (warm start, issue 9) ----------------

    def warm_listing(self) -> None:
        """``ls -lR`` of a tree of ``list_files`` files in ``warm_folders`` folders at
        ``latency_ms``: on a fresh mount with an empty cache (cold), then right after a remount
        on the same cache, its listings older than ``--dir-cache-ttl`` (shown from the
        metadata cache at once, listed again in the background)."""
        s = self.sizes
        self.latency(0)
        user = self.new_user()
        per_folder = s.list_files // s.warm_folders
        trio.run(self._populate_tree, user, s.warm_folders, per_folder)
        self.latency(s.latency_ms)
        ttl = 2.0
        m = self.new_mount("warm", user)
        m.mount("--dir-cache-ttl", str(ttl))

        def ls_lr() -> tuple[float, int]:
            start = time.perf_counter()
            done = subprocess.run(["ls", "-lR", str(m.mountpoint)], capture_output=True, check=True)
            elapsed = time.perf_counter() - start
            files = sum(1 for line in done.stdout.splitlines() if line.startswith(b"-"))
            return elapsed, files

        cold, cold_files = ls_lr()
        self.unmount(m)
        m.mount("--dir-cache-ttl", str(ttl))
        time.sleep(ttl + 0.5)  # every kept listing is past its TTL, as after any real pause
        warm, warm_files = ls_lr()
        self.unmount(m)
        shutil.rmtree(m.cache_dir, ignore_errors=True)
        self.latency(0)
        expected = per_folder * s.warm_folders
        if cold_files != expected or warm_files != expected:
            raise RuntimeError(f"ls -lR listed {cold_files} / {warm_files} files, not {expected}")
        what = f"{expected} files in {s.warm_folders} folders, {s.latency_ms} ms latency"
        self.report.add(Row("6 ls -lR remount", "internxtfs, fresh mount (cold)", cold, "s",
                            note=what))  # fmt: skip
        self.report.add(
            Row(
                "6 ls -lR remount",
                "internxtfs, remount (metadata kept)",
                warm,
                "s",
                "cold",
                cold,
                cold / warm,
                ">= 5 (x faster)",
                cold / warm >= 5,
                note="listings past --dir-cache-ttl: shown at once, listed in the background",
            )
        )

    async def _populate_tree(self, user: dict[str, Any], folders: int, per_folder: int) -> None:
        """``folders`` folders of ``per_folder`` empty files each, through the API."""
        async with self._api(user) as client:
            root = client.session.root_folder_uuid
            limiter = trio.CapacityLimiter(16)

            async def one(folder_uuid: str, i: int) -> None:
                async with limiter:
                    await client.drive.create_file(folder_uuid, f"entry-{i:05d}.dat", 0, None)

            async with trio.open_nursery() as nursery:
                for f in range(folders):
                    folder = await client.drive.create_folder(root, f"dir-{f:03d}")
                    for i in range(per_folder):
                        nursery.start_soon(one, folder.uuid, i)

    # --- 4. peak RSS while writing and uploading a big file --------------------------------

    def rss(self) -> None:
        s = self.sizes
        self.latency(0)
        m = self.new_mount("rss")
        m.mount("--flush-timeout", "3600")
        assert m.proc is not None
        data = chunk_pattern(s.io_chunk)
        with RssSampler(m.proc.pid) as sampler:
            write_s = seq_write(str(m.mountpoint / "huge"), s.rss_bytes, s.io_chunk, data)
            flush_s = self.unmount(m)
        shutil.rmtree(m.cache_dir, ignore_errors=True)
        self.report.add(
            Row(
                "4 peak RSS",
                "internxtfs mount process",
                sampler.peak_mib,
                "MiB",
                "limit",
                200.0,
                sampler.peak_mib / 200.0,
                "<= 1.0 (200 MiB)",
                sampler.peak_mib <= 200.0,
                note=f"{s.rss_bytes // MiB} MiB file: write {write_s:.1f} s, upload at unmount "
                f"{flush_s:.1f} s; max VmRSS polled {sampler.max_rss_kib // 1024} MiB, "
                f"VmHWM {sampler.hwm_kib // 1024} MiB",
            )
        )


# --- rclone mount in the interop namespace ------------------------------------------------


class RcloneBench:
    """The same I/O through ``rclone mount`` of the emulator, all inside the namespace."""

    def __init__(self, root: Path, sizes: Sizes, report: Report) -> None:
        self.root = root
        self.sizes = sizes
        self.report = report
        self.ns = rclone_ns.RcloneNamespace(root / "rclone")
        self.mountpoint = root / "rclone" / "mnt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kernels = root / "rclone" / "io_kernels.py"

    def __enter__(self) -> RcloneBench:
        self.ns.start()
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.kernels.write_text(IO_KERNELS)
        self.ns.add_user("rclone@example.com", PASSWORD)
        self.ns.config_create("ixt", "rclone@example.com", PASSWORD)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.unmount()
        self.ns.stop()
        self.ns.discard_data()

    def mount(self, *extra: str) -> None:
        cache = self.root / "rclone" / "vfs-cache"
        shutil.rmtree(cache, ignore_errors=True)
        cmd = [
            "nsenter",
            f"--target={self.ns.pid}",
            "--mount",
            "--net",
            "--",
            self.ns.rclone_bin,
            "mount",
            "ixt:",
            str(self.mountpoint),
            "--cache-dir",
            str(cache),
            "--log-file",
            str(self.root / "rclone" / "mount.log"),
            *extra,
        ]
        self.proc = subprocess.Popen(cmd, env=self.ns.env(), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        probe = "import os,sys; sys.exit(0 if os.path.ismount(sys.argv[1]) else 1)"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone mount exited with {self.proc.returncode}")
            if self.ns.python("-c", probe, str(self.mountpoint), check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("rclone mount did not come up")

    def unmount(self) -> float:
        start = time.perf_counter()
        if self.proc is not None:
            self.ns.run(["fusermount3", "-u", str(self.mountpoint)], check=False)
            try:
                self.proc.wait(3600)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        return time.perf_counter() - start

    def kernel(self, call: str, timeout: float = 3600) -> Any:
        code = f"import json,sys; sys.path.insert(0, {str(self.kernels.parent)!r})\n"
        code += "from io_kernels import *\n"
        code += f"print(json.dumps({call}))\n"
        done = self.ns.python("-c", code, timeout=timeout)
        return json.loads(done.stdout)

    def sequential(self, speeds: dict[str, float]) -> None:
        s = self.sizes
        path = str(self.mountpoint / "seq.bin")
        args = f"{s.seq_bytes}, {s.io_chunk}"
        # writes: close() returns once the data is in rclone's VFS cache (like ours).
        self.mount("--vfs-cache-mode", "writes", "--vfs-write-back", "0s")
        write_s = self.kernel(f"seq_write({path!r}, {args}, os.urandom({s.io_chunk}))")
        # Wait for the background upload, asking the remote (not the mount) for the size.
        start = time.perf_counter()
        while time.perf_counter() - start < 3600:
            listed = self.ns.rclone("lsf", "--format", "s", "ixt:seq.bin", check=False)
            if listed.returncode == 0 and listed.stdout.strip() == str(s.seq_bytes).encode():
                break
            time.sleep(0.5)
        upload_s = time.perf_counter() - start
        self.unmount()
        # Cold read: fresh VFS cache, no cache mode, pattern check not possible across
        # processes (random data), so it checks the size.
        self.mount("--vfs-cache-mode", "off")
        drop_caches()
        read_s, total, _ = self.kernel(f"seq_read({path!r}, {s.io_chunk}, b'\\0')")
        self.unmount()
        if total != s.seq_bytes:
            raise RuntimeError(f"rclone read {total} bytes, not {s.seq_bytes}")
        w, rd = mibps(s.seq_bytes, write_s), mibps(s.seq_bytes, read_s)
        r = self.report
        pt_w, pt_r = speeds.get("pt_write"), speeds.get("pt_read")
        r.add(
            Row(
                "1 seq write",
                "rclone mount (vfs writes, to close)",
                w,
                "MiB/s",
                "internxtfs",
                speeds["ixt_write"],
                speeds["ixt_write"] / w,
                note=f"ratio = internxtfs / rclone; rclone/passthrough = "
                f"{w / pt_w if pt_w else float('nan'):.3f}; its upload finished "
                f"{upload_s:.1f} s after close",
            )
        )
        r.add(
            Row(
                "1 cold read",
                "rclone mount (cache off, remounted)",
                rd,
                "MiB/s",
                "internxtfs",
                speeds["ixt_read"],
                speeds["ixt_read"] / rd,
                note=f"ratio = internxtfs / rclone; rclone/passthrough = "
                f"{rd / pt_r if pt_r else float('nan'):.3f}; HTTPS (rclone) vs HTTP (ours)",
            )
        )

    def listing(self, ixt_seconds: float | None) -> None:
        s = self.sizes
        # Populate with our own client inside the namespace (rclone would take minutes).
        code = textwrap.dedent(
            f"""
            import trio
            from internxtfs.internxt.client import InternxtClient
            async def main():
                url = {rclone_ns.GATEWAY_URL!r}
                client = InternxtClient(drive_url=url + "/drive", network_url=url + "/network")
                await client.login("rclone@example.com", {PASSWORD!r})
                async with client:
                    root = client.session.root_folder_uuid
                    folder = await client.drive.create_folder(root, "listing")
                    limiter = trio.CapacityLimiter(16)
                    async def one(i):
                        async with limiter:
                            await client.drive.create_file(folder.uuid, f"entry-{{i:05d}}.dat",
                                                           0, None)
                    async with trio.open_nursery() as n:
                        for i in range({s.list_files}):
                            n.start_soon(one, i)
            trio.run(main)
            """
        )
        self.ns.python("-c", code, timeout=600)
        self.ns.admin("POST", "/faults", {"latency_ms": s.latency_ms})
        try:
            self.mount("--vfs-cache-mode", "off")
            code = (
                "import subprocess,sys,time,json; t=time.perf_counter(); "
                "o=subprocess.run(['ls','-l',sys.argv[1]],capture_output=True,check=True).stdout;"
                "print(json.dumps([time.perf_counter()-t, o.count(b'\\n')-1]))"
            )
            done = self.ns.python("-c", code, str(self.mountpoint / "listing"), timeout=600)
            seconds, lines = json.loads(done.stdout)
            self.unmount()
        finally:
            self.ns.admin("POST", "/faults", {"latency_ms": 0})
        if lines != s.list_files:
            raise RuntimeError(f"rclone ls -l listed {lines} entries")
        self.report.add(
            Row(
                "3 ls -l cold",
                "rclone mount ls -l (fresh mount)",
                seconds,
                "s",
                "internxtfs",
                ixt_seconds,
                (ixt_seconds / seconds) if ixt_seconds else None,
                note="ratio = internxtfs / rclone (HTTPS in the namespace)",
            )
        )


# --- cold sequential read: internxtfs vs rclone vs passthrough, 0 and 30 ms -------------------

# A stamped pattern lets a reader in another process check every byte without a second copy of
# the file: chunk i is the pattern with its first 8 bytes replaced by i. A block served from the
# wrong offset, a hole or a truncation shows up as a mismatch.
STAMPED_READ = textwrap.dedent(
    """
    import json, os, sys, time
    path, chunk, pattern_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(pattern_file, "rb") as f:
        pattern = f.read()
    tail = pattern[8:]
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = bad = 0
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            n = os.readv(fd, [view])
            if n == 0:
                break
            index = total // chunk
            # Compared as bytes (memcmp): a memoryview compares byte by byte in Python's
            # generic loop, ~0.5 s of CPU per 512 MiB taken from the filesystems' two cores.
            if total % chunk or (n < chunk and bytes(view[:n]) != (index.to_bytes(8, "little")
                                                                 + tail)[:n]):
                bad += 1
            elif n == chunk and (buf[:8] != index.to_bytes(8, "little") or buf[8:] != tail):
                bad += 1
            total += n
    finally:
        os.close(fd)
    print(json.dumps([time.perf_counter() - start, total, bad]))
    """
)


def write_stamped(path: Path, size: int, pattern: bytes) -> None:
    chunk = len(pattern)
    with path.open("wb") as f:
        for i in range(-(-size // chunk)):
            piece = i.to_bytes(8, "little") + pattern[8:]
            f.write(piece[: min(chunk, size - i * chunk)])


class ColdReadBench:
    """Cold sequential read of one file, in one run, through three FUSE filesystems:

    * internxtfs, fresh cache directory, remounted before every read;
    * ``rclone mount --vfs-cache-mode writes`` (fresh VFS cache, remounted);
    * pyfuse3's passthrough example over a local copy (remounted, page cache dropped).

    internxtfs and rclone mount the same account on the same emulator, inside the interop
    namespace (HTTPS at the production URL, the one rclone's backend can talk to), and read
    the same stored object. The emulator's latency knob is set to each of ``latencies``; the
    subjects are interleaved within each round and the median of the rounds is reported.
    Peak RSS of each mount process is sampled during its reads.
    """

    EMAIL = "coldread@example.com"

    def __init__(
        self,
        root: Path,
        report: Report,
        *,
        size: int,
        rounds: int,
        baseline_src: Path | None = None,
    ) -> None:
        self.root = root / "coldread"
        # Another checkout's ``internxtfs`` package, mounted as one more interleaved subject
        # (PYTHONPATH): before/after a change, measured under the same load.
        self.baseline_src = baseline_src
        self.report = report
        self.size = size
        self.rounds = rounds
        self.ns = rclone_ns.RcloneNamespace(self.root / "ns")
        self.pattern_file = self.root / "pattern"
        self.reader = self.root / "stamped_read.py"
        self.ixt_dir = self.root / "ixt"
        self.ixt_env = {
            "INTERNXTFS_CONFIG_DIR": str(self.ixt_dir / "config"),
            "INTERNXTFS_DRIVE_URL": rclone_ns.GATEWAY_URL + "/drive",
            "INTERNXTFS_NETWORK_URL": rclone_ns.GATEWAY_URL + "/network",
        }
        self.ixt_proc: subprocess.Popen[bytes] | None = None
        self.rc_proc: subprocess.Popen[bytes] | None = None
        self.server_cpu: list[float] = []
        self.main_cpu: list[float] = []  # of the filesystem's main thread (trio's, for ours)
        self.pt: Passthrough | None = None
        self.rc_unmount_timeout = 120.0
        # The internxtfs package the main subject mounts (None: this checkout's); a snapshot
        # keeps a long run from picking up edits made while it runs.
        self.ixt_src: Path | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ColdReadBench:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ns.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for stop in (self._ixt_unmount, self._rc_unmount):
            with contextlib.suppress(Exception):
                stop()
        if self.pt is not None:
            with contextlib.suppress(Exception):
                self.pt.unmount()
        self.ns.stop()
        self.ns.discard_data()

    def prepare(self, passthrough_script: Path | None) -> None:
        pattern = os.urandom(MiB)
        self.pattern_file.write_bytes(pattern)
        self.reader.write_text(STAMPED_READ)
        source = self.root / "source.bin"
        write_stamped(source, self.size, pattern)
        self.ns.add_user(self.EMAIL, PASSWORD)
        self.ns.config_create("ixt", self.EMAIL, PASSWORD)
        # Stored once, read by both clients (they share the account and the protocol).
        self.ns.rclone("copyto", str(source), "ixt:big.bin", timeout=1800)
        (self.ixt_dir / "mnt").mkdir(parents=True, exist_ok=True)
        (self.root / "rclone-mnt").mkdir(parents=True, exist_ok=True)
        pw = self.ixt_dir / "password"
        pw.write_text(PASSWORD)
        login = [str(Path(sys.executable).with_name("internxtfs")), "login"]
        self.ns.run(
            [*login, "--email", self.EMAIL, "--password-file", str(pw)], extra_env=self.ixt_env
        )
        if passthrough_script is not None:
            self.pt = Passthrough(passthrough_script, self.root / "pt-src", self.root / "pt-mnt")
            source.rename(self.pt.source / "big.bin")
        else:
            source.unlink()

    # --- the three subjects ----------------------------------------------------------------

    def _ixt_mount(self, baseline: bool = False, extra: tuple[str, ...] = ()) -> None:
        cache = self.ixt_dir / "cache"
        shutil.rmtree(cache, ignore_errors=True)  # cold: every byte from the emulator
        ready_r, ready_w = os.pipe()
        argv = [
            str(Path(sys.executable).with_name("internxtfs")),
            *("--log-file", str(self.ixt_dir / "mount.log")),
            *("mount", str(self.ixt_dir / "mnt"), "-f"),
            *("--ready-fd", str(ready_w), "--cache-dir", str(cache)),
            *extra,
        ]
        env = dict(self.ixt_env)
        if baseline:
            assert self.baseline_src is not None
            env["PYTHONPATH"] = str(self.baseline_src)
        elif self.ixt_src is not None:
            env["PYTHONPATH"] = str(self.ixt_src)
        self.ixt_proc = self.ns.popen(
            argv, extra_env=env, stdin=subprocess.DEVNULL, pass_fds=(ready_w,)
        )
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as pipe:
            ready, _, _ = select.select([pipe], [], [], 60)
            line = pipe.readline() if ready else b""
        if line.strip() != b"ready":
            raise RuntimeError(f"internxtfs mount did not come up: {line!r}")

    def _ixt_unmount(self) -> None:
        if self.ixt_proc is None:
            return
        self.ns.run(["fusermount3", "-u", str(self.ixt_dir / "mnt")], check=False)
        try:
            self.ixt_proc.wait(120)
        except subprocess.TimeoutExpired:
            self.ixt_proc.kill()
            self.ixt_proc.wait()
            self.ns.run(["fusermount3", "-uz", str(self.ixt_dir / "mnt")], check=False)
        self.ixt_proc = None

    def _rc_mount(self, extra: tuple[str, ...] = ()) -> None:
        cache = self.root / "rclone-cache"
        shutil.rmtree(cache, ignore_errors=True)
        argv = [
            *(self.ns.rclone_bin, "mount", "ixt:", str(self.root / "rclone-mnt")),
            *("--cache-dir", str(cache), "--log-file", str(self.root / "rclone-mount.log")),
            *("--vfs-cache-mode", "writes"),
            *extra,
        ]
        self.rc_proc = self.ns.popen(argv, stdin=subprocess.DEVNULL)
        probe = "import os,sys; sys.exit(0 if os.path.ismount(sys.argv[1]) else 1)"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.rc_proc.poll() is not None:
                raise RuntimeError(f"rclone mount exited with {self.rc_proc.returncode}")
            mnt = str(self.root / "rclone-mnt")
            if self.ns.python("-c", probe, mnt, check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("rclone mount did not come up")

    def _rc_unmount(self) -> None:
        if self.rc_proc is None:
            return
        self.ns.run(["fusermount3", "-u", str(self.root / "rclone-mnt")], check=False)
        try:
            self.rc_proc.wait(self.rc_unmount_timeout)
        except subprocess.TimeoutExpired:
            self.rc_proc.kill()
            self.rc_proc.wait()
        self.rc_proc = None

    def _read(self, path: Path, *, in_ns: bool) -> float:
        """MiB/s of one checked sequential read of ``path`` (1 MiB reads)."""
        drop_caches()
        argv = [sys.executable, str(self.reader), str(path), str(MiB), str(self.pattern_file)]
        if in_ns:
            out = self.ns.run(argv, timeout=1800).stdout
        else:
            out = subprocess.run(argv, capture_output=True, check=True, timeout=1800).stdout
        seconds, total, bad = json.loads(out)
        if total != self.size or bad:
            raise RuntimeError(f"read of {path}: {total} of {self.size} bytes, {bad} bad chunks")
        return mibps(total, seconds)

    def one(self, subject: str) -> tuple[float, float, float]:
        """(MiB/s, peak RSS MiB, CPU seconds) of the filesystem process during one cold read."""
        if subject == "passthrough":
            assert self.pt is not None
            self.pt.mount()
            assert self.pt.proc is not None
            try:
                return self._measured(self.pt.proc.pid, self.pt.mountpoint, in_ns=False)
            finally:
                self.pt.unmount()
        if subject in ("internxtfs", "baseline"):
            self._ixt_mount(baseline=subject == "baseline")
            assert self.ixt_proc is not None
            try:
                return self._measured(self.ixt_proc.pid, self.ixt_dir / "mnt", in_ns=True)
            finally:
                self._ixt_unmount()
        self._rc_mount()
        assert self.rc_proc is not None
        try:
            return self._measured(self.rc_proc.pid, self.root / "rclone-mnt", in_ns=True)
        finally:
            self._rc_unmount()

    def _measured(self, pid: int, mnt: Path, *, in_ns: bool) -> tuple[float, float, float]:
        before, server = cpu_seconds(pid), cpu_seconds(self.ns.pid)
        main = cpu_seconds(pid, pid)
        with RssSampler(pid) as rss:
            speed = self._read(mnt / "big.bin", in_ns=in_ns)
        self.main_cpu.append(cpu_seconds(pid, pid) - main)
        if in_ns:  # the emulator's CPU per read: near the read's wall time = the server limits
            self.server_cpu.append(cpu_seconds(self.ns.pid) - server)
        return speed, rss.peak_mib, cpu_seconds(pid) - before

    def profile(self, out: Path, latency: int = 0, rate: int = 250, *, perf: bool = False) -> None:
        """One extra cold read of internxtfs under ``py-spy record`` (raw stacks), or with
        ``perf``: under ``perf record -a`` (every process, kernel included: where the
        machine's CPU goes during the read, by process and by function)."""
        spy = Path(sys.executable).with_name("py-spy")
        if perf and shutil.which("perf") is None:
            self.report.skip("cold read profile", "perf not installed")
            return
        if not perf and not spy.exists():
            self.report.skip("cold read profile", "py-spy not installed (pip install py-spy)")
            return
        self.ns.admin("POST", "/faults", {"latency_ms": latency})
        self._ixt_mount()
        assert self.ixt_proc is not None
        cmd = [str(spy), "record", "--pid", str(self.ixt_proc.pid), "--rate", str(rate)]
        cmd += ["--format", "raw", "--threads", "--output", str(out)]
        if perf:
            cmd = ["perf", "record", "-a", "-g", "-F", "999", "-o", str(out)]
        spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)  # py-spy attached
            speed = self._read(self.ixt_dir / "mnt" / "big.bin", in_ns=True)
        finally:
            spy_proc.send_signal(2)
            spy_proc.wait(60)
            self._ixt_unmount()
            self.ns.admin("POST", "/faults", {"latency_ms": 0})
        print(f"  profile: {out} ({speed:.0f} MiB/s while sampled)", flush=True)
        if perf:
            for sort in ("comm,dso", "comm,sym"):
                args = ["-i", str(out), "--stdio", "--no-children", "-g", "none", "--sort", sort]
                report = subprocess.run(
                    ["perf", "report", "--percent-limit", "0.7", *args],
                    capture_output=True,
                    text=True,
                )
                lines = [ln for ln in report.stdout.splitlines() if ln and ln[0] != "#"]
                print("\n".join(lines[:45]), flush=True)
        else:
            print(summarize_profile(out), flush=True)

    def run(self, latencies: tuple[int, ...]) -> None:
        subjects = ["internxtfs", "rclone"] + (["passthrough"] if self.pt is not None else [])
        if self.baseline_src is not None:
            subjects.append("baseline")
        for latency in latencies:
            self.ns.admin("POST", "/faults", {"latency_ms": latency})
            speeds: dict[str, list[float]] = {s: [] for s in subjects}
            peaks: dict[str, list[float]] = {s: [] for s in subjects}
            cpu: dict[str, list[float]] = {s: [] for s in subjects}
            for n in range(self.rounds):
                # Rotate the order each round so no subject always runs first or last.
                for subject in subjects[n % len(subjects) :] + subjects[: n % len(subjects)]:
                    self.server_cpu.clear()
                    self.main_cpu.clear()
                    speed, peak, seconds = self.one(subject)
                    server = f", emulator {self.server_cpu[0]:.1f} s" if self.server_cpu else ""
                    main = f" ({self.main_cpu[0]:.2f} s main thread)" if self.main_cpu else ""
                    print(
                        f"    {latency} ms {subject}: {speed:.0f} MiB/s, {peak:.0f} MiB, "
                        f"{seconds:.1f} s CPU{main}{server}; read took "
                        f"{self.size / MiB / speed:.1f} s",
                        flush=True,
                    )
                    speeds[subject].append(speed)
                    peaks[subject].append(peak)
                    cpu[subject].append(seconds)
            self._rows(latency, speeds, peaks, cpu)
        self.ns.admin("POST", "/faults", {"latency_ms": 0})

    def _rows(
        self,
        latency: int,
        speeds: dict[str, list[float]],
        peaks: dict[str, list[float]],
        cpu: dict[str, list[float]],
    ) -> None:
        bench = f"5 cold read {latency} ms"
        med = {s: statistics.median(v) for s, v in speeds.items()}

        def spread(s: str) -> str:
            return (
                f"median of {len(speeds[s])}: "
                + ", ".join(f"{v:.0f}" for v in speeds[s])
                + f"; CPU of the filesystem process per read (median): "
                f"{statistics.median(cpu[s]):.2f} s"
            )

        r = self.report
        size = f"{self.size // MiB} MiB, 1 MiB reads"
        pt = med.get("passthrough")
        if pt is not None:
            r.add(Row(bench, "passthroughfs (remounted)", pt, "MiB/s", note=spread("passthrough")))
        rc = med["rclone"]
        r.add(
            Row(
                bench,
                "rclone mount --vfs-cache-mode writes",
                rc,
                "MiB/s",
                "passthrough" if pt else "",
                pt,
                rc / pt if pt else None,
                note=f"{size}; {spread('rclone')}",
            )
        )
        ixt = med["internxtfs"]
        r.add(
            Row(
                bench,
                "internxtfs (fresh cache, remounted)",
                ixt,
                "MiB/s",
                "rclone",
                rc,
                ixt / rc,
                ">= 1.2",
                ixt / rc >= 1.2,
                note=spread("internxtfs"),
            )
        )
        if pt is not None:
            r.add(
                Row(
                    bench,
                    "internxtfs vs passthroughfs",
                    ixt,
                    "MiB/s",
                    "passthrough",
                    pt,
                    ixt / pt,
                    ">= 0.9",
                    ixt / pt >= 0.9,
                )
            )
        base = med.get("baseline")
        if base is not None:
            r.add(
                Row(
                    bench,
                    f"internxtfs baseline ({self.baseline_src})",
                    base,
                    "MiB/s",
                    "internxtfs",
                    ixt,
                    ixt / base,
                    note=f"ratio = internxtfs / baseline; vs rclone {base / rc:.3f}; "
                    + spread("baseline"),
                )
            )
        labels = [("internxtfs", "internxtfs"), ("rclone", "rclone mount")]
        if base is not None:
            labels.append(("baseline", "internxtfs baseline"))
        for subject, label in labels:
            peak = max(peaks[subject])
            r.add(
                Row(
                    bench,
                    f"peak RSS, {label}",
                    peak,
                    "MiB",
                    "limit" if subject == "internxtfs" else "",
                    150.0 if subject == "internxtfs" else None,
                    peak / 150.0 if subject == "internxtfs" else None,
                    "<= 1.0 (150 MiB)" if subject == "internxtfs" else "",
                    peak <= 150.0 if subject == "internxtfs" else None,
                    note="highest of the rounds: " + ", ".join(f"{v:.0f}" for v in peaks[subject]),
                )
            )


# --- writes until stored: internxtfs vs rclone mount, 0 and 30 ms (issue 12) ------------------

# Runs inside the namespace. One workload on a mount, then the step after which the data is
# stored: ``internxtfs flush`` for internxtfs; for rclone, polling its remote control's
# ``vfs/stats`` until no upload is queued (write-back pending) or in progress (rclone's
# unmount does not wait for them). What the server holds is checked afterwards. Prints
# [seconds until the workload returned, seconds until stored].
WRITE_KERNEL = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    work, mnt, store = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    args = sys.argv[4:]

    def stored():
        if store[0] == "flush":
            subprocess.run([store[1], "flush", mnt], check=True, capture_output=True)
        else:  # rclone: its remote control says when no upload is queued or running
            import urllib.request
            while True:
                req = urllib.request.Request(store[1] + "/vfs/stats", data=b"{}",
                                             headers={"Content-Type": "application/json"})
                cache = json.load(urllib.request.urlopen(req, timeout=30))["diskCache"]
                if cache["uploadsInProgress"] == 0 and cache["uploadsQueued"] == 0:
                    break
                time.sleep(0.01)

    start = time.perf_counter()
    if work == "small":
        folder, count, size = os.path.join(mnt, args[0]), int(args[1]), int(args[2])
        os.mkdir(folder)
        data = os.urandom(size)
        for i in range(count):
            fd = os.open(os.path.join(folder, f"f{i:05d}.dat"), os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, data)
            os.close(fd)
    elif work == "dd":
        subprocess.run(["dd", "if=/dev/zero", "of=" + os.path.join(mnt, args[0]), "bs=1M",
                        f"count={args[1]}"], check=True, capture_output=True)
    elif work == "restic":
        env = dict(os.environ, RESTIC_PASSWORD="bench")
        subprocess.run(["restic", "-r", os.path.join(mnt, args[0]), "--no-cache", "-q",
                        "backup", args[1]], check=True, capture_output=True, env=env)
    returned = time.perf_counter() - start
    stored()
    print(json.dumps([returned, time.perf_counter() - start]))
    """
)


class WriteBench(ColdReadBench):
    """Writes until stored (issue 12), internxtfs vs ``rclone mount --vfs-cache-mode writes
    --vfs-write-back 1s`` on the same emulator in the interop namespace, subjects interleaved:

    * ``small``: N files of 4 KiB (open/write/close each) in a new folder, until stored;
    * ``dd``: a 512 MiB ``dd`` (1 MiB blocks), until ``dd`` returns and until stored;
    * ``restic``: ``restic backup`` of ~200 MiB onto a repository on the mount (restic's local
      backend, which fsyncs every file it writes), until restic returns and until stored.

    Each run mounts afresh (empty cache), runs the workload and the store step timed in one
    process inside the namespace, unmounts, then checks what the server holds through rclone.
    """

    EMAIL = "writes@example.com"
    RC_RC = "127.0.0.1:5572"  # rclone's remote control, inside the namespace
    RC_EXTRA = ("--vfs-write-back", "1s", "--rc", "--rc-no-auth", "--rc-addr", RC_RC)

    def __init__(
        self,
        root: Path,
        report: Report,
        *,
        rounds: int,
        works: tuple[str, ...],
        small_files: int,
        dd_bytes: int,
        restic_bytes: int,
        baseline_src: Path | None = None,
    ) -> None:
        super().__init__(root, report, size=dd_bytes, rounds=rounds, baseline_src=baseline_src)
        self.root = root / "writes"
        self.ns = rclone_ns.RcloneNamespace(self.root / "ns")
        self.ixt_dir = self.root / "ixt"
        self.ixt_env["INTERNXTFS_CONFIG_DIR"] = str(self.ixt_dir / "config")
        self.works = works
        self.small_files = small_files
        self.dd_bytes = dd_bytes
        self.restic_bytes = restic_bytes
        self.kernel = self.root / "write_kernel.py"
        self.restic_src = self.root / "restic-src"
        self.rc_unmount_timeout = 3600.0
        self.seq = 0
        self.last_cpu = 0.0

    def prepare(self, passthrough_script: Path | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.kernel.write_text(WRITE_KERNEL)
        # restic's input: files of mixed sizes (a source tree, not one blob), random bytes.
        self.restic_src.mkdir(exist_ok=True)
        left, n = self.restic_bytes, 0
        sizes = (16 * MiB, 4 * MiB, MiB, 256 * 1024, 32 * 1024)
        while left > 0:
            size = min(left, sizes[n % len(sizes)])
            (self.restic_src / f"in-{n:04d}.bin").write_bytes(os.urandom(size))
            left -= size
            n += 1
        self.ns.add_user(self.EMAIL, PASSWORD)
        self.ns.config_create("ixt", self.EMAIL, PASSWORD)
        (self.ixt_dir / "mnt").mkdir(parents=True, exist_ok=True)
        (self.root / "rclone-mnt").mkdir(parents=True, exist_ok=True)
        pw = self.ixt_dir / "password"
        pw.write_text(PASSWORD)
        login = [str(Path(sys.executable).with_name("internxtfs")), "login"]
        self.ns.run(
            [*login, "--email", self.EMAIL, "--password-file", str(pw)], extra_env=self.ixt_env
        )

    def _mount(self, subject: str) -> tuple[Path, list[str], dict[str, str]]:
        """Mount ``subject``; (mountpoint, store step for the kernel, env)."""
        if subject == "rclone":
            self._rc_mount(self.RC_EXTRA)
            return self.root / "rclone-mnt", ["rc", f"http://{self.RC_RC}"], {}
        self._ixt_mount(baseline=subject == "baseline")
        env = dict(self.ixt_env)
        if subject == "baseline":
            env["PYTHONPATH"] = str(self.baseline_src)
        elif self.ixt_src is not None:
            env["PYTHONPATH"] = str(self.ixt_src)
        flush = str(Path(sys.executable).with_name("internxtfs"))
        return self.ixt_dir / "mnt", ["flush", flush], env

    def _unmount(self, subject: str) -> None:
        if subject == "rclone":
            self._rc_unmount()
        else:
            self._ixt_unmount()

    def _kernel(self, work: str, mnt: Path, store: list[str], env: dict[str, str], *args: str):
        argv = [sys.executable, str(self.kernel), work, str(mnt), json.dumps(store), *args]
        out = self.ns.run(argv, timeout=3600, extra_env=env).stdout
        returned, stored = json.loads(out)
        return float(returned), float(stored)

    def _remote_sizes(self, path: str) -> list[int]:
        done = self.ns.rclone("lsf", "-R", "--files-only", "--format", "s", f"ixt:{path}")
        return [int(x) for x in done.stdout.split()]

    def one_write(self, work: str, subject: str, latency: int) -> tuple[float, float]:
        self.seq += 1
        name = f"{work}-{subject}-{self.seq}"
        if work == "restic":  # the repository is made (and stored) before the timed backup
            mnt, store, env = self._mount(subject)
            try:
                e = {**env, "RESTIC_PASSWORD": "bench"}
                self.ns.run(
                    ["restic", "-r", str(mnt / name), "-q", "init"], extra_env=e, timeout=1800
                )
                self._kernel("none", mnt, store, env)
            finally:
                self._unmount(subject)
        mnt, store, env = self._mount(subject)
        try:
            if work == "small":
                args = (name, str(self.small_files), "4096")
            elif work == "dd":
                args = (name, str(self.dd_bytes // MiB))
            else:
                args = (name, str(self.restic_src))
            # CPU of the mount process over the timed workload (mount start excluded): a
            # steadier measure than wall time when other work shares the cores.
            proc = self.rc_proc if subject == "rclone" else self.ixt_proc
            before = cpu_seconds(proc.pid) if proc is not None else 0.0
            result = self._kernel(work, mnt, store, env, *args)
            self.last_cpu = cpu_seconds(proc.pid) - before if proc is not None else 0.0
        finally:
            self._unmount(subject)
        # What the server holds (untimed, no latency): through the other client's protocol.
        self.ns.admin("POST", "/faults", {"latency_ms": 0})
        try:
            if work == "small":
                sizes = self._remote_sizes(name)
                ok = sizes == [4096] * self.small_files
            elif work == "dd":
                sizes = self._remote_sizes(name)
                ok = sizes == [self.dd_bytes]
                self.ns.rclone("deletefile", f"ixt:{name}")
            else:
                sizes = self._remote_sizes(f"{name}/data")
                ok = sum(sizes) >= self.restic_bytes
                self.ns.rclone("purge", f"ixt:{name}", timeout=600)
        finally:
            self.ns.admin("POST", "/faults", {"latency_ms": latency})
        if not ok:
            raise RuntimeError(f"{name}: the server holds {len(sizes)} files, {sum(sizes)} B")
        return result

    def profile(self, out: Path, latency: int = 0, rate: int = 250, work: str = "dd") -> None:
        """One extra internxtfs ``dd`` (or restic backup, or small files) until stored under
        ``py-spy record`` (raw stacks)."""
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            self.report.skip("write profile", "py-spy not installed (pip install py-spy)")
            return
        self.ns.admin("POST", "/faults", {"latency_ms": latency})
        self.seq += 1
        name = f"{work}-profile-{self.seq}"
        if work == "restic":  # the repository first, untimed and unprofiled, as in one_write
            mnt, store, env = self._mount("internxtfs")
            try:
                e = {**env, "RESTIC_PASSWORD": "bench"}
                self.ns.run(
                    ["restic", "-r", str(mnt / name), "-q", "init"], extra_env=e, timeout=1800
                )
                self._kernel("none", mnt, store, env)
            finally:
                self._unmount("internxtfs")
            args = (name, str(self.restic_src))
        elif work == "small":
            args = (name, str(self.small_files), "4096")
        else:
            args = (name, str(self.dd_bytes // MiB))
        mnt, store, env = self._mount("internxtfs")
        assert self.ixt_proc is not None
        cmd = [str(spy), "record", "--pid", str(self.ixt_proc.pid), "--rate", str(rate)]
        cmd += ["--format", "raw", "--threads", "--output", str(out)]
        spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)  # py-spy attached
            before, server = cpu_seconds(self.ixt_proc.pid), cpu_seconds(self.ns.pid)
            returned, stored = self._kernel(work, mnt, store, env, *args)
            cpu = cpu_seconds(self.ixt_proc.pid) - before
            server = cpu_seconds(self.ns.pid) - server
        finally:
            spy_proc.send_signal(2)
            spy_proc.wait(60)
            self._unmount("internxtfs")
            self.ns.admin("POST", "/faults", {"latency_ms": 0})
        print(
            f"  profile: {out} ({work} returned {returned:.2f} s, stored {stored:.2f} s, "
            f"mount CPU {cpu:.2f} s, emulator CPU {server:.2f} s)",
            flush=True,
        )
        print(summarize_profile(out), flush=True)

    def run(self, latencies: tuple[int, ...]) -> None:
        subjects = ["internxtfs", "rclone"] + (["baseline"] if self.baseline_src else [])
        if self.rounds == 0:
            return  # --rounds 0: only the profile
        if "dd" in self.works:
            # Untimed: the first big write of a run was 2-4x slower than the others whichever
            # subject came first (fresh page-cache memory on the VM), and internxtfs always
            # comes first in round one.
            self.ns.admin("POST", "/faults", {"latency_ms": latencies[0]})
            returned, stored = self.one_write("dd", "internxtfs", latencies[0])
            print(f"    warm-up dd (untimed): returned {returned:.2f} s", flush=True)
        for latency in latencies:
            self.ns.admin("POST", "/faults", {"latency_ms": latency})
            for work in self.works:
                times: dict[str, list[tuple[float, float]]] = {s: [] for s in subjects}
                for n in range(self.rounds):
                    for subject in subjects[n % len(subjects) :] + subjects[: n % len(subjects)]:
                        returned, stored = self.one_write(work, subject, latency)
                        print(
                            f"    {latency} ms {work} {subject}: returned {returned:.2f} s, "
                            f"stored {stored:.2f} s, mount CPU {self.last_cpu:.2f} s",
                            flush=True,
                        )
                        times[subject].append((returned, stored))
                self._write_rows(latency, work, times)
        self.ns.admin("POST", "/faults", {"latency_ms": 0})

    def _write_rows(
        self, latency: int, work: str, times: dict[str, list[tuple[float, float]]]
    ) -> None:
        bench = f"7 {work} {latency} ms"
        if work == "small":
            amount, unit = float(self.small_files), "files/s"
            phases = [("until stored", 1, ">= 4.0" if latency == 30 else "")]
        else:
            amount = (self.dd_bytes if work == "dd" else self.restic_bytes) / MiB
            unit = "MiB/s"
            phases = [("until returned", 0, ">= 1.0"), ("until stored", 1, ">= 1.5")]
        for label, index, target in phases:
            rates = {s: [amount / t[index] for t in v] for s, v in times.items()}
            med = {s: statistics.median(v) for s, v in rates.items()}
            for subject in times:
                if subject == "internxtfs":
                    ratio = med[subject] / med["rclone"]
                    ok = ratio >= float(target.split()[1]) if target else None
                    base = ("rclone", med["rclone"], ratio, target, ok)
                elif subject == "baseline":
                    base = ("internxtfs", med["internxtfs"], med["internxtfs"] / med[subject])
                    base = (*base, "", None)
                else:
                    base = ("", None, None, "", None)
                self.report.add(
                    Row(
                        bench,
                        f"{subject} {label}",
                        med[subject],
                        unit,
                        *base,
                        note="median of "
                        + ", ".join(f"{v:.1f}" for v in rates[subject])
                        + " (seconds: "
                        + ", ".join(f"{t[index]:.2f}" for t in times[subject])
                        + ")",
                    )
                )


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15), or of
    its thread ``tid`` (the main thread's id is the process id)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarize_profile(path: Path, top: int = 25) -> str:
    """Top functions of a py-spy raw (collapsed) profile: own samples and inclusive samples.

    Idle time (the trio thread waiting in epoll, worker threads parked) is counted apart, so
    the percentages are of the samples where Python was doing something.
    """
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    threads: dict[str, int] = {}
    busy = idle = 0
    # Leaf frames of threads that wait: trio's epoll, a trio worker thread waiting for a job.
    idle_marks = ("epoll", "WorkerThread._work (", "wait (threading.py", "_wait_for_tstate_lock")
    for line in path.read_text().splitlines():
        stack, _, count_txt = line.rpartition(" ")
        if not stack or not count_txt.isdigit():
            continue
        count = int(count_txt)
        frames = stack.split(";")
        leaf = frames[-1]
        if any(mark in leaf for mark in idle_marks):
            idle += count
            continue
        busy += count
        # "thread (PID): NAME": trio names its worker threads after the function they run.
        thread = frames[0].split(": ", 1)[-1]
        thread = "MainThread (trio)" if "MainThread" in thread else "worker threads"
        threads[thread] = threads.get(thread, 0) + count
        own[leaf] = own.get(leaf, 0) + count
        for frame in set(frames[1:]):
            incl[frame] = incl.get(frame, 0) + count
    lines = [f"  samples: {busy} busy, {idle} idle (waiting)"]
    for name, count in sorted(threads.items()):
        lines.append(f"    {100 * count / max(busy, 1):5.1f}%  in {name}")
    lines.append("  own time (leaf frames), % of busy samples:")
    for name, count in sorted(own.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"    {100 * count / max(busy, 1):5.1f}%  {name}")
    lines.append("  inclusive time, % of busy samples:")
    for name, count in sorted(incl.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"    {100 * count / max(busy, 1):5.1f}%  {name}")
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--tmp-dir", help="where to create the work dir (not tmpfs)")
    parser.add_argument(
        "--only",
        default="seq,small,ls,warm,rss,rclone,cold-read,write-small,write-dd,write-restic",
        help="comma-separated subset of seq,small,ls,warm,rss,rclone,cold-read,write-small,"
        "write-dd,write-restic (default: all)",
    )
    parser.add_argument("--rounds", type=int, help="rounds of interleaved runs (default 3)")
    parser.add_argument(
        "--profile",
        help="cold-read / write-*: also profile one internxtfs cold read (or dd, restic backup "
        "or small files until stored, the first of them in --only) with py-spy, raw stacks to "
        "FILE",
    )
    parser.add_argument(
        "--profile-latency", type=int, default=0, help="emulator latency (ms) while profiling"
    )
    parser.add_argument(
        "--profile-perf",
        action="store_true",
        help="cold-read: profile with `perf record -a` (all processes, kernel too) instead",
    )
    parser.add_argument(
        "--latencies", help="cold-read: comma-separated emulator latencies in ms (default 0,30)"
    )
    parser.add_argument(
        "--baseline-src",
        help="cold-read: also mount the internxtfs package found in DIR (e.g. a `git archive` "
        "of an older commit) as one more interleaved subject",
    )
    parser.add_argument(
        "--src",
        help="cold-read, write-*: mount the internxtfs package found in DIR as the main subject (a "
        "`git archive` snapshot, so edits during a long run do not change what is measured)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))

    reason = fuse_available()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.rounds is not None:
        sizes.rounds = args.rounds
    if args.latencies is not None:
        sizes.cold_read_latencies = tuple(int(x) for x in args.latencies.split(",") if x)
    root = pick_tmp_root(args.tmp_dir)
    report = Report()
    print(f"work dir {root} ({filesystem_type(root)}); sizes {sizes}", flush=True)
    failed = False

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        nonlocal failed
        print(f"== {name}", flush=True)
        try:
            yield
        except Exception as exc:
            failed = True
            traceback.print_exc()
            report.skip(name, f"failed: {exc!r}"[:500])

    speeds: dict[str, float] = {}
    ls_seconds: float | None = None
    script: Path | None = None
    if only & {"seq", "cold-read"}:
        with step("fetch passthroughfs.py"):
            script = fetch_passthrough(root / "pyfuse3-sdist")
        if script is None:
            report.skip("passthroughfs", "could not fetch the pyfuse3 sdist")
    if "cold-read" in only:
        why = rclone_ns.unavailable_reason()
        if why:
            report.skip("5. cold read (needs the rclone namespace)", why)
        else:
            with (
                step("5. cold sequential read: internxtfs, rclone, passthrough"),
                ColdReadBench(
                    root,
                    report,
                    size=sizes.cold_read_bytes,
                    rounds=sizes.rounds,
                    baseline_src=Path(args.baseline_src).resolve() if args.baseline_src else None,
                ) as cold,
            ):
                cold.ixt_src = Path(args.src).resolve() if args.src else None
                cold.prepare(script)
                cold.run(sizes.cold_read_latencies)
                if args.profile:
                    cold.profile(
                        Path(args.profile).resolve(),
                        args.profile_latency,
                        perf=args.profile_perf,
                    )
    works = tuple(w for w in ("small", "dd", "restic") if f"write-{w}" in only)
    if works:
        why = rclone_ns.unavailable_reason()
        if why:
            report.skip("6. writes until stored (needs the rclone namespace)", why)
        else:
            with (
                step("6. writes until stored: internxtfs vs rclone"),
                WriteBench(
                    root,
                    report,
                    rounds=sizes.rounds,
                    works=works,
                    small_files=500 if not args.quick else 100,
                    dd_bytes=512 * MiB if not args.quick else 64 * MiB,
                    restic_bytes=200 * MiB if not args.quick else 32 * MiB,
                    baseline_src=Path(args.baseline_src).resolve() if args.baseline_src else None,
                ) as writes,
            ):
                writes.ixt_src = Path(args.src).resolve() if args.src else None
                writes.prepare()
                writes.run(sizes.cold_read_latencies)
                if args.profile:
                    work = next(w for w in ("dd", "restic", "small") if w in works)
                    writes.profile(Path(args.profile).resolve(), args.profile_latency, work=work)
    bench = Bench(root, sizes, report) if only & {"seq", "small", "ls", "rss"} else None
    try:
        if bench is not None and "seq" in only:
            with step("1. sequential write / cold read"):
                speeds = bench.sequential(script)
        if bench is not None and "small" in only:
            with step("2. small files"):
                bench.small()
        if bench is not None and "ls" in only:
            with step("3. ls -l cold"):
                bench.listing()
                ls_seconds = report.rows[-1].value
        if bench is not None and "warm" in only:
            with step("6. ls -lR after a remount"):
                bench.warm_listing()
        if bench is not None and "rss" in only:
            with step("4. peak RSS"):
                bench.rss()
    finally:
        if bench is not None:
            bench.close()

    if "rclone" in only:
        why = rclone_ns.unavailable_reason()
        if why:
            report.skip("rclone mount column", why)
        else:
            with step("rclone mount"), RcloneBench(root, sizes, report) as rc:
                if "ixt_write" in speeds:
                    rc.sequential(speeds)
                if ls_seconds is not None:
                    rc.listing(ls_seconds)

    print()
    print(report.table())
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "sizes": sizes.__dict__,
                    "rows": [r.__dict__ for r in report.rows],
                    "not_measured": report.not_measured,
                },
                indent=2,
            )
        )
    if args.keep:
        print(f"work dir kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
