"""JSON shapes of the drive API (protocol §7.1, §10a) built from database rows.

Typing rules matter to rclone's Go decoder: numeric ids are numbers, file ``size`` is a string of
decimal bytes, folder ``size`` a number, times RFC 3339 with milliseconds and ``Z``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .errors import bad_request
from .store import Row

ENCRYPT_VERSION = "03-aes"

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def iso(moment: dt.datetime) -> str:
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso(dt.datetime.now(dt.UTC))


def parse_time(value: Any, field: str) -> str | None:
    """Normalise a client ISO-8601 time (Go sends nanoseconds and offsets) to our format."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request([f"{field} must be a valid ISO 8601 date string"])
    text = _FRACTION.sub(lambda m: m.group(1), value.strip()).replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise bad_request([f"{field} must be a valid ISO 8601 date string"]) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return iso(moment)


def folder_status(row: Row) -> str:
    if row["removed"]:
        return "DELETED"
    return "TRASHED" if row["deleted"] else "EXISTS"


def folder_dto(row: Row) -> dict[str, Any]:
    return {
        "type": "folder",
        "id": row["id"],
        "parentId": row["parent_id"],
        "parentUuid": row["parent_uuid"],
        # The real server stores an encrypted copy here; clients read plainName only (§4).
        "name": row["plain_name"],
        "plainName": row["plain_name"],
        "parent": None,
        "bucket": None,
        "userId": row["user_id"],
        "encryptVersion": ENCRYPT_VERSION,
        "deleted": bool(row["deleted"]),
        "deletedAt": row["deleted_at"],
        "removed": bool(row["removed"]),
        "removedAt": row["removed_at"],
        "size": 0,
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "creationTime": row["creation_time"],
        "modificationTime": row["modification_time"],
        "uuid": row["uuid"],
        "status": folder_status(row),
    }


def folder_row_snake(row: Row) -> dict[str, Any]:
    """``GET /folders/meta?path`` returns the raw SQL row, hence snake_case keys (§7.3)."""
    return {
        "id": row["id"],
        "uuid": row["uuid"],
        "parent_id": row["parent_id"],
        "parent_uuid": row["parent_uuid"],
        "name": row["plain_name"],
        "plain_name": row["plain_name"],
        "bucket": None,
        "user_id": row["user_id"],
        "encrypt_version": ENCRYPT_VERSION,
        "deleted": bool(row["deleted"]),
        "removed": bool(row["removed"]),
        "deleted_at": row["deleted_at"],
        "removed_at": row["removed_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "creation_time": row["creation_time"],
        "modification_time": row["modification_time"],
        "size": 0,
    }


def file_dto(row: Row) -> dict[str, Any]:
    status = row["status"]
    return {
        "id": row["id"],
        "uuid": row["uuid"],
        "fileId": row["file_id"],
        "name": row["plain_name"],
        "plainName": row["plain_name"],
        "type": row["type"],
        "size": str(row["size"]),
        "bucket": row["bucket"],
        "folderId": row["folder_id"],
        "folderUuid": row["folder_uuid"],
        "encryptVersion": ENCRYPT_VERSION,
        "userId": row["user_id"],
        "creationTime": row["creation_time"],
        "modificationTime": row["modification_time"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "deleted": status != "EXISTS",
        "deletedAt": row["deleted_at"],
        "removed": status == "DELETED",
        "removedAt": row["removed_at"],
        "status": status,
        "thumbnails": [],
    }


def user_dto(user: Row) -> dict[str, Any]:
    """The ``user`` object of login and refresh (§2.4); key fields are strings or null."""
    return {
        "email": user["email"],
        "userId": user["user_id_str"],
        "mnemonic": user["mnemonic_enc"],
        "root_folder_id": user["root_folder_id"],
        "rootFolderId": user["root_folder_uuid"],
        "name": user["name"],
        "lastname": user["lastname"],
        "uuid": user["uuid"],
        "credit": 0,
        "createdAt": user["created_at"],
        "privateKey": None,
        "publicKey": None,
        "revocateKey": None,
        "tierId": "free_id",
        "keys": {
            "ecc": {"privateKey": None, "publicKey": None},
            "kyber": {"privateKey": None, "publicKey": None},
        },
        "bucket": user["bucket"],
        "registerCompleted": True,
        "teams": False,
        "username": user["email"],
        "bridgeUser": user["bridge_user"],
        "sharedWorkspace": False,
        "appSumoDetails": None,
        "hasReferralsProgram": False,
        "backupsBucket": None,
        "avatar": None,
        "emailVerified": True,
        "lastPasswordChangedAt": None,
    }
