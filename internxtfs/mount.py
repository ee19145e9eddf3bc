"""Wiring of a mount: protocol client → journal → block cache → uploader → FUSE handlers.

``run_mount`` runs in the foreground (``-f``); ``spawn_daemon`` starts it in the background and
returns once the mount answers, which is what ``internxtfs mount`` without ``-f`` does. On
unmount (``fusermount3 -u``) or SIGTERM/SIGINT the uploader gets ``flush_timeout`` seconds to
store what is pending; whatever remains stays in the journal and resumes at the next mount.
A signal stop flushes while still serving, detaches, then stores what open files wrote
meanwhile; ``internxtfs umount`` refuses a busy mount instead (see busy.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from internxtfs import busy, control, kernel_readahead, sdnotify
from internxtfs.config import Profile, ProfileError, load_profile, profile_dir, save_profile
from internxtfs.fs.blockcache import BlockCache
from internxtfs.fs.journal import FileRecord, Journal
from internxtfs.fs.locks import KeyedLock
from internxtfs.fs.operations import Filesystem, MountOptions
from internxtfs.fs.orphans import OrphanSweeper
from internxtfs.fs.remote import InternxtRemote
from internxtfs.fs.replacement import Replacements
from internxtfs.fs.uploader import Uploader
from internxtfs.internxt.auth import Session
from internxtfs.internxt.client import InternxtClient
from internxtfs.internxt.errors import Conflict, LegacyFileFormat, ServerError, Unreachable
from internxtfs.internxt.retry import interactive
from internxtfs.last_writes import LastWrites
from internxtfs.salvage import lock_cache

log = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 10 * 1024**3
SMALL_UPLOADS_MAX = 24  # uploads of small files (and deletes) in flight at most (uploader.py)
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
        if not (profile_dir(profile.name) / "profile.json").exists():
            # Logged out while mounted (`logout` refuses that, but the profile may have been
            # removed by other means): never write the secrets back, and stop re-logging in.
            client.session_manager.credentials = profile.credentials = None
            log.error(
                "profile %r was removed (logged out) while mounted: its credentials are no "
                "longer used or stored; unmount, then 'internxtfs login --profile %s'",
                profile.name,
                profile.name,
            )
            return
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
        client.session_manager.login_command = f"internxtfs login --profile {profile.name}"
        journal = Journal(config.cache_dir / "state.db")
        journal.bind_account(session.user_uuid)
        # The last run's writes may be a moment old: first listings are checked against them.
        last_writes = LastWrites(journal, client.drive.read_lag)
        held = last_writes.restore()

        async def fetch(record: FileRecord, offset: int, length: int) -> bytes | memoryview:
            assert record.remote_file_id is not None
            try:
                # A reader waits on it: interactive (prompt EIO during an outage, retry.py).
                with interactive():
                    return await client.network.fetch_range(record.remote_file_id, offset, length)
            except (Unreachable, ServerError) as exc:
                raise Unreachable(
                    f"{record.name!r}: this part is not in the cache and Internxt is "
                    f"unreachable ({exc})"
                ) from exc
            except LegacyFileFormat as exc:
                # Reads get EIO; the log says which file and what the user can do.
                raise LegacyFileFormat(
                    f"{record.name!r} is stored in Internxt's legacy (version 1) format, which "
                    "internxtfs cannot read; download it with Internxt's web app "
                    "(https://drive.internxt.com)"
                ) from exc

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
                if entry.name != record.name:
                    continue
                known = journal.find_by_remote(entry.uuid)
                if known is not None and known.deleted:
                    # Our own pending delete of that entry (unlinked here, the delete not sent
                    # yet): given our content, it would be deleted with it. Retried once the
                    # delete has freed the name.
                    raise error
                log.info("%r exists remotely; replacing its content", record.name)
                return str(entry.uuid)
            return None

        cache = BlockCache(config.cache_dir, journal, config.cache_size, fetch)
        # Everything fs/ asks of Internxt goes through this one object (fs/remote.py).
        remote = InternxtRemote(client.drive, client.network, delete_mode=config.fs.delete_mode)
        # One lock per file, taken by every task that changes the file's remote state (the
        # handlers, the uploader, the orphan sweeper): docs/concurrency.md.
        file_locks = KeyedLock()
        uploader = Uploader(
            journal,
            cache,
            remote,
            locks=file_locks,
            concurrency=config.upload_concurrency,
            # Small files and deletes are round trips, not bandwidth: more of them at once,
            # within the HTTP pool (client.py: 32 connections; some stay free for the rest).
            small_concurrency=min(SMALL_UPLOADS_MAX, 4 * config.upload_concurrency),
            quiet_period=config.upload_delay,
            on_conflict=adopt_existing,
            recovery_parent=session.root_folder_uuid,
        )
        retry_stats = client.retry.stats

        def pressure() -> bool:
            # Backpressure: writers wait while uploads drain the cache. Not while Internxt does
            # not answer (an outage): no upload frees room then, so the bound stretches at once
            # instead of keeping the writer waiting out every running upload's retries.
            return not retry_stats.failing and uploader.relieve_pressure()

        cache.pressure = pressure
        sweeper = OrphanSweeper(journal, remote, file_locks)
        operations = Filesystem(
            remote=remote,
            journal=journal,
            cache=cache,
            uploader=uploader,
            locks=file_locks,
            root_uuid=session.root_folder_uuid,
            options=config.fs,
        )
        uploader.describe = lambda record: f"{config.mountpoint}{operations.path_of(record)}"
        operations.meta.restore()  # the last known tree, served at once (even offline)
        operations.meta.hold_first_listings(held)
        pyfuse3.init(operations, str(config.mountpoint), fuse_options(config.fs, config.debug_fuse))
        # "main returned" means either the kernel unmounted us (fusermount3 -u) or a signal
        # made us stop serving (terminate); only in the second case must we unmount ourselves.
        state = {"terminated": False, "flushed": False, "main_returned": False, "closed": False}
        deadline = {"stop": float("inf")}  # the end of a stop's flush budget (trio clock)

        def status() -> dict[str, Any]:
            manager = client.session_manager
            return {
                "mountpoint": str(config.mountpoint),
                "account": manager.session.email,
                "profile": profile.name,
                "profile_dir": str(profile_dir(profile.name)),
                "cache_dir": str(config.cache_dir),
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
            deadline["stop"] = trio.current_time() + timeout
            # Keep serving while flushing, so nothing touching the mount hangs; what is
            # written meanwhile is stored after the detach (below, once main() returns).
            await _flush(uploader, sweeper, operations.replacements, timeout, final=False)
            state["flushed"] = state["terminated"] = True
            pyfuse3.terminate()

        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                async for signum in sigs:
                    await stop(f"received {signal.Signals(signum).name}", config.flush_timeout)
                    return

        async def reload_on_hangup() -> None:
            # SIGHUP (`systemctl reload`) re-reads the profile, as a new `internxtfs login`
            # does through the control socket: the mount keeps serving. It used to unmount
            # and exit 0, which Restart=on-failure then left down.
            with trio.open_signal_receiver(signal.SIGHUP) as sigs:
                async for _ in sigs:
                    try:
                        answer = await reload_credentials(str(profile_dir(profile.name)))
                    except Exception:
                        log.exception("SIGHUP: re-reading profile %r failed", profile.name)
                        continue
                    if answer.get("reloaded"):
                        log.info("SIGHUP: profile %r re-read; its login is in use", profile.name)

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

        mountpoint = control.canonical_mountpoint(config.mountpoint)

        def open_paths() -> list[str]:
            return busy.open_paths(operations.table, operations.open_nodes(), mountpoint)

        async def umount_unless_busy(
            result: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[None]]
        ) -> None:
            # The kernel has the last word (a process may have opened a file meanwhile, or
            # one /proc does not show us): refused, the mount serves on as before.
            refused = await busy.detach(mountpoint)
            if refused is not None:
                found = await trio.to_thread.run_sync(busy.holders, mountpoint, {os.getpid()})
                await send(busy.busy_answer(mountpoint, found, open_paths(), refused))
                return
            # Detached: main() returns and stores what came in since the flush.
            result["unmounting"] = True
            await send(result)

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
            if cmd == "uses-profile":  # asked by `logout`, which refuses while we run
                uses = req.get("profile") == str(profile_dir(profile.name))
                await send({"uses": uses, "mountpoint": str(config.mountpoint)})
                return
            if cmd not in ("flush", "umount"):
                await send({"error": f"unknown command {cmd!r}"})
                return
            lazy = cmd == "umount" and bool(req.get("lazy"))
            if cmd == "umount" and not lazy:
                # Like umount(8): a busy mount is refused before anything else is done.
                found = await trio.to_thread.run_sync(busy.holders, mountpoint, {os.getpid()})
                if found:
                    await send(busy.busy_answer(mountpoint, found, open_paths()))
                    return
            timeout = req.get("timeout")
            result = await _wait_with_progress(
                uploader, sweeper, operations.replacements, status, send, timeout
            )
            if cmd == "umount" and not lazy:
                # Shielded: once the kernel lets go, main() returns and the nursery closes,
                # which must not cut this answer off.
                with trio.CancelScope(shield=True):
                    await umount_unless_busy(result, send)
            elif cmd == "umount":
                result["unmounting"] = True
                await send(result)
                await stop("umount requested", 0 if result["pending"] else config.flush_timeout)
            else:
                await send(result)

        async def announce_then_report() -> None:
            await _announce_ready(config.mountpoint, on_ready)
            while os.environ.get("NOTIFY_SOCKET"):
                stats = uploader.stats()
                sdnotify.notify(
                    STATUS=_status_line(
                        stats, client.session_manager.last_error, client.retry.stats.offline_since
                    )
                )
                await trio.sleep(5)

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(cache.run)
                await nursery.start(uploader.run)
                uploader.resume()
                await nursery.start(sweeper.run)
                await nursery.start(operations.replacements.run)
                await nursery.start(operations.meta.run)
                nursery.start_soon(stop_on_signal)
                nursery.start_soon(reload_on_hangup)
                await nursery.start(
                    control.serve, control.socket_path(config.mountpoint), control_request
                )
                nursery.start_soon(announce_then_report)
                await pyfuse3.main()
                state["main_returned"] = True
                if state["terminated"]:
                    # Stopped by a signal or `umount --lazy`, after a first flush: detach now,
                    # so processes still using the mount get ENOTCONN at once instead of
                    # waiting on a mount that no longer answers, then store what they wrote
                    # while that flush ran.
                    state["closed"] = True
                    pyfuse3.close(unmount=True)
                    left = max(5.0, deadline["stop"] - trio.current_time())
                    await _flush(uploader, sweeper, operations.replacements, left)
                elif not state["flushed"]:
                    log.info("unmounted; storing what is pending")
                    await _flush(uploader, sweeper, operations.replacements, config.flush_timeout)
                    state["flushed"] = True
                nursery.cancel_scope.cancel()
        finally:
            if not state["flushed"]:
                with trio.CancelScope(shield=True):
                    await _flush(uploader, sweeper, operations.replacements, config.flush_timeout)
            if not state["closed"]:
                pyfuse3.close(unmount=state["terminated"] or not state["main_returned"])
            last_writes.close()
            journal.close()


async def _flush(
    uploader: Uploader,
    sweeper: OrphanSweeper,
    replacements: Replacements,
    timeout: float,
    *,
    final: bool = True,
) -> None:
    left = await uploader.close(timeout)
    with trio.move_on_after(ORPHAN_SWEEP_TIMEOUT):
        await sweeper.sweep()
        await replacements.resolve_all()
    if left and not final:
        log.info("%d file(s) still changing; storing them once detached", left)
    elif left:
        log.warning(
            "%d file(s) not stored yet; they stay in the journal and resume at the next mount",
            left,
        )


async def _announce_ready(mountpoint: Path, on_ready: Callable[[], None] | None) -> None:
    # The mount answers once the request loop runs: a stat served by us proves it.
    st = await trio.to_thread.run_sync(os.stat, mountpoint)
    # Past INIT now (which would cap it again): larger kernel read requests, where permitted.
    await trio.to_thread.run_sync(kernel_readahead.raise_read_ahead, st.st_dev)
    sdnotify.notify(READY=1, STATUS="mounted")
    if on_ready is not None:
        on_ready()


def _status_line(
    uploads: dict[str, Any], session_error: str | None = None, offline_since: float | None = None
) -> str:
    line = f"{uploads['pending_files']} file(s) pending upload ({uploads['pending_bytes']} bytes)"
    if uploads["errors"]:
        line += f", {len(uploads['errors'])} failing"
    if offline_since is not None:
        # First too: while Internxt cannot be reached, nothing else moves.
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(offline_since))
        line = f"OFFLINE since {since}, serving from the cache; {line}"
    if session_error:
        # First: `systemctl status` cuts long lines, and this one needs a person.
        line = f"NOT LOGGED IN ({session_error}); {line}"
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
        "errors": {
            str(k): {
                "path": uploader.describe_id(k),
                "error": f"{type(v).__name__}: {v}",
            }
            for k, v in errors.items()
        },
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
