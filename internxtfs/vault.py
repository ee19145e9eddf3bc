"""Secrets at rest: AES-256-GCM under a key derived by scrypt from the profile's key material.

Key material, in the order it is looked for (see :func:`key_material`):

* ``passphrase`` — typed at the terminal, or read from a file descriptor (``--passphrase-fd``);
* ``key-file`` — a file named by ``--key-file``: what the command line names wins over what the
  environment holds, so a login run where a credential happens to be present still seals with
  the file it was given (and the next ``--key-file`` call opens it). The file must not be
  readable by other users;
* ``credential`` — a systemd credential, ``$CREDENTIALS_DIRECTORY/internxtfs-<profile>.key`` or
  ``$CREDENTIALS_DIRECTORY/internxtfs.key`` (``LoadCredentialEncrypted=``/``LoadCredential=``);
* ``key-file`` named by ``$INTERNXTFS_KEY_FILE``;
* ``auto`` — a random key file created at login next to the profile (mode 0600). It keeps the
  secrets out of anything that copies the profile file alone; it does not protect against
  someone who can read the whole profile directory. Use one of the others for that.

The sealed blob is bound to the profile name and email (GCM associated data), so blobs cannot be
swapped between profiles unnoticed.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # ~32 MiB, ~0.1 s: per login/mount, not per call
AUTO_KEY_NAME = "auto.key"


class VaultError(Exception):
    """Wrong key material, or a damaged blob."""


@dataclass(frozen=True)
class KeyMaterial:
    source: str  # "credential" | "key-file" | "passphrase" | "auto"
    secret: bytes
    where: str = ""


def _derive(secret: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def seal(plaintext: bytes, key: KeyMaterial, aad: bytes) -> dict[str, Any]:
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    derived = _derive(key.secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return {
        "cipher": "aes-256-gcm",
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "key_source": key.source,
        "nonce": _b64(nonce),
        "ciphertext": _b64(AESGCM(derived).encrypt(nonce, plaintext, aad)),
    }


def unseal(blob: dict[str, Any], key: KeyMaterial, aad: bytes) -> bytes:
    try:
        kdf = blob["kdf"]
        derived = _derive(
            key.secret, base64.b64decode(kdf["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        )
        nonce, ciphertext = base64.b64decode(blob["nonce"]), base64.b64decode(blob["ciphertext"])
        return AESGCM(derived).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise VaultError(f"the {key.source} key {key.where} does not open these secrets") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise VaultError(f"the stored secrets are damaged: {exc}") from exc


def _read_key_file(path: Path, source: str) -> KeyMaterial:
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if source == "key-file" and stat.S_ISREG(mode) and mode & 0o077:
                # As ssh does for private keys: a key others can read protects nothing.
                raise VaultError(
                    f"key file {path} can be read or changed by other users "
                    f"(mode {stat.S_IMODE(mode):04o}); run 'chmod 600 {path}' (and create key "
                    "files with 'umask 077' or 'install -m 600')"
                )
            data = fh.read()
    except OSError as exc:
        raise VaultError(f"cannot read key file {path}: {exc.strerror}") from exc
    data = data.rstrip(b"\r\n")
    if not data:
        raise VaultError(f"key file {path} is empty")
    return KeyMaterial(source, data, str(path))


def credential_file(profile: str) -> Path | None:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    for name in (f"internxtfs-{profile}.key", "internxtfs.key"):
        candidate = Path(directory) / name
        if candidate.exists():
            return candidate
    return None


def create_auto_key(profile_dir: Path) -> KeyMaterial:
    path = profile_dir / AUTO_KEY_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(32).encode())
    return _read_key_file(path, "auto")


def key_material(
    profile: str,
    profile_dir: Path,
    *,
    key_file: str | None = None,
    passphrase: str | None = None,
    recorded: str | None = None,
) -> KeyMaterial | None:
    """The key material for a profile, or None when the caller must create or ask for one.

    ``recorded`` is the source the profile was sealed with: an ``auto`` profile opens with its
    auto key even when a credential directory exists for other purposes.
    """
    if passphrase is not None:
        return KeyMaterial("passphrase", passphrase.encode(), "(passphrase)")
    if key_file:
        return _read_key_file(Path(key_file), "key-file")
    credential = credential_file(profile)
    if credential is not None and recorded in (None, "credential", "key-file"):
        return _read_key_file(credential, "credential")
    from_env = os.environ.get("INTERNXTFS_KEY_FILE")
    if from_env:
        return _read_key_file(Path(from_env), "key-file")
    if recorded in (None, "auto") and (profile_dir / AUTO_KEY_NAME).exists():
        return _read_key_file(profile_dir / AUTO_KEY_NAME, "auto")
    return None
