"""Profiles: where each account's session and login credentials are kept.

A profile is a directory ``<config root>/<name>/`` (mode 0700) holding ``profile.json``
(mode 0600). The config root is ``$INTERNXTFS_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/internxtfs``,
else ``~/.config/internxtfs``. In clear the file says only which servers and which email; the
session (token, decrypted mnemonic) and the login credentials (password, TOTP secret, kept so an
unattended mount can log in again when its session ends) are sealed by :mod:`internxtfs.vault`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from internxtfs import vault
from internxtfs.internxt.auth import Credentials, Session

DEFAULT_PROFILE = "default"
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProfileError(Exception):
    """A profile that does not exist, has a bad name, or cannot be read."""


class PassphraseNeeded(ProfileError):
    """The profile is sealed with a passphrase and none was given."""


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
    key: vault.KeyMaterial | None = field(default=None, repr=False)

    def _aad(self) -> bytes:
        return f"internxtfs profile {self.name} {self.session.email}".encode()

    def secrets(self) -> dict[str, Any]:
        return {
            "session": self.session.to_dict(),
            "credentials": None
            if self.credentials is None
            else {
                "email": self.credentials.email,
                "password": self.credentials.password,
                "totp_secret": self.credentials.totp_secret,
            },
        }


def save_profile(profile: Profile) -> Path:
    """Seal the secrets, write atomically (temp file + rename, mode 0600)."""
    directory = profile_dir(profile.name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    if profile.key is None:
        found = vault.key_material(profile.name, directory)
        profile.key = found or vault.create_auto_key(directory)
    sealed = vault.seal(json.dumps(profile.secrets()).encode(), profile.key, profile._aad())
    document = {
        "version": 2,
        "email": profile.session.email,
        "drive_url": profile.drive_url,
        "network_url": profile.network_url,
        "key_source": profile.key.source,
        "secrets": sealed,
        "extra": profile.extra,
    }
    target = directory / "profile.json"
    fd, tmp = tempfile.mkstemp(prefix=".profile.", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(document, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_profile(
    name: str,
    *,
    key_file: str | None = None,
    passphrase: str | None = None,
    key: vault.KeyMaterial | None = None,
) -> Profile:
    directory = profile_dir(name)
    path = directory / "profile.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(
            f"no profile {name!r} (looked in {path}); run 'internxtfs login --profile {name}'"
        ) from None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"cannot read profile {name!r} at {path}: {exc}") from exc
    recorded = document.get("key_source")
    if key is None:
        try:
            key = vault.key_material(
                name, directory, key_file=key_file, passphrase=passphrase, recorded=recorded
            )
        except vault.VaultError as exc:
            raise ProfileError(str(exc)) from None
    if key is None:
        if recorded == "passphrase":
            raise PassphraseNeeded(f"profile {name!r} is protected by a passphrase")
        raise ProfileError(
            f"no key for profile {name!r} (sealed with a {recorded} key): give --key-file, "
            "or the systemd credential internxtfs.key"
        )
    aad = f"internxtfs profile {name} {document.get('email')}".encode()
    try:
        secrets = json.loads(vault.unseal(document["secrets"], key, aad))
    except vault.VaultError as exc:
        raise ProfileError(f"cannot open profile {name!r}: {exc}") from exc
    except KeyError:
        raise ProfileError(f"profile {name!r} at {path} has no secrets; log in again") from None
    creds = secrets.get("credentials")
    return Profile(
        name=name,
        drive_url=document["drive_url"],
        network_url=document["network_url"],
        session=Session.from_dict(secrets["session"]),
        credentials=None
        if not creds
        else Credentials(creds["email"], creds["password"], creds.get("totp_secret")),
        extra=document.get("extra") or {},
        key=key,
    )


def delete_profile(name: str) -> bool:
    directory = profile_dir(name)
    target = directory / "profile.json"
    if not target.exists():
        return False
    target.unlink()
    (directory / vault.AUTO_KEY_NAME).unlink(missing_ok=True)
    return True
