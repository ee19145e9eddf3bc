"""mount (foreground or daemon), demo and salvage."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import trio

from internxtfs import config, control
from internxtfs.commands import (
    EXIT_FAIL,
    EXIT_USAGE,
    UsageError,
    log,
)
from internxtfs.commands.account import describe_auth_error, open_profile
from internxtfs.internxt import errors as ie


def parse_mount_o(text: str | None) -> dict[str, str | bool]:
    parsed: dict[str, str | bool] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        parsed[key] = value if sep else True
    return parsed


def _user_id(text: str) -> int:
    import pwd

    return int(text) if text.isdigit() else pwd.getpwnam(text).pw_uid


def _group_id(text: str) -> int:
    import grp

    return int(text) if text.isdigit() else grp.getgrnam(text).gr_gid


def mount_config_from_args(args: argparse.Namespace) -> object:
    from internxtfs.fs.modes import DeleteMode, FsyncMode, OfflineFsync
    from internxtfs.fs.operations import MountOptions
    from internxtfs.mount import MountConfig, default_cache_dir

    extra = parse_mount_o(args.o)
    fs = MountOptions(
        dir_cache_ttl=args.dir_cache_ttl,
        delete_mode=DeleteMode(args.delete_mode),
        fsync=FsyncMode(args.fsync),
        fsync_offline=OfflineFsync(args.fsync_offline),
        links=args.links == "on",
        allow_other=bool(extra.pop("allow_other", False)),
    )
    try:
        if "uid" in extra:
            fs.uid = _user_id(str(extra.pop("uid")))
        if "gid" in extra:
            fs.gid = _group_id(str(extra.pop("gid")))
        if "umask" in extra:
            fs.umask = int(str(extra.pop("umask")), 8)
    except (ValueError, KeyError) as exc:
        raise UsageError(f"bad -o value: {exc}") from None
    for ignored in ("rw", "nosuid", "nodev", "noexec", "auto", "noauto", "_netdev", "user"):
        extra.pop(ignored, None)
    if extra:
        raise UsageError(f"unknown -o option(s): {', '.join(sorted(extra))}")
    return MountConfig(
        mountpoint=Path(args.mountpoint).resolve(),
        cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(args.profile),
        cache_size=args.cache_size,
        upload_concurrency=args.upload_concurrency,
        upload_delay=args.upload_delay,
        replica_window=args.replica_window,
        flush_timeout=args.flush_timeout,
        fs=fs,
        debug_fuse=args.debug_fuse,
    )


def _last_errors(log_file: str, most: int = 5) -> list[str]:
    try:
        lines = Path(log_file).read_text(errors="replace").splitlines()[-200:]
    except OSError:
        return []
    return [line for line in lines if " ERROR " in line][-most:]


def cmd_mount(args: argparse.Namespace) -> int:
    from internxtfs import mount

    mount_config = mount_config_from_args(args)
    try:
        profile, typed_passphrase = open_profile(args)
    except config.ProfileError as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        mount.clear_stale_mount(Path(args.mountpoint).resolve())
        # Where `status` and `flush` will find this mount; refused if another user holds it.
        control.checked_runtime_dir(create=True)
    except (mount.AlreadyMounted, control.UnsafeRuntimeDir) as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if args.mkdir:
        # After the stale mount is gone: mkdir on a dead FUSE mountpoint fails with ENOTCONN,
        # which is why the service runs this instead of a plain `mkdir -p`.
        try:
            os.makedirs(args.mountpoint, mode=0o755, exist_ok=True)
        except OSError as exc:
            print(f"internxtfs: cannot create {args.mountpoint}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAIL
    if not os.path.isdir(args.mountpoint):
        print(f"internxtfs: mountpoint {args.mountpoint} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    if not args.foreground:
        argv = [a for a in args.argv if a not in ("-f", "--foreground")]
        if not args.log_file:
            log_path = mount_config.cache_dir / "mount.log"  # type: ignore[attr-defined]
            log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            argv = ["--log-file", str(log_path), *argv]
        # A typed passphrase reaches the daemon through a pipe, never argv or the environment.
        argv = [a for a in argv if a != "--passphrase"]
        secret = typed_passphrase if typed_passphrase is not None else None
        if secret is None and profile.key is not None and profile.key.source == "passphrase":
            secret = profile.key.secret.decode()
        status = mount.spawn_daemon(argv, passphrase=secret)
        if status != 0:
            log_file = args.log_file or str(mount_config.cache_dir / "mount.log")  # type: ignore[attr-defined]
            print(f"internxtfs: the mount did not start; log: {log_file}", file=sys.stderr)
            for line in _last_errors(log_file):
                print(f"  {line}", file=sys.stderr)
        return status

    ready_fd = args.ready_fd

    def on_ready() -> None:
        log.info("mounted %s on %s", profile.session.email, args.mountpoint)
        if ready_fd is not None:
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)

    from internxtfs.fs.journal import JournalError

    try:
        trio.run(mount.run_mount, profile, mount_config, on_ready)
    except JournalError as exc:
        log.error("cannot mount: %s", exc)
        return EXIT_FAIL
    except mount.AlreadyMounted as exc:
        log.error("%s", exc)
        return EXIT_FAIL
    except ie.InternxtError as exc:
        message, status = describe_auth_error(exc, profile.drive_url)
        log.error("%s", message)
        return status
    except Exception as exc:
        log.exception("mount failed: %s", exc)
        return EXIT_FAIL
    return 0


def cmd_salvage(args: argparse.Namespace) -> int:
    from internxtfs.mount import default_cache_dir
    from internxtfs.salvage import salvage

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir(args.profile)
    if not (cache_dir / "state.db").exists() and not (cache_dir / "data").is_dir():
        print(f"internxtfs: {cache_dir} holds no internxtfs cache", file=sys.stderr)
        return EXIT_FAIL
    try:
        report = salvage(cache_dir, Path(args.to) if args.to else None)
    except BlockingIOError:
        print(f"internxtfs: a running mount uses {cache_dir}; unmount it first", file=sys.stderr)
        return EXIT_FAIL
    print(f"salvaged {len(report.saved)} file(s) into {report.destination}")
    print(f"  (see {report.destination / 'MANIFEST.txt'}; copy them back into the mount)")
    if report.skipped_clean:
        print(f"  {report.skipped_clean} cached file(s) were already stored remotely: skipped")
    for name in report.lost:
        print(f"  LOST (no cache file): {name}", file=sys.stderr)
    print(f"the damaged cache was moved to {report.moved_cache_to}; the next mount starts afresh")
    return EXIT_FAIL if report.lost else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from internxtfs.demo import run_demo

    return run_demo(Path(args.mountpoint), Path(args.data) if args.data else None)
