"""File endpoints of the drive API (protocol §5.3, §5.5, §7.3, §7.4)."""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import Any

from aiohttp import web

from . import tokens
from .context import emulator_of
from .dto import file_dto, now_iso, parse_time
from .errors import bad_request, conflict, drive_error, not_found, payment_required
from .folder_routes import live_folder, resolve_folder_path
from .store import Row, Store
from .validation import destination_folder, is_uuid, json_body, path_uuid

log = logging.getLogger(__name__)

MAX_PATH = 1024


def file_name_taken(
    store: Store,
    folder_uuid: str,
    plain_name: str,
    ftype: str | None,
    exclude: str = "",
    src: str = "files",
) -> bool:
    # A null and an empty type are the same extension (§5.3).
    return bool(
        store.scalar(
            f"SELECT 1 FROM {src} WHERE folder_uuid = ? AND plain_name = ?"
            " AND COALESCE(type, '') = ? AND status = 'EXISTS' AND uuid != ?",
            folder_uuid,
            plain_name,
            ftype or "",
            exclude,
        )
    )


def check_content(
    store: Store, user: Row, body: dict[str, Any], replacing: str = ""
) -> tuple[int, str | None]:
    """Validate ``size``/``fileId`` of a create or replace; returns them."""
    size = body.get("size")
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise bad_request(["size must not be less than 0", "size must be a number"])
    file_id = body.get("fileId") or None
    if size > 0 and not isinstance(file_id, str):
        raise bad_request(["fileId must be a string"])
    if size == 0 and file_id is not None:
        raise bad_request(["fileId should not exist for empty files"])
    cap = user["max_file_size"]
    if cap is not None and size > cap:
        raise payment_required(
            "File size exceeds the maximum allowed by your plan", "FILE_UPLOAD_SIZE_EXCEEDED"
        )
    if size == 0 and user["empty_file_cap"] is not None:
        empty_cap = user["empty_file_cap"]
        if empty_cap == 0:
            raise payment_required(
                "You can not have empty files, upgrade your plan", "FEATURE_NOT_AVAILABLE"
            )
        count = store.scalar(
            "SELECT COUNT(*) FROM files WHERE user_id = ? AND size = 0 AND status = 'EXISTS'"
            " AND uuid != ?",
            user["id"],
            replacing,
        )
        if count >= empty_cap:
            raise bad_request("You can not have more empty files")
    if file_id is not None:
        # Stricter than Internxt (which trusts the client): catches clients that create a
        # file entry before finishing the upload, or with the wrong size.
        entry = store.one("SELECT * FROM entries WHERE id = ?", file_id)
        if entry is None or entry["bucket"] != user["bucket"]:
            raise bad_request("fileId does not reference a finished upload in your bucket")
        if entry["size"] != size:
            raise bad_request("size does not match the uploaded object")
        used = store.scalar(
            "SELECT 1 FROM files WHERE file_id = ? AND status != 'DELETED' AND uuid != ?",
            file_id,
            replacing,
        )
        if used:
            raise bad_request("fileId is already used by another file")
    return size, file_id


async def create_file(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    body = await json_body(request)
    plain_name, ftype = body.get("plainName"), body.get("type")
    if not isinstance(plain_name, str):
        raise bad_request(["plainName must be a string"])
    if ftype is not None and not isinstance(ftype, str):
        raise bad_request(["type must be a string"])
    if not is_uuid(body.get("folderUuid")):
        raise bad_request(["folderUuid must be a UUID"])
    bucket = body.get("bucket", user["bucket"])
    if bucket != user["bucket"]:
        raise bad_request("bucket is not the user's bucket")
    now = now_iso()
    creation = parse_time(body.get("creationTime"), "creationTime") or parse_time(
        body.get("date"), "date"
    )
    modification = parse_time(body.get("modificationTime"), "modificationTime")
    # The folder check reads a replica: a folder created a moment ago is "not found" (PB-1446).
    folder = store.one(
        f"SELECT * FROM {emu.lagged('folders')} WHERE uuid = ?", body["folderUuid"].lower()
    )
    if folder is None or folder["removed"] or folder["deleted"]:
        raise not_found("Folder not found")
    if folder["user_id"] != user["id"]:
        raise drive_error(403, "Folder is not yours")
    # The name check reads a replica; what it misses, the primary's unique index
    # files_plainname_type_folderid_exists_unique refuses with 409 (docs/protocol.md,
    # "Unique names").
    if file_name_taken(store, folder["uuid"], plain_name, ftype, src=emu.lagged("files")):
        raise conflict("File already exists")
    with store.transaction() as conn:
        if file_name_taken(store, folder["uuid"], plain_name, ftype):
            raise conflict("A file with this name already exists in this location")
        size, file_id = check_content(store, user, body)
        file_uuid = str(uuidlib.uuid4())
        conn.execute(
            "INSERT INTO files (uuid, user_id, folder_id, folder_uuid, plain_name, type, size,"
            " file_id, bucket, created_at, updated_at, creation_time, modification_time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                file_uuid,
                user["id"],
                folder["id"],
                folder["uuid"],
                plain_name,
                ftype,
                size,
                file_id,
                user["bucket"],
                now,
                now,
                creation or now,
                modification or now,
            ),
        )
    row = store.file(user["id"], file_uuid)
    assert row is not None
    return web.json_response(file_dto(row), status=201)


def _owned_file(request: web.Request, user: Row) -> Row:
    """The file the path names, looked up as drive-server does: on a read replica
    (``findOneBy``/``findByUuid`` in file.usecase.ts' deleteFilePermanently, updateFileMetaData
    and replaceFile), so a file created a moment ago is 404. The row returned is the current
    one: the writes that follow go to the primary."""
    emu = emulator_of(request)
    uuid = path_uuid(request)
    seen = emu.store.one(
        f"SELECT 1 FROM {emu.lagged('files')} WHERE uuid = ? AND user_id = ?", uuid, user["id"]
    )
    row = emu.store.file(user["id"], uuid)
    if seen is None or row is None:
        raise not_found("File not found")
    return row


async def get_meta(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    # Read from a replica. Any status is returned; clients check ``status`` themselves (§7.3).
    row = emu.store.one(
        f"SELECT * FROM {emu.lagged('files')} WHERE uuid = ? AND user_id = ?",
        path_uuid(request),
        user["id"],
    )
    if row is None:
        raise not_found("File not found")
    return web.json_response(file_dto(row))


async def rename(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    store = emulator_of(request).store
    body = await json_body(request)
    row = _owned_file(request, user)
    if row["status"] == "DELETED":
        raise not_found("File not found")
    plain_name = body.get("plainName")
    ftype = body.get("type")
    new_name = row["plain_name"] if plain_name is None else str(plain_name).lstrip()
    new_type = row["type"] if ftype is None else str(ftype).rstrip()
    if not new_name and not new_type:
        raise bad_request("Filename cannot be empty")
    with store.transaction() as conn:
        if file_name_taken(store, row["folder_uuid"], new_name, new_type, row["uuid"]):
            raise conflict("A file with this name already exists in this location")
        now = now_iso()
        conn.execute(
            "UPDATE files SET plain_name = ?, type = ?, modification_time = ?, updated_at = ?"
            " WHERE id = ?",
            (new_name, new_type, now, now, row["id"]),
        )
    fresh = store.file(user["id"], row["uuid"])
    assert fresh is not None
    return web.json_response(file_dto(fresh))


async def move(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    uuid = path_uuid(request)
    body = await json_body(request)
    destination = destination_folder(body)
    # Both lookups read a replica (moveFile in file.usecase.ts): a file or a destination
    # created a moment ago "can not be moved" (422).
    seen = store.one(
        f"SELECT 1 FROM {emu.lagged('files')} WHERE uuid = ? AND user_id = ?", uuid, user["id"]
    )
    row = store.file(user["id"], uuid)
    if seen is None or row is None or row["status"] == "DELETED":
        raise drive_error(422, f"File {uuid} can not be moved")
    target = live_folder(store, user["id"], destination, emu.lagged("folders"))
    if target is None:
        raise drive_error(422, f"File can not be moved to {destination}")
    # ``name ?? old`` and ``type ?? old``: a present "" clears the extension (§7.4).
    new_name = row["plain_name"] if body.get("name") is None else str(body["name"])
    new_type = row["type"] if body.get("type") is None else str(body["type"])
    if not new_name and not new_type:
        raise bad_request("Filename is not valid")
    # The name lookup reads a replica (findByPlainNameAndFolderId): the file itself found
    # under the name is "already moved", also where a lagging replica still shows it after
    # we moved it away a moment ago.
    shown_there = store.one(
        f"SELECT 1 FROM {emu.lagged('files')} WHERE uuid = ? AND status = 'EXISTS'"
        " AND folder_uuid = ? AND plain_name = ? AND COALESCE(type, '') = ?",
        uuid,
        destination,
        new_name,
        new_type or "",
    )
    if shown_there or (
        row["status"] == "EXISTS"
        and row["folder_uuid"] == destination
        and row["plain_name"] == new_name
        and (row["type"] or "") == (new_type or "")
    ):
        raise conflict(f"File {uuid} was already moved to that location")
    with store.transaction() as conn:
        # The conflict check reads a replica: a file moved away a moment ago still counts.
        if file_name_taken(
            store, destination, new_name, new_type, uuid, emu.lagged("files")
        ) or file_name_taken(store, destination, new_name, new_type, uuid):
            raise conflict("A file with the same name already exists in destination folder")
        # Moving a trashed file restores it.
        conn.execute(
            "UPDATE files SET folder_id = ?, folder_uuid = ?, plain_name = ?, type = ?,"
            " status = 'EXISTS', deleted_at = NULL, updated_at = ? WHERE id = ?",
            (target["id"], destination, new_name, new_type, now_iso(), row["id"]),
        )
    fresh = store.file(user["id"], uuid)
    assert fresh is not None
    return web.json_response(file_dto(fresh))


async def replace(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    store = emulator_of(request).store
    body = await json_body(request)
    row = _owned_file(request, user)
    if row["status"] != "EXISTS":
        raise bad_request(f"{row['status']} files can not be replaced")
    modification = parse_time(body.get("modificationTime"), "modificationTime")
    with store.transaction() as conn:
        size, file_id = check_content(store, user, body, replacing=row["uuid"])
        now = now_iso()
        if size == 0:
            # Internxt's quirk (drive-server-wip src/modules/file/file.usecase.ts
            # ``replaceFile``): ``size === BigInt(0)`` is never true for the plain number the
            # ValidationPipe leaves (``replace-file.dto.ts`` is ``@IsNumber()``, ``main.ts``
            # has no implicit conversion), so the new fileId is the absent one, which the ORM
            # drops from the UPDATE: the entry keeps its old fileId with size 0, the old
            # object is deleted all the same, and the reply leaves ``fileId`` out.
            file_id = row["file_id"]
        conn.execute(
            "UPDATE files SET size = ?, file_id = ?, modification_time = ?, updated_at = ?"
            " WHERE id = ?",
            (size, file_id, modification or now, now, row["id"]),
        )
        # No versioning in the emulator: the previous content goes away.
        if row["file_id"] != file_id or size == 0:
            store.delete_entry(row["file_id"])
    fresh = store.file(user["id"], row["uuid"])
    assert fresh is not None
    reply = file_dto(fresh)
    if size == 0:
        reply.pop("fileId", None)
    return web.json_response(reply)


def delete_file_row(store: Store, row: Row) -> None:
    """Permanent delete; callers hold a transaction."""
    now = now_iso()
    store.conn.execute(
        "UPDATE files SET status = 'DELETED', removed_at = ?, updated_at = ? WHERE id = ?",
        (now, now, row["id"]),
    )
    store.delete_entry(row["file_id"])


async def delete(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    store = emulator_of(request).store
    row = _owned_file(request, user)
    if row["status"] == "DELETED":
        raise not_found("File not found")
    with store.transaction():
        delete_file_row(store, row)
    return web.json_response({"deleted": True})


def split_name(base: str) -> tuple[str, str]:
    """Node's ``path.extname`` split: a leading dot does not start an extension."""
    dot = base.rfind(".")
    if dot <= 0:
        return base, ""
    return base[:dot], base[dot + 1 :]


async def meta_by_path(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    path = request.query.get("path", "")
    if "/" not in path:
        raise bad_request("Invalid path provided")
    if len(path) > MAX_PATH:
        raise bad_request("Path is too deep")
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        raise bad_request("Invalid path provided")
    folder = resolve_folder_path(store, user, parts[:-1], emu.lagged("folders"))
    if folder is None:
        raise not_found("Parent folders not found")
    plain_name, ftype = split_name(parts[-1])
    row = store.one(
        f"SELECT * FROM {emu.lagged('files')} WHERE folder_uuid = ? AND plain_name = ?"
        " AND COALESCE(type, '') = ?"
        " AND status = 'EXISTS'",
        folder["uuid"],
        plain_name,
        ftype,
    )
    if row is None:
        raise not_found("File not found")
    return web.json_response(file_dto(row))


async def thumbnail(request: web.Request) -> web.Response:
    tokens.require_user(request)
    body = await json_body(request)
    # Thumbnails are not stored: an echo is what clients need (they only log failures, §5.4).
    now = now_iso()
    echo = body | {"id": 1, "createdAt": now, "updatedAt": now}
    return web.json_response(echo, status=201)


def add_routes(add: Any) -> None:
    add("POST", "/files", create_file)
    add("GET", "/files/meta", meta_by_path)
    add("POST", "/files/thumbnail", thumbnail)
    add("GET", "/files/{uuid}/meta", get_meta)
    add("PUT", "/files/{uuid}/meta", rename)
    add("PATCH", "/files/{uuid}", move)
    add("PUT", "/files/{uuid}", replace)
    add("DELETE", "/files/{uuid}", delete)
