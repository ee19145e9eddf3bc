"""Wiring of a mount: protocol client → journal → block cache → uploader → FUSE handlers.

:class:`Mount` builds the filesystem's layers over the client and starts them with the parts
that serve around them (internxtfs/service/: signals, control socket, status reporter), each
a task with ``run()``/``stop()``; :class:`MountState` says where it is on its way out.
``run_mount`` runs in the foreground (``-f``); ``spawn_daemon`` starts it in the background and
returns once the mount answers, which is what ``internxtfs mount`` without ``-f`` does. On
unmount (``fusermount3 -u``) or SIGTERM/SIGINT the uploader gets ``flush_timeout`` seconds to
store what is pending (not while Internxt cannot be reached: service/pending.py); whatever
remains stays in the journal and resumes at the next mount.
A signal stop flushes while still serving, detaches, then stores what open files wrote
meanwhile; ``internxtfs umount`` refuses a busy mount instead (see busy.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyfuse3
import trio

from internxtfs import busy, sdnotify
from internxtfs.config import Profile, profile_dir
from internxtfs.fs.blockcache import BlockCache, fetch_through
from internxtfs.fs.conflicts import AdoptExisting
from internxtfs.fs.journal import Journal
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.operations import Filesystem, MountOptions
from internxtfs.fs.orphans import OrphanSweeper
from internxtfs.fs.remote import InternxtRemote
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt.client import InternxtClient
from internxtfs.last_writes import LastWrites
from internxtfs.salvage import lock_cache
from internxtfs.service.control_server import ControlServer
from internxtfs.service.login import Login
from internxtfs.service.part import Background, Part
from internxtfs.service.pending import Pending
from internxtfs.service.signals import Signals
from internxtfs.service.status import Reporter, StatusReport

log = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 10 * 1024**3
SMALL_UPLOADS_MAX = 24  # uploads of small files (and deletes) in flight at most (uploader.py)


@dataclass
class MountConfig:
    mountpoint: Path
    cache_dir: Path
    cache_size: int = DEFAULT_CACHE_SIZE
    upload_concurrency: int = 8
    upload_delay: float = 1.0
    # How long after our own write an answer contradicting it is asked again (read replicas,
    # internxt/consistency.py).
    replica_window: float = 3.0
    flush_timeout: float = 60.0
    fs: MountOptions = field(default_factory=MountOptions)
    debug_fuse: bool = False


def default_cache_dir(profile: str) -> Path:
    if os.geteuid() == 0 and not os.environ.get("XDG_CACHE_HOME"):
        return Path("/var/cache/internxtfs") / profile
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "internxtfs" / profile


class AlreadyMounted(Exception):
    pass


def _mounted_at(mountpoint: Path) -> str | None:
    """The filesystem type mounted at ``mountpoint``, from /proc/self/mountinfo (no I/O on it)."""
    target = str(mountpoint)
    found = None
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            sep = fields.index("-")
            # mountinfo escapes spaces etc. as octal (\040)
            point = fields[4].encode().decode("unicode_escape")
            if point == target:
                found = fields[sep + 1]  # the last match is the one on top
    return found


def clear_stale_mount(mountpoint: Path) -> None:
    """A mount whose process died answers ENOTCONN ("Transport endpoint is not connected")
    for ever; clear it so this mount can take its place. A live mount is left alone."""
    fstype = _mounted_at(mountpoint)
    if fstype is None:
        return
    try:
        # readdir always reaches the daemon (stat may be answered from the kernel's cache).
        os.listdir(mountpoint)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
        log.warning("%s is a dead mount (its process is gone); unmounting it first", mountpoint)
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], check=False)
        return
    raise AlreadyMounted(f"{mountpoint} is already mounted ({fstype})")


def fuse_options(opts: MountOptions, debug: bool) -> set[str]:
    options = set(pyfuse3.default_options)
    options.add("fsname=internxtfs")
    options.add("subtype=internxtfs")
    if opts.allow_other:
        options.add("allow_other")
    if debug:
        options.add("debug")
    return options


async def run_mount(
    profile: Profile, config: MountConfig, on_ready: Callable[[], None] | None = None
) -> None:
    config.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    clear_stale_mount(config.mountpoint)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(lock_cache(config.cache_dir))
        except BlockingIOError:
            raise AlreadyMounted(
                f"another mount uses the cache directory {config.cache_dir}"
            ) from None
        login = Login(profile)
        async with InternxtClient(
            profile.session,
            profile.credentials,
            drive_url=profile.drive_url,
            network_url=profile.network_url,
            on_session_change=login.persist,
            replica_window=config.replica_window,
        ) as client:
            # A previous run of this mount may have written a moment ago (a crash, a quick
            # remount): until the window has passed, answers contradicting it are asked again.
            client.drive.read_lag.wrote(())
            client.session_manager.login_command = f"internxtfs login --profile {profile.name}"
            await Mount(profile, config, client, login, on_ready).run()


@dataclass
class MountState:
    """Where a mount is on its way out. ``pyfuse3.main()`` returns either because the kernel
    unmounted us (``fusermount3 -u``) or because :meth:`Mount.stop` ended the request loop
    (a signal, ``umount --lazy``); only in the second case must we unmount ourselves."""

    terminated: bool = False  # Mount.stop ended the request loop
    flushed: bool = False  # a flush before the end ran (Mount.stop's, or the one after main)
    main_returned: bool = False  # pyfuse3.main() returned
    closed: bool = False  # pyfuse3.close() was called
    stop_deadline: float = math.inf  # the end of a stop's flush budget (trio clock)


class Mount:
    """One mount: the filesystem's layers over the client, the parts that serve around them
    (internxtfs/service/), and the way out (flush, detach, flush what came in meanwhile).

    ``run`` starts every part in order, serves until unmounted or stopped, then stores what
    is pending within ``flush_timeout`` seconds; whatever is left stays in the journal.
    """

    def __init__(
        self,
        profile: Profile,
        config: MountConfig,
        client: InternxtClient,
        login: Login,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.state = MountState()
        session = client.session_manager.session
        self.journal = journal = Journal(config.cache_dir / "state.db")
        journal.bind_account(session.user_uuid)
        # The last run's writes may be a moment old: first listings are checked against them.
        self.last_writes = LastWrites(journal, client.drive.read_lag)
        self._held = self.last_writes.restore()
        # Everything fs/ asks of Internxt goes through this one object (fs/remote.py).
        self.remote = remote = InternxtRemote(
            client.drive, client.network, delete_mode=config.fs.delete_mode
        )
        self.cache = cache = BlockCache(
            config.cache_dir, journal, config.cache_size, fetch_through(remote)
        )
        # One lock per file, taken by every task that changes the file's remote state (the
        # handlers, the uploader, the orphan sweeper): docs/concurrency.md.
        locks = KeyedLock()
        self.uploader = uploader = Uploader(
            journal,
            cache,
            remote,
            locks=locks,
            concurrency=config.upload_concurrency,
            # Small files and deletes are round trips, not bandwidth: more of them at once,
            # within the HTTP pool (client.py: 32 connections; some stay free for the rest).
            small_concurrency=min(SMALL_UPLOADS_MAX, 4 * config.upload_concurrency),
            quiet_period=config.upload_delay,
            on_conflict=AdoptExisting(remote, journal),
            recovery_parent=session.root_folder_uuid,
        )
        retry_stats = client.retry.stats

        def pressure() -> bool:
            # Backpressure: writers wait while uploads drain the cache. Not while Internxt does
            # not answer (an outage): no upload frees room then, so the bound stretches at once
            # instead of keeping the writer waiting out every running upload's retries.
            return not retry_stats.failing and uploader.relieve_pressure()

        cache.pressure = pressure
        self.sweeper = sweeper = OrphanSweeper(journal, remote, locks)
        self.operations = operations = Filesystem(
            remote=remote,
            journal=journal,
            cache=cache,
            uploader=uploader,
            locks=locks,
            root_uuid=session.root_folder_uuid,
            options=config.fs,
        )
        uploader.describe = lambda record: f"{config.mountpoint}{operations.path_of(record)}"
        login.attach(client, on_reload=uploader.retry_failed_now)
        self.pending = Pending(
            uploader,
            sweeper,
            operations.replacements,
            replayed=operations.pending.wait_replayed,
            # An unmount during an outage does not wait out --flush-timeout: what is unsent
            # is in the journal for the next mount (service/pending.py).
            unreachable=lambda: client.retry.offline,
            failing=lambda: retry_stats.failing,
            silence=lambda: time.time() - (retry_stats.last_success_at or 0.0),
            probe=client.drive.usage,
            queued=operations.pending.queued,
        )
        # An fsync waiting on its upload learns of an outage the same way (fs/operations.py).
        operations.outage_found = self.pending.outage
        status = StatusReport(
            mountpoint=config.mountpoint,
            profile=profile.name,
            profile_dir=profile_dir(profile.name),
            cache_dir=config.cache_dir,
            client=client,
            uploader=uploader,
            sweeper=sweeper,
            replacements=operations.replacements,
            cache=cache,
            namespace=operations.pending.stats,
        )
        # Started in this order; all stop together once the mount is done.
        self.parts: list[Part] = [
            Background("block cache", cache.run),
            # Crash recovery (resume) queues what the last run left unsent.
            Background("uploader", uploader.run, then=uploader.resume),
            Background("orphan sweeper", sweeper.run),
            Background("rename settling", operations.replacements.run),
            Background("listings", operations.meta.run),
            # Namespace changes made while Internxt was unreachable (fs/pending.py).
            Background("namespace replay", operations.pending.run),
            # For df during an outage (operations.py): read once, then kept.
            Background("quota", operations.learn_quota),
            Signals(self.stop, config.flush_timeout, login),
            ControlServer(
                config.mountpoint,
                status=status,
                pending=self.pending,
                login=login,
                open_paths=self._open_paths,
                stop=self.stop,
                flush_timeout=config.flush_timeout,
            ),
            Reporter(config.mountpoint, status.line, on_ready),
        ]

    def _open_paths(self, mountpoint: str) -> list[str]:
        return busy.open_paths(self.operations.table, self.operations.open_nodes(), mountpoint)

    async def run(self) -> None:
        config, state = self.config, self.state
        self.operations.meta.restore()  # the last known tree, served at once (even offline)
        self.operations.meta.hold_first_listings(self._held)
        pyfuse3.init(
            self.operations, str(config.mountpoint), fuse_options(config.fs, config.debug_fuse)
        )
        try:
            async with trio.open_nursery() as nursery:
                for part in self.parts:
                    await nursery.start(part.run)
                await pyfuse3.main()
                state.main_returned = True
                if state.terminated:
                    # Stopped by a signal or `umount --lazy`, after a first flush: detach now,
                    # so processes still using the mount get ENOTCONN at once instead of
                    # waiting on a mount that no longer answers, then store what they wrote
                    # while that flush ran.
                    state.closed = True
                    pyfuse3.close(unmount=True)
                    left = max(5.0, state.stop_deadline - trio.current_time())
                    await self.pending.flush(left)
                elif not state.flushed:
                    log.info("unmounted; storing what is pending")
                    await self.pending.flush(config.flush_timeout)
                    state.flushed = True
                for part in reversed(self.parts):
                    part.stop()
        finally:
            if not state.flushed:
                with trio.CancelScope(shield=True):
                    await self.pending.flush(config.flush_timeout)
            if not state.closed:
                pyfuse3.close(unmount=state.terminated or not state.main_returned)
            self.last_writes.close()
            self.journal.close()

    async def stop(self, reason: str, timeout: float) -> None:
        """Stop serving (a signal, ``umount --lazy``): flush while still serving, so nothing
        touching the mount hangs, then end the request loop; :meth:`run` detaches and stores
        what was written meanwhile."""
        log.info("%s; flushing, then unmounting", reason)
        sdnotify.notify(STOPPING=1, STATUS="flushing pending uploads")
        self.state.stop_deadline = trio.current_time() + timeout
        await self.pending.flush(timeout, final=False)
        self.state.flushed = self.state.terminated = True
        pyfuse3.terminate()


def spawn_daemon(argv: list[str], timeout: float = 60.0, passphrase: str | None = None) -> int:
    """Run ``internxtfs <argv> -f`` in the background; return once it is mounted (0) or failed."""
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "internxtfs", *argv, "-f", "--ready-fd", str(write_fd)]
    keep = [write_fd]
    secret_fd = None
    if passphrase is not None:
        secret_fd, secret_w = os.pipe()
        os.write(secret_w, passphrase.encode() + b"\n")  # a pipe buffer holds far more
        os.close(secret_w)
        cmd += ["--passphrase-fd", str(secret_fd)]
        keep.append(secret_fd)
    proc = subprocess.Popen(
        cmd,
        pass_fds=tuple(keep),
        start_new_session=True,
        # A daemon must not hold its caller's terminal or pipes open; it logs to its log file.
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for fd in keep:
        os.close(fd)
    with os.fdopen(read_fd, "rb") as pipe:
        # The child writes one line when the mount answers; EOF without it means it failed.
        line = pipe.readline()
    if line.strip() == b"ready":
        return 0
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(timeout=timeout) or 1
    return 1
