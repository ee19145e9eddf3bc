"""The ``internxtfs`` command: login, logout, mount.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 authentication failure (wrong
password, wrong 2FA code, blocked account, plan without access), 4 server unreachable.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import trio

from internxtfs import config, vault
from internxtfs.internxt import endpoints
from internxtfs.internxt import errors as ie

log = logging.getLogger("internxtfs")

EXIT_FAIL, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE = 1, 2, 3, 4

_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class UsageError(Exception):
    pass


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 500M, 10G)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def read_secret_file(path: str) -> str:
    """A secret from a file, or from standard input for ``-``; one trailing newline dropped."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return text[:-1] if text.endswith("\n") else text


def normalise_totp_secret(text: str) -> str:
    """Accept a base32 secret or an ``otpauth://`` URI (what authenticator QR codes hold)."""
    text = text.strip()
    if text.startswith("otpauth://"):
        import pyotp

        return pyotp.parse_uri(text).secret
    return text.replace(" ", "").upper()


def describe_auth_error(exc: ie.InternxtError, drive_url: str) -> tuple[str, int]:
    if isinstance(exc, ie.WrongCredentials):
        return "login failed: wrong email or password", EXIT_AUTH
    if isinstance(exc, ie.TwoFactorRequired):
        return (
            "this account has two-factor authentication on: give the current code with "
            "--code NNNNNN, or the TOTP secret with --totp-secret-file FILE",
            EXIT_AUTH,
        )
    if isinstance(exc, ie.WrongTwoFactorCode):
        return "login failed: the two-factor code is wrong or has expired", EXIT_AUTH
    if isinstance(exc, ie.AccountBlocked):
        return (
            "Internxt has blocked this account after too many failed logins; "
            "contact Internxt support to unblock it",
            EXIT_AUTH,
        )
    if isinstance(exc, ie.PlanNotAllowed):
        return (
            "your Internxt plan does not allow third-party access (CLI, rclone, internxtfs); "
            "a plan that includes it is needed",
            EXIT_AUTH,
        )
    if isinstance(exc, ie.InvalidMnemonic):
        return f"login failed: {exc.message}", EXIT_AUTH
    if isinstance(exc, ie.Unreachable):
        return f"cannot reach Internxt at {drive_url}: {exc.message}", EXIT_UNREACHABLE
    return f"login failed: {exc.message}", EXIT_FAIL


# --- key material for the sealed profile ----------------------------------------------------


def read_passphrase_fd(fd: int) -> str:
    with os.fdopen(fd, "r", closefd=True) as fh:
        return fh.readline().rstrip("\n")


def passphrase_from_args(args: argparse.Namespace, *, new: bool) -> str | None:
    if getattr(args, "passphrase_fd", None) is not None:
        return read_passphrase_fd(args.passphrase_fd)
    if not getattr(args, "passphrase", False):
        return None
    if not _interactive():
        raise UsageError("--passphrase needs a terminal; use --passphrase-fd or --key-file")
    first = getpass.getpass("Passphrase for the stored secrets: ")
    if new and getpass.getpass("Again: ") != first:
        raise UsageError("the passphrases differ")
    if not first:
        raise UsageError("an empty passphrase protects nothing")
    return first


def open_profile(args: argparse.Namespace) -> tuple[config.Profile, str | None]:
    """Load a profile, asking for its passphrase when it has one and a terminal is there."""
    passphrase = passphrase_from_args(args, new=False)
    key_file = getattr(args, "key_file", None)
    try:
        return config.load_profile(args.profile, key_file=key_file, passphrase=passphrase), None
    except config.PassphraseNeeded:
        if not _interactive():
            raise
        passphrase = getpass.getpass(f"Passphrase of profile {args.profile!r}: ")
        profile = config.load_profile(args.profile, key_file=key_file, passphrase=passphrase)
        return profile, passphrase


# --- login / logout ---------------------------------------------------------------------------


def _interactive() -> bool:
    return sys.stdin.isatty()


def cmd_login(args: argparse.Namespace) -> int:
    from internxtfs.internxt.auth import Credentials
    from internxtfs.internxt.client import InternxtClient

    drive_url = (args.drive_url or endpoints.drive_url()).rstrip("/")
    network_url = (args.network_url or endpoints.network_url()).rstrip("/")
    email = args.email or (input("Email: ").strip() if _interactive() else "")
    if not email:
        raise UsageError("--email is required when not running interactively")
    if args.password_file:
        password = read_secret_file(args.password_file)
    elif _interactive():
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("--password-file is required when not running interactively")
    passphrase = passphrase_from_args(args, new=True)
    totp_secret = (
        normalise_totp_secret(read_secret_file(args.totp_secret_file))
        if args.totp_secret_file
        else None
    )
    code = args.code

    async def attempt(code: str | None) -> object:
        async with InternxtClient(drive_url=drive_url, network_url=network_url) as client:
            return await client.login(email, password, code=code, totp_secret=totp_secret)

    try:
        try:
            session = trio.run(attempt, code)
        except ie.TwoFactorRequired:
            if not _interactive():
                raise
            print(
                "This account has two-factor authentication. To let an unattended mount log in "
                "again by itself, paste the 2FA secret (base32, or the otpauth:// URI of the QR "
                "code); it is stored sealed. Leave empty to type a one-time code instead."
            )
            pasted = getpass.getpass("2FA secret (optional): ").strip()
            if pasted:
                totp_secret = normalise_totp_secret(pasted)
                session = trio.run(attempt, None)
            else:
                code = input("Two-factor code: ").strip()
                session = trio.run(attempt, code)
    except ie.InternxtError as exc:
        message, status = describe_auth_error(exc, drive_url)
        print(f"internxtfs: {message}", file=sys.stderr)
        return status

    profile = config.Profile(
        name=args.profile,
        drive_url=drive_url,
        network_url=network_url,
        session=session,  # type: ignore[arg-type]
        credentials=Credentials(email, password, totp_secret),
        key=vault.key_material(
            args.profile,
            config.profile_dir(args.profile),
            key_file=args.key_file,
            passphrase=passphrase,
        ),
    )
    path = config.save_profile(profile)
    print(f"Logged in as {email}; profile {args.profile!r} saved in {path}")
    if code and not totp_secret:
        print(
            "Note: no TOTP secret was stored, so when this session ends an unattended mount "
            "cannot log in again by itself; add --totp-secret-file to allow that."
        )
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from internxtfs.internxt.client import InternxtClient

    try:
        profile, _ = open_profile(args)
    except config.ProfileError as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
        return EXIT_FAIL

    async def revoke() -> None:
        async with InternxtClient(
            profile.session, drive_url=profile.drive_url, network_url=profile.network_url
        ) as client:
            await client.logout()

    try:
        trio.run(revoke)
    except ie.InternxtError as exc:
        print(f"internxtfs: could not revoke the session remotely: {exc.message}", file=sys.stderr)
    config.delete_profile(args.profile)
    print(f"Logged out; profile {args.profile!r} removed")
    return 0


# --- mount ------------------------------------------------------------------------------------


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
    from internxtfs.fs.operations import MountOptions
    from internxtfs.mount import MountConfig, default_cache_dir

    extra = parse_mount_o(args.o)
    fs = MountOptions(
        dir_cache_ttl=args.dir_cache_ttl,
        delete_mode=args.delete_mode,
        fsync=args.fsync,
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
    except mount.AlreadyMounted as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
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


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_status(st: dict[str, object]) -> str:
    import datetime

    up = st["uploads"]
    cache = st["cache"]
    net = st["network"]
    sess = st["session"]
    assert isinstance(up, dict) and isinstance(cache, dict)
    assert isinstance(net, dict) and isinstance(sess, dict)
    expires = datetime.datetime.fromtimestamp(float(sess["expires_at"]), datetime.UTC)
    lines = [
        f"internxtfs on {st['mountpoint']} ({st['account']})",
        f"  pending uploads: {up['pending_files']} file(s), {_human(up['pending_bytes'])}"
        f" ({up['in_flight']} in flight, {up['queued']} queued)",
        f"  uploaded since mount: {up['uploaded']} file(s); upload retries: {up['retries']}",
        f"  cache: {_human(cache['bytes_cached'])} of {_human(cache['bytes_max'])}"
        f" ({_human(cache['bytes_dirty'])} not uploaded yet)",
        f"  requests: {net['calls']}, retried {net['retries']}, failed {net['failures']}",
        f"  session: valid until {expires:%Y-%m-%d %H:%M} UTC;"
        f" {sess['refreshes']} refresh(es), {sess['relogins']} re-login(s)",
    ]
    if sess.get("error"):
        lines.append(f"  session cannot be renewed: {sess['error']}")
    if net.get("last_error"):
        lines.append(f"  last network error: {net['last_error']}")
    for local_id, err in (up.get("errors") or {}).items():
        lines.append(f"  failing upload #{local_id}: {err['error']} ({err['attempts']} attempts)")
    return "\n".join(lines)


def _control(mountpoint: str, cmd: str, **kw: object) -> list[dict[str, object]]:
    from internxtfs import control

    answers: list[dict[str, object]] = []

    async def talk() -> None:
        async for answer in control.request(mountpoint, cmd, **kw):
            if "progress" in answer and sys.stderr.isatty():
                p = answer["progress"]
                assert isinstance(p, dict)
                print(
                    f"\r  {p['pending_files']} file(s), {_human(p['pending_bytes'])} to upload"
                    f" ({p['in_flight']} in flight)   ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            answers.append(answer)

    trio.run(talk)
    if sys.stderr.isatty() and any("progress" in a for a in answers):
        print(file=sys.stderr)
    return answers


def cmd_status(args: argparse.Namespace) -> int:
    from internxtfs.control import NotMounted

    try:
        (answer,) = _control(args.mountpoint, "status")
    except NotMounted as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(json.dumps(answer, indent=2) if args.json else format_status(answer))
    return 0


def _flush_like(args: argparse.Namespace, cmd: str) -> int:
    from internxtfs.control import NotMounted

    try:
        answers = _control(args.mountpoint, cmd, timeout=args.timeout)
    except NotMounted as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
        return EXIT_FAIL
    result = next((a for a in answers if a.get("done")), None)
    if result is None:
        print("internxtfs: the mount stopped answering", file=sys.stderr)
        return EXIT_FAIL
    if cmd == "umount":
        from internxtfs.control import canonical_mountpoint

        target = canonical_mountpoint(args.mountpoint)
        for _ in range(600):
            with open("/proc/self/mounts") as fh:
                if not any(line.split()[1] == target for line in fh):
                    break
            time.sleep(0.1)
    errors = result.get("errors") or {}
    assert isinstance(errors, dict)
    for local_id, err in errors.items():
        print(f"internxtfs: upload #{local_id} failed: {err}", file=sys.stderr)
    if result.get("pending"):
        print(
            f"internxtfs: {result['pending']} file(s) not stored yet"
            + ("; they stay in the cache and resume at the next mount" if cmd == "umount" else ""),
            file=sys.stderr,
        )
        return EXIT_FAIL
    print("everything is stored" + ("; unmounted" if cmd == "umount" else ""))
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    return _flush_like(args, "flush")


def cmd_umount(args: argparse.Namespace) -> int:
    return _flush_like(args, "umount")


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


# --- argument parsing -------------------------------------------------------------------------


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
    _key_options(logout)
    logout.set_defaults(func=cmd_logout)

    mount = sub.add_parser("mount", help="mount the Internxt Drive of a profile")
    mount.add_argument("mountpoint")
    mount.add_argument("--profile", default=config.DEFAULT_PROFILE)
    mount.add_argument("-f", "--foreground", action="store_true")
    mount.add_argument("--cache-dir")
    mount.add_argument("--cache-size", type=parse_size, default=10 * 1024**3)
    mount.add_argument("--upload-concurrency", type=int, default=8)
    mount.add_argument(
        "--upload-delay", type=float, default=1.0, help="quiet seconds before an upload starts"
    )
    mount.add_argument("--dir-cache-ttl", type=float, default=10.0)
    mount.add_argument("--delete-mode", choices=("permanent", "trash"), default="permanent")
    mount.add_argument("--flush-timeout", type=float, default=60.0)
    mount.add_argument(
        "--fsync",
        choices=("remote", "local"),
        default="remote",
        help="fsync returns once stored remotely (default) or once durable in the cache",
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

    umount = sub.add_parser("umount", help="store everything pending, then unmount")
    umount.add_argument("mountpoint")
    umount.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a daemon re-runs
    setup_logging(args)
    try:
        return int(args.func(args))
    except UsageError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130
    return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
