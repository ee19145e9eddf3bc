"""Wiring of a mount: protocol client → journal → block cache → uploader → FUSE handlers.

``run_mount`` runs in the foreground (``-f``); ``spawn_daemon`` starts it in the background and
returns once the mount answers, which is what ``internxtfs mount`` without ``-f`` does. On
unmount (``fusermount3 -u``) or SIGTERM/SIGINT the uploader gets ``flush_timeout`` seconds to
store what is pending; whatever remains stays in the journal and resumes at the next mount.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from internxtfs import control, sdnotify
from internxtfs.config import Profile, ProfileError, load_profile, profile_dir, save_profile
from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.journal import FileRecord, Journal
from internxtfs.fs.operations import Filesystem, MountOptions
from internxtfs.fs.orphans import OrphanSweeper
from internxtfs.fs.replacement import Replacements
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt.auth import Session
from internxtfs.internxt.client import InternxtClient
from internxtfs.internxt.errors import Conflict
from internxtfs.salvage import lock_cache

log = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 10 * 1024**3
ORPHAN_SWEEP_TIMEOUT = 10.0  # flush/unmount: at most this long deleting orphaned objects (the
# rest waits for the next sweep; the unit's TimeoutStopSec leaves 30 s over --flush-timeout)


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
        await _run_mount(profile, config, on_ready)


async def _run_mount(
    profile: Profile, config: MountConfig, on_ready: Callable[[], None] | None
) -> None:
    async def persist(session: Session) -> None:
        profile.session = session
        save_profile(profile)

    async with InternxtClient(
        profile.session,
        profile.credentials,
        drive_url=profile.drive_url,
        network_url=profile.network_url,
        on_session_change=persist,
        replica_window=config.replica_window,
    ) as client:
        # A previous run of this mount may have written a moment ago (a crash, a quick
        # remount): until the window has passed, answers contradicting it are asked again.
        client.drive.read_lag.wrote(())
        session = client.session_manager.session
        journal = Journal(config.cache_dir / "state.db")
        journal.bind_account(session.user_uuid)

        async def fetch(record: FileRecord, offset: int, length: int) -> bytes:
            assert record.remote_file_id is not None
            return await client.network.download_range(record.remote_file_id, offset, length)

        async def adopt_existing(record: FileRecord, error: Conflict) -> str | None:
            # A file we never saw has the name we are publishing (a stale listing, or our own
            # create that landed before a crash): the file last written here wins, as on a
            # local disk, so its entry gets our content.
            # (An empty answer may be a read replica behind that create: asked again.)
            found = await client.drive.read_lag.settle(
                lambda: client.drive.files_exist(record.parent_uuid, [record.name]),
                what=f"existence of {record.name!r}",
                stale=lambda found: not found,
            )
            for entry in found:
                if entry.name == record.name:
                    log.info("%r exists remotely; replacing its content", record.name)
                    return str(entry.uuid)
            return None

        cache = BlockCache(config.cache_dir, journal, config.cache_size, fetch)
        uploader = Uploader(
            journal,
            cache,
            client.network,
            client.drive,
            concurrency=config.upload_concurrency,
            quiet_period=config.upload_delay,
            on_conflict=adopt_existing,
            delete_mode=config.fs.delete_mode,
            recovery_parent=session.root_folder_uuid,
        )
        cache.pressure = uploader.relieve_pressure  # backpressure: writers wait for uploads
        sweeper = OrphanSweeper(
            journal,
            client.network,
            client.drive,
            uploader.lock_for,
            delete_mode=config.fs.delete_mode,
        )
        operations = Filesystem(
            drive=client.drive,
            journal=journal,
            cache=cache,
            uploader=uploader,
            root_uuid=session.root_folder_uuid,
            options=config.fs,
        )
        pyfuse3.init(operations, str(config.mountpoint), fuse_options(config.fs, config.debug_fuse))
        # "main returned" means either the kernel unmounted us (fusermount3 -u) or a signal
        # made us stop serving (terminate); only in the second case must we unmount ourselves.
        state = {"terminated": False, "flushed": False, "main_returned": False}

        def status() -> dict[str, Any]:
            manager = client.session_manager
            return {
                "mountpoint": str(config.mountpoint),
                "account": manager.session.email,
                "uploads": uploader.stats()
                | sweeper.stats()
                | {"renames_unsettled": operations.replacements.pending()},
                "cache": cache.stats(),
                "network": client.retry.stats.as_dict(),
                "session": {
                    "expires_at": manager.session.expires_at,
                    "refreshes": manager.refreshes,
                    "relogins": manager.relogins,
                    # Set when the session cannot be renewed (e.g. the password changed).
                    "error": manager.last_error,
                },
            }

        async def stop(reason: str, timeout: float) -> None:
            log.info("%s; flushing, then unmounting", reason)
            sdnotify.notify(STOPPING=1, STATUS="flushing pending uploads")
            # Keep serving while flushing, so nothing touching the mount hangs.
            await _flush(uploader, sweeper, operations.replacements, timeout)
            state["flushed"] = state["terminated"] = True
            pyfuse3.terminate()

        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                async for signum in sigs:
                    await stop(f"received {signal.Signals(signum).name}", config.flush_timeout)
                    return

        async def reload_credentials(name: object) -> dict[str, Any]:
            """A new ``internxtfs login`` of this profile: use it without a remount."""
            if name != str(profile_dir(profile.name)):  # same name, another config root
                return {"ignored": True}
            try:
                fresh = await trio.to_thread.run_sync(
                    lambda: load_profile(profile.name, key=profile.key)
                )
            except ProfileError as exc:
                log.error("cannot read the new login of profile %r: %s", profile.name, exc)
                return {"error": str(exc)}
            if fresh.session.user_uuid != profile.session.user_uuid:
                log.error("profile %r now holds another account; remount to use it", profile.name)
                return {"error": "the profile now holds another account; remount to use it"}
            profile.session, profile.credentials = fresh.session, fresh.credentials
            await client.session_manager.use_new_login(fresh.session, fresh.credentials)
            uploader.retry_failed_now()
            return {"reloaded": True}

        async def control_request(
            req: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[None]]
        ) -> None:
            cmd = req.get("cmd")
            if cmd == "status":
                await send(status())
                return
            if cmd == "reload-credentials":
                await send(await reload_credentials(req.get("profile")))
                return
            if cmd not in ("flush", "umount"):
                await send({"error": f"unknown command {cmd!r}"})
                return
            timeout = req.get("timeout")
            result = await _wait_with_progress(
                uploader, sweeper, operations.replacements, status, send, timeout
            )
            if cmd == "umount":
                result["unmounting"] = True
                await send(result)
                await stop("umount requested", 0 if result["pending"] else config.flush_timeout)
            else:
                await send(result)

        async def announce_then_report() -> None:
            await _announce_ready(config.mountpoint, on_ready)
            while os.environ.get("NOTIFY_SOCKET"):
                stats = uploader.stats()
                sdnotify.notify(STATUS=_status_line(stats))
                await trio.sleep(5)

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(cache.run)
                await nursery.start(uploader.run)
                uploader.resume()
                await nursery.start(sweeper.run)
                await nursery.start(operations.replacements.run)
                nursery.start_soon(stop_on_signal)
                await nursery.start(
                    control.serve, control.socket_path(config.mountpoint), control_request
                )
                nursery.start_soon(announce_then_report)
                await pyfuse3.main()
                state["main_returned"] = True
                if not state["flushed"]:
                    log.info("unmounted; storing what is pending")
                    await _flush(uploader, sweeper, operations.replacements, config.flush_timeout)
                    state["flushed"] = True
                nursery.cancel_scope.cancel()
        finally:
            if not state["flushed"]:
                with trio.CancelScope(shield=True):
                    await _flush(uploader, sweeper, operations.replacements, config.flush_timeout)
            pyfuse3.close(unmount=state["terminated"] or not state["main_returned"])
            journal.close()


async def _flush(
    uploader: Uploader, sweeper: OrphanSweeper, replacements: Replacements, timeout: float
) -> None:
    left = await uploader.close(timeout)
    with trio.move_on_after(ORPHAN_SWEEP_TIMEOUT):
        await sweeper.sweep()
        await replacements.resolve_all()
    if left:
        log.warning(
            "%d file(s) not stored yet; they stay in the journal and resume at the next mount",
            left,
        )


async def _announce_ready(mountpoint: Path, on_ready: Callable[[], None] | None) -> None:
    # The mount answers once the request loop runs: a stat served by us proves it.
    await trio.to_thread.run_sync(os.stat, mountpoint)
    sdnotify.notify(READY=1, STATUS="mounted")
    if on_ready is not None:
        on_ready()


def _status_line(uploads: dict[str, Any]) -> str:
    line = f"{uploads['pending_files']} file(s) pending upload ({uploads['pending_bytes']} bytes)"
    if uploads["errors"]:
        line += f", {len(uploads['errors'])} failing"
    return line


async def _wait_with_progress(
    uploader: Uploader,
    sweeper: OrphanSweeper,
    replacements: Replacements,
    status: Callable[[], dict[str, Any]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
    timeout: float | None,
) -> dict[str, Any]:
    """Wait until everything pending is stored (or failed), sending progress twice a second."""
    errors: dict[int, Exception] = {}
    timed_out = False
    async with trio.open_nursery() as nursery:

        async def progress() -> None:
            while True:
                await send({"progress": status()["uploads"]})
                await trio.sleep(0.5)

        nursery.start_soon(progress)
        try:
            errors = await uploader.wait_idle(timeout=timeout)
        except TimeoutError:
            timed_out = True
        if not timed_out:
            # Objects left unreferenced by what was just stored are deleted before answering,
            # and renames cut short by an outage are settled.
            with trio.move_on_after(ORPHAN_SWEEP_TIMEOUT):
                await sweeper.sweep()
                await replacements.resolve_all()
        nursery.cancel_scope.cancel()
    stats = uploader.stats() | sweeper.stats()
    return {
        "done": True,
        "timed_out": timed_out,
        "pending": stats["pending_files"],
        "errors": {str(k): f"{type(v).__name__}: {v}" for k, v in errors.items()},
        "uploads": stats,
    }


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
