"""The ``internxtfs`` command line: argument parsing, logging, dispatch to internxtfs.commands.

Exit codes: see :mod:`internxtfs.commands`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys

from internxtfs import config
from internxtfs.commands import EXIT_FAIL, UsageError
from internxtfs.commands.account import cmd_login, cmd_logout
from internxtfs.commands.control import cmd_flush, cmd_status, cmd_umount
from internxtfs.commands.mounting import cmd_demo, cmd_mount, cmd_salvage
from internxtfs.fs.modes import DeleteMode, FsyncMode, OfflineFsync
from internxtfs.internxt import endpoints

_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 500M, 10G)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def _key_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--key-file", help="key that seals the stored secrets (default: $INTERNXTFS_KEY_FILE)"
    )
    group.add_argument(
        "--passphrase", action="store_true", help="seal/open the stored secrets with a passphrase"
    )
    group.add_argument("--passphrase-fd", type=int, help="read that passphrase from this fd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="internxtfs", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("--debug", action="store_true", help="debug logging")
    parser.add_argument("--log-file", help="log to this file instead of standard error")
    sub = parser.add_subparsers(dest="command", required=True)

    login = sub.add_parser("login", help="log in to Internxt and store the session")
    login.add_argument("--email")
    login.add_argument("--password-file", help="file holding the password ('-' = stdin)")
    group = login.add_mutually_exclusive_group()
    group.add_argument(
        "--totp-secret-file", help="file holding the 2FA secret (base32 or otpauth:// URI)"
    )
    group.add_argument("--code", help="the current 6-digit two-factor code")
    login.add_argument("--drive-url", help=f"default: ${endpoints.DRIVE_URL_ENV} or production")
    login.add_argument("--network-url", help=f"default: ${endpoints.NETWORK_URL_ENV} or production")
    login.add_argument("--profile", default=config.DEFAULT_PROFILE)
    _key_options(login)
    login.set_defaults(func=cmd_login)

    logout = sub.add_parser("logout", help="revoke the session and remove the stored profile")
    logout.add_argument("--profile", default=config.DEFAULT_PROFILE)
    logout.add_argument(
        "--force",
        action="store_true",
        help="remove the profile here even when the session cannot be revoked on the server",
    )
    _key_options(logout)
    logout.set_defaults(func=cmd_logout)

    mount = sub.add_parser("mount", help="mount the Internxt Drive of a profile")
    mount.add_argument("mountpoint")
    mount.add_argument("--profile", default=config.DEFAULT_PROFILE)
    mount.add_argument("-f", "--foreground", action="store_true")
    mount.add_argument(
        "--mkdir",
        action="store_true",
        help="create the mountpoint (and its parents), clearing a dead mount left there first",
    )
    mount.add_argument("--cache-dir")
    mount.add_argument("--cache-size", type=parse_size, default=10 * 1024**3)
    mount.add_argument("--upload-concurrency", type=int, default=8)
    mount.add_argument(
        "--upload-delay", type=float, default=1.0, help="quiet seconds before an upload starts"
    )
    mount.add_argument("--dir-cache-ttl", type=float, default=10.0)
    mount.add_argument(
        "--replica-window",
        type=float,
        default=3.0,
        help="seconds after its own change the mount asks again when Internxt contradicts it",
    )
    # Plain strings here (argparse then names the choices in its error); the mount config
    # turns them into the enums.
    mount.add_argument(
        "--delete-mode", choices=[m.value for m in DeleteMode], default=DeleteMode.PERMANENT.value
    )
    mount.add_argument("--flush-timeout", type=float, default=60.0)
    mount.add_argument(
        "--fsync",
        choices=[m.value for m in FsyncMode],
        default=FsyncMode.REMOTE.value,
        help="fsync returns once stored remotely (default) or once durable in the cache",
    )
    mount.add_argument(
        "--fsync-offline",
        choices=[m.value for m in OfflineFsync],
        default=OfflineFsync.LOCAL.value,
        help="with --fsync remote while Internxt cannot be reached: keep the data durable in "
        "the cache and return (default), or fail with EIO",
    )
    mount.add_argument(
        "--links",
        choices=("on", "off"),
        default="on",
        help="store symlinks as NAME.rclonelink files, as rclone --links does (default on)",
    )
    mount.add_argument("-o", help="allow_other,uid=N,gid=N,umask=M")
    mount.add_argument("--debug-fuse", action="store_true", help=argparse.SUPPRESS)
    mount.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    _key_options(mount)
    mount.set_defaults(func=cmd_mount)

    status = sub.add_parser("status", help="pending uploads, errors, cache and session state")
    status.add_argument("mountpoint")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    flush = sub.add_parser("flush", help="wait until everything pending is stored")
    flush.add_argument("mountpoint")
    flush.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    flush.set_defaults(func=cmd_flush)

    umount = sub.add_parser(
        "umount", help="store everything pending, then unmount (refused while files are open)"
    )
    umount.add_argument("mountpoint")
    umount.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    umount.add_argument(
        "-l",
        "--lazy",
        "--force",
        dest="lazy",
        action="store_true",
        help="detach even while files are open or processes work inside; they then get"
        " ENOTCONN (what they wrote before is stored)",
    )
    umount.set_defaults(func=cmd_umount)

    salvage = sub.add_parser(
        "salvage", help="copy unsent data out of a damaged cache into lost+found"
    )
    salvage.add_argument("--profile", default=config.DEFAULT_PROFILE)
    salvage.add_argument("--cache-dir", help="the mount's --cache-dir (default: the profile's)")
    salvage.add_argument("--to", help="where to put the salvaged files")
    salvage.set_defaults(func=cmd_salvage)

    demo = sub.add_parser("demo", help="mount a demo account on the bundled emulator")
    demo.add_argument("mountpoint")
    demo.add_argument("--data", help="keep the demo's data in this directory")
    demo.set_defaults(func=cmd_demo)
    return parser


_JOURNAL_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _JOURNAL_PRIORITY.get(record.levelno, 2 if record.levelno > logging.ERROR else 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else (logging.INFO if args.verbose else logging.WARNING)
    if args.command in ("mount", "demo"):
        level = min(level, logging.INFO)
    handler: logging.Handler = (
        logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler()
    )
    if not args.log_file and os.environ.get("JOURNAL_STREAM"):
        # Under systemd, stderr goes to the journal: sd-daemon "<N>" prefixes set priorities,
        # and journald adds the time itself.
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def is_mount_fuse_call(argv: list[str], commands: set[str]) -> bool:
    """``internxtfs PROFILE MOUNTPOINT -o OPTIONS``: how ``mount.fuse3`` runs the program of a
    ``fuse.internxtfs`` fstab line. Told apart from a command by its first word (no command
    has that name) and by ``-o``."""
    return (
        len(argv) >= 4
        and not argv[0].startswith("-")
        and argv[0] not in commands
        and "-o" in argv[2:]
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    commands = {
        name
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        for name in getattr(action, "choices", None) or {}
    }
    if is_mount_fuse_call(words, commands):
        from internxtfs import mount_helper

        return mount_helper.run(words)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a daemon re-runs
    setup_logging(args)
    if isinstance(getattr(args, "profile", None), str):
        # A name that cannot be a directory is refused before anything else happens (login
        # would otherwise ask the server for a session it cannot store).
        try:
            config.profile_dir(args.profile)
        except config.ProfileError as exc:
            parser.error(str(exc))
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except UsageError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`internxtfs status M | head -1`): stop quietly, as cat does.
        # stdout points at nothing from here on, so the flush at exit cannot complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
