"""Profiles: where each account's session and login credentials are kept.

A profile is a directory ``<config root>/<name>/`` holding ``profile.json`` (mode 0600, directory
0700). The config root is ``$INTERNXTFS_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/internxtfs``, else
``~/.config/internxtfs``. The file keeps the session (token and the account fields the client
needs, the decrypted mnemonic among them) and, so that an unattended mount can log in again when
its session ends, the password and the TOTP secret when the user gave one.

This stage protects the file by its permissions only; encryption at rest is the operating
issue's (see docs and issue 5).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from internxtfs.internxt.auth import Credentials, Session

DEFAULT_PROFILE = "default"
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProfileError(Exception):
    """A profile that does not exist, has a bad name, or cannot be read."""


def config_root() -> Path:
    explicit = os.environ.get("INTERNXTFS_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "internxtfs"


def profile_dir(name: str) -> Path:
    if not _PROFILE_NAME.match(name):
        raise ProfileError(f"invalid profile name {name!r}: use letters, digits, '.', '_', '-'")
    return config_root() / name


@dataclass
class Profile:
    name: str
    drive_url: str
    network_url: str
    session: Session
    credentials: Credentials | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "drive_url": self.drive_url,
            "network_url": self.network_url,
            "session": self.session.to_dict(),
            "credentials": None
            if self.credentials is None
            else {
                "email": self.credentials.email,
                "password": self.credentials.password,
                "totp_secret": self.credentials.totp_secret,
            },
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Profile:
        creds = data.get("credentials")
        return cls(
            name=name,
            drive_url=data["drive_url"],
            network_url=data["network_url"],
            session=Session.from_dict(data["session"]),
            credentials=None
            if not creds
            else Credentials(creds["email"], creds["password"], creds.get("totp_secret")),
            extra=data.get("extra") or {},
        )


def save_profile(profile: Profile) -> Path:
    """Write atomically (temp file + rename) with mode 0600, so a crash never leaves half a file."""
    directory = profile_dir(profile.name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    target = directory / "profile.json"
    fd, tmp = tempfile.mkstemp(prefix=".profile.", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(profile.to_dict(), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_profile(name: str) -> Profile:
    path = profile_dir(name) / "profile.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(
            f"no profile {name!r} (looked in {path}); run 'internxtfs login --profile {name}'"
        ) from None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"cannot read profile {name!r} at {path}: {exc}") from exc
    return Profile.from_dict(name, data)


def delete_profile(name: str) -> bool:
    directory = profile_dir(name)
    target = directory / "profile.json"
    if not target.exists():
        return False
    target.unlink()
    return True
