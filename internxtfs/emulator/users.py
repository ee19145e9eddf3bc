"""Account provisioning (protocol §10 item 4), shared by ``add-user`` and the admin API.

The emulator never learns plaintext or keys beyond what Internxt's server holds: the password
hash and its salt, and the mnemonic encrypted with the user's password.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid as uuidlib
from typing import Any

from internxtfs.internxt.crypto import (
    CryptoError,
    TotpSecretError,
    decrypt_text,
    encrypt_text,
    generate_mnemonic,
    is_valid_mnemonic,
    password_hash,
    totp_secret_bytes,
)

from .dto import now_iso
from .store import Store

log = logging.getLogger(__name__)

DEFAULT_QUOTA = 1 << 40  # 1 TiB
PLATFORMS = ("cli", "rclone")


class UserError(ValueError):
    """Invalid provisioning input (reported as 400 by the admin API, exit 2 by the CLI)."""


def _opaque_user_id() -> str:
    # Internxt's userId is a bcrypt hash; clients treat it as an opaque string.
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "$2a$08$" + "".join(secrets.choice(alphabet) for _ in range(53))


def _check_quota(value: Any, field: str, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{field} must be a non-negative integer")
    return value


def _check_totp(secret: str | None) -> str | None:
    if not secret:
        return None
    try:
        totp_secret_bytes(secret)
    except TotpSecretError as exc:
        raise UserError(str(exc)) from None
    return secret


def create_user(
    store: Store,
    email: str,
    password: str,
    mnemonic: str | None = None,
    totp_secret: str | None = None,
    quota: int | None = None,
    name: str = "Emulated",
    lastname: str = "User",
) -> dict[str, Any]:
    email = email.strip().lower()
    if not email or "@" not in email:
        raise UserError("email is not valid")
    if not password:
        raise UserError("password must not be empty")
    mnemonic = " ".join(mnemonic.split()) if mnemonic else generate_mnemonic()
    if not is_valid_mnemonic(mnemonic):
        raise UserError("mnemonic is not a valid BIP39 phrase")
    quota = _check_quota(DEFAULT_QUOTA if quota is None else quota, "quota", allow_none=False)
    totp_secret = _check_totp(totp_secret)
    salt = secrets.token_hex(16)
    user_uuid = str(uuidlib.uuid4())
    root_uuid = str(uuidlib.uuid4())
    bucket = secrets.token_hex(12)
    # Internxt derives the bridge user from the email; any unique email-like string works.
    bridge_user = f"{hashlib.sha256(email.encode()).hexdigest()[:16]}@inxt.emulator"
    now = now_iso()
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone():
            raise UserError(f"user {email} already exists")
        cur = conn.execute(
            "INSERT INTO users (uuid, email, name, lastname, salt, password_hash, mnemonic_enc,"
            " totp_secret, bridge_user, user_id_str, bucket, quota, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user_uuid,
                email,
                name,
                lastname,
                salt,
                password_hash(password, salt),
                encrypt_text(mnemonic, password),
                totp_secret,
                bridge_user,
                _opaque_user_id(),
                bucket,
                quota,
                now,
            ),
        )
        user_id = cur.lastrowid
        cur = conn.execute(
            "INSERT INTO folders (uuid, user_id, parent_id, parent_uuid, plain_name,"
            " created_at, updated_at, creation_time, modification_time)"
            " VALUES (?, ?, NULL, NULL, ?, ?, ?, ?, ?)",
            (root_uuid, user_id, root_uuid, now, now, now, now),
        )
        conn.execute(
            "UPDATE users SET root_folder_id = ?, root_folder_uuid = ? WHERE id = ?",
            (cur.lastrowid, root_uuid, user_id),
        )
    log.info("created user %s (bucket %s)", email, bucket)
    user = store.user_by_email(email)
    assert user is not None
    return describe_user(user) | {"mnemonic": mnemonic}


def describe_user(user: dict[str, Any]) -> dict[str, Any]:
    """What ``add-user`` prints and the admin API returns (no secrets except what tests need)."""
    return {
        "email": user["email"],
        "uuid": user["uuid"],
        "bucket": user["bucket"],
        "rootFolderId": user["root_folder_uuid"],
        "root_folder_id": user["root_folder_id"],
        "bridgeUser": user["bridge_user"],
        "userId": user["user_id_str"],
        "quota": user["quota"],
        "maxFileSize": user["max_file_size"],
        "emptyFileCap": user["empty_file_cap"],
        "backupUsage": user.get("backup_usage", 0),
        "platforms": [p for p in user["platforms"].split(",") if p],
        "totp": bool(user["totp_secret"]),
        "failedLogins": user["failed_logins"],
    }


def update_user(store: Store, email: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Apply admin changes; field names may be snake_case or camelCase."""
    user = store.user_by_email(email)
    if user is None:
        raise LookupError(email)
    updates: dict[str, Any] = {}
    for key, value in fields.items():
        norm = key.replace("-", "_")
        if norm in ("quota", "max_space_bytes", "maxSpaceBytes"):
            updates["quota"] = _check_quota(value, key, allow_none=False)
        elif norm in ("max_file_size", "maxFileSize", "max_upload_file_size"):
            updates["max_file_size"] = _check_quota(value, key, allow_none=True)
        elif norm in ("backup_usage", "backupUsage"):
            updates["backup_usage"] = _check_quota(value, key, allow_none=False)
        elif norm in ("empty_file_cap", "emptyFileCap"):
            updates["empty_file_cap"] = _check_quota(value, key, allow_none=True)
        elif norm in ("platforms", "platform_access"):
            updates["platforms"] = _platforms(value)
        elif norm in ("cli_access", "rclone_access"):
            allowed = set(user["platforms"].split(",")) - {""}
            platform = norm.split("_")[0]
            allowed = allowed | {platform} if value else allowed - {platform}
            updates["platforms"] = ",".join(sorted(allowed))
        elif norm == "password":
            updates.update(_password_change(user, str(value), fields))
        elif norm in ("old_password", "mnemonic"):
            continue  # consumed by the password change
        elif norm in ("totp_secret", "totpSecret"):
            updates["totp_secret"] = _check_totp(value)
        elif norm in ("failed_logins", "failedLogins"):
            updates["failed_logins"] = _check_quota(value, key, allow_none=False)
        else:
            raise UserError(f"unknown field {key}")
    if updates:
        assignments = ", ".join(f"{column} = ?" for column in updates)
        with store.transaction() as conn:
            conn.execute(
                f"UPDATE users SET {assignments} WHERE id = ?", (*updates.values(), user["id"])
            )
    fresh = store.user_by_email(email)
    assert fresh is not None
    return describe_user(fresh)


def _platforms(value: Any) -> str:
    """``true``/``false`` allows/denies both; a list names the allowed platforms."""
    if isinstance(value, bool):
        return ",".join(PLATFORMS) if value else ""
    if isinstance(value, str):
        value = [p for p in value.split(",") if p]
    if not isinstance(value, list) or any(p not in PLATFORMS for p in value):
        raise UserError(f"platforms must be a bool or a list drawn from {PLATFORMS}")
    return ",".join(sorted(set(value)))


def _password_change(user: dict[str, Any], password: str, fields: dict[str, Any]) -> dict[str, Any]:
    """New salt + hash, and the mnemonic re-encrypted under the new password.

    The server cannot decrypt the mnemonic by itself (neither can Internxt's: its client sends the
    re-encrypted one), so the caller gives ``mnemonic`` or ``old_password``; with neither the
    stored mnemonic stays encrypted under the old password.
    """
    if not password:
        raise UserError("password must not be empty")
    salt = secrets.token_hex(16)
    out: dict[str, Any] = {"salt": salt, "password_hash": password_hash(password, salt)}
    old_password = fields.get("old_password")
    if fields.get("mnemonic"):
        mnemonic = " ".join(str(fields["mnemonic"]).split())
        if not is_valid_mnemonic(mnemonic):
            raise UserError("mnemonic is not a valid BIP39 phrase")
        out["mnemonic_enc"] = encrypt_text(mnemonic, password)
    elif old_password is not None:
        try:
            mnemonic = decrypt_text(user["mnemonic_enc"], str(old_password))
        except CryptoError as exc:
            raise UserError("old_password does not decrypt the mnemonic") from exc
        out["mnemonic_enc"] = encrypt_text(mnemonic, password)
    return out
