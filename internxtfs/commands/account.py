"""login and logout, the sealed profile's key material, and what each auth failure means."""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import re
import sys
import urllib.parse
from pathlib import Path

import trio

from internxtfs import config, vault
from internxtfs.commands import (
    EXIT_AUTH,
    EXIT_FAIL,
    EXIT_UNREACHABLE,
    UsageError,
    interactive,
)
from internxtfs.internxt import crypto, endpoints
from internxtfs.internxt import errors as ie


def read_secret_file(path: str, option: str, what: str = "Secret") -> str:
    """A secret from a file, or from standard input for ``-``; one trailing newline dropped.

    ``-`` at a terminal asks for it without echo (``what`` is the prompt): reading the
    terminal like a file would show the secret on screen and wait for Ctrl-D."""
    if path == "-" and interactive():
        return getpass.getpass(f"{what}: ")
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise UsageError(f"cannot read {option} {path}: {reason}") from None
    return text[:-1] if text.endswith("\n") else text


def normalise_totp_secret(text: str) -> str:
    """Accept a base32 secret or an ``otpauth://`` URI (what authenticator QR codes hold)."""
    text = text.strip()
    if text.startswith("otpauth://"):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(text).query)
        text = (query.get("secret") or [""])[0]
        if not text:
            raise UsageError("the otpauth:// URI has no secret= parameter")
    secret = "".join(text.split()).upper()
    try:
        crypto.totp_secret_bytes(secret)
    except crypto.TotpSecretError as exc:
        raise UsageError(str(exc)) from None
    return secret


def normalise_code(text: str) -> str:
    """A two-factor code as typed: authenticator apps show it as "123 456"."""
    code = "".join(text.split())
    if not re.fullmatch(r"[0-9]{6}", code):
        # Refused here, not by the server: a wrong code sent counts towards the lockout.
        raise UsageError(f"a two-factor code is 6 digits (spaces allowed), not {text!r}")
    return code


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


def read_passphrase_fd(fd: int) -> str:
    with os.fdopen(fd, "r", closefd=True) as fh:
        passphrase = fh.readline().rstrip("\n")
    if not passphrase:
        # The same rule as the prompt: an empty passphrase would seal the secrets with nothing.
        raise UsageError(f"the passphrase read from --passphrase-fd {fd} is empty")
    return passphrase


def passphrase_from_args(args: argparse.Namespace, *, new: bool) -> str | None:
    if getattr(args, "passphrase_fd", None) is not None:
        return read_passphrase_fd(args.passphrase_fd)
    if not getattr(args, "passphrase", False):
        return None
    if not interactive():
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
        if not interactive():
            raise
        passphrase = getpass.getpass(f"Passphrase of profile {args.profile!r}: ")
        profile = config.load_profile(args.profile, key_file=key_file, passphrase=passphrase)
        return profile, passphrase


def cmd_login(args: argparse.Namespace) -> int:
    from internxtfs.internxt.auth import Credentials
    from internxtfs.internxt.client import InternxtClient

    drive_url = (args.drive_url or endpoints.drive_url()).rstrip("/")
    network_url = (args.network_url or endpoints.network_url()).rstrip("/")
    email = args.email or (input("Email: ").strip() if interactive() else "")
    if not email:
        raise UsageError("--email is required when not running interactively")
    if args.password_file:
        password = read_secret_file(args.password_file, "--password-file", "Password")
    elif interactive():
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("--password-file is required when not running interactively")
    if not password:
        # Refused here: the server would count it as a failed login towards the lockout.
        raise UsageError(
            "the password is empty"
            + (f" (--password-file {args.password_file})" if args.password_file else "")
        )
    passphrase = passphrase_from_args(args, new=True)
    try:  # before the server is asked: a key that cannot be used must not cost a login
        key = vault.key_material(
            args.profile, config.profile_dir(args.profile), key_file=args.key_file,
            passphrase=passphrase,
        )  # fmt: skip
    except (vault.VaultError, config.ProfileError) as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
        return EXIT_FAIL
    totp_secret = (
        normalise_totp_secret(
            read_secret_file(args.totp_secret_file, "--totp-secret-file", "2FA secret")
        )
        if args.totp_secret_file
        else None
    )
    code = normalise_code(args.code) if args.code else None

    async def attempt(code: str | None) -> object:
        async with InternxtClient(drive_url=drive_url, network_url=network_url) as client:
            return await client.login(email, password, code=code, totp_secret=totp_secret)

    try:
        try:
            session = trio.run(attempt, code)
        except ie.TwoFactorRequired:
            if not interactive():
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
                code = normalise_code(input("Two-factor code: "))
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
        key=key,
    )
    path = config.save_profile(profile)
    print(f"Logged in as {email}; profile {args.profile!r} saved in {path}")
    # A mount of this profile that is running (maybe waiting after a password change) takes
    # the new login at once.
    from internxtfs import control

    answers = trio.run(
        functools.partial(
            control.tell_every_mount,
            "reload-credentials",
            profile=str(config.profile_dir(args.profile)),
        )
    )
    if any(a.get("reloaded") for a in answers):
        print("The running mount of this profile now uses this login.")
    if code and not totp_secret:
        print(
            "Note: no TOTP secret was stored, so when this session ends an unattended mount "
            "cannot log in again by itself; add --totp-secret-file to allow that."
        )
    return 0


def mounts_using(name: str) -> list[str]:
    """Mountpoints of the running mounts of profile ``name`` (that this user can reach)."""
    from internxtfs import control

    answers = trio.run(
        functools.partial(
            control.tell_every_mount, "uses-profile", profile=str(config.profile_dir(name))
        )
    )
    return [str(a["mountpoint"]) for a in answers if a.get("uses")]


def cmd_logout(args: argparse.Namespace) -> int:
    from internxtfs.internxt.client import InternxtClient

    try:
        # A running mount would log in again with the stored credentials and write them back:
        # it must be stopped first, and logging out changes nothing until then.
        in_use = mounts_using(args.profile)
        if in_use:
            where = ", ".join(in_use)
            print(
                f"internxtfs: profile {args.profile!r} is in use by the mount at {where}; "
                f"unmount it first ('internxtfs umount {in_use[0]}', or 'systemctl stop "
                f"internxtfs@{args.profile}' for the service), then log out. Nothing was changed.",
                file=sys.stderr,
            )
            return EXIT_FAIL
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
        # The token stays valid on the server until it expires (days): keep the profile, so a
        # second logout can still revoke it, unless told to forget it here anyway.
        if not getattr(args, "force", False):
            print(
                f"internxtfs: could not revoke the session on the server ({exc.message}), so it "
                f"stays valid there; profile {args.profile!r} is kept. Run logout again once "
                f"Internxt is reachable, or 'internxtfs logout --profile {args.profile} --force' "
                "to remove it here anyway",
                file=sys.stderr,
            )
            return EXIT_UNREACHABLE if isinstance(exc, ie.Unreachable) else EXIT_FAIL
        print(
            f"internxtfs: could not revoke the session on the server ({exc.message}); it stays "
            "valid there until it expires. Removing the profile here as asked (--force)",
            file=sys.stderr,
        )
    config.delete_profile(args.profile)
    print(f"Logged out; profile {args.profile!r} removed")
    return 0
