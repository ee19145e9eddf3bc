"""Folder endpoints of the drive API (protocol §7.2–§7.4)."""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import Any

from aiohttp import web

from . import tokens
from .context import emulator_of
from .dto import file_dto, folder_dto, folder_row_snake, now_iso, parse_time
from .errors import ApiError, bad_request, conflict, drive_error, not_found
from .store import Row, Store
from .validation import (
    destination_folder,
    is_uuid,
    json_body,
    limit_offset,
    order_clause,
    path_uuid,
    sort_order,
)

log = logging.getLogger(__name__)

FOLDER_SORTS = ("updatedAt", "id", "plainName", "uuid")
FILE_SORTS = (*FOLDER_SORTS, "size")
LIVE_FOLDER = "deleted = 0 AND removed = 0"


def valid_folder_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name.strip()) and "/" not in name and "\\" not in name


def live_folder(store: Store, user_id: int, uuid: str, src: str = "folders") -> Row | None:
    """``src``: the table, or its lagged view for reads Internxt sends to a replica."""
    return store.one(
        f"SELECT * FROM {src} WHERE uuid = ? AND user_id = ? AND {LIVE_FOLDER}", uuid, user_id
    )


def folder_by_uuid(store: Store, user_id: int, uuid: str, src: str) -> Row | None:
    return store.one(f"SELECT * FROM {src} WHERE uuid = ? AND user_id = ?", uuid, user_id)


def folder_name_taken(
    store: Store, parent_uuid: str, name: str, exclude: str | None = None, src: str = "folders"
) -> bool:
    return bool(
        store.scalar(
            f"SELECT 1 FROM {src} WHERE parent_uuid = ? AND plain_name = ? AND {LIVE_FOLDER}"
            " AND uuid != ?",
            parent_uuid,
            name,
            exclude or "",
        )
    )


def subtree_folder_ids(store: Store, root_id: int) -> list[int]:
    rows = store.all(
        "WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL"
        " SELECT f.id FROM folders f JOIN sub ON f.parent_id = sub.id) SELECT id FROM sub",
        root_id,
    )
    return [row["id"] for row in rows]


def list_child_folders(
    store: Store, user_id: int, parent: str, limit: int, offset: int, order: str, src: str
) -> list[Row]:
    return store.all(
        f"SELECT * FROM {src} WHERE parent_uuid = ? AND user_id = ? AND {LIVE_FOLDER} "
        f"{order} LIMIT ? OFFSET ?",
        parent,
        user_id,
        limit,
        offset,
    )


def list_child_files(
    store: Store, user_id: int, parent: str, limit: int, offset: int, order: str, src: str
) -> list[Row]:
    return store.all(
        f"SELECT * FROM {src} WHERE folder_uuid = ? AND user_id = ? AND status = 'EXISTS' "
        f"{order} LIMIT ? OFFSET ?",
        parent,
        user_id,
        limit,
        offset,
    )


# --- create ----------------------------------------------------------------------------------


def _insert_folder(store: Store, user: Row, parent: Row, spec: dict[str, Any]) -> Row:
    now = now_iso()
    creation = parse_time(spec.get("creationTime"), "creationTime") or now
    modification = parse_time(spec.get("modificationTime"), "modificationTime") or now
    folder_uuid = str(uuidlib.uuid4())
    store.conn.execute(
        "INSERT INTO folders (uuid, user_id, parent_id, parent_uuid, plain_name, created_at,"
        " updated_at, creation_time, modification_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            folder_uuid,
            user["id"],
            parent["id"],
            parent["uuid"],
            spec["plainName"],
            now,
            now,
            creation,
            modification,
        ),
    )
    row = store.one("SELECT * FROM folders WHERE uuid = ?", folder_uuid)
    assert row is not None
    return row


async def create_folder(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    body = await json_body(request)
    if "folders" in body:
        return _create_bulk(store, user, body, emu.lagged("folders"))
    parent_uuid = body.get("parentFolderUuid")
    if not is_uuid(parent_uuid):
        raise bad_request(["parentFolderUuid must be a UUID"])
    if not valid_folder_name(body.get("plainName")):
        raise bad_request("Invalid folder name")
    # The parent check reads a replica: a parent created a moment ago may not be there yet.
    parent = live_folder(store, user["id"], parent_uuid.lower(), emu.lagged("folders"))
    if parent is None:
        raise not_found("Parent folder does not exist")
    # The name check reads a replica too. What it misses, the primary's unique index
    # folders_parentuuid_plainname_unique refuses, and the controller's UniqueConstraintFilter
    # maps only the index's dropped predecessor to 409: the answer is a plain 500
    # (docs/protocol.md, "Unique names").
    if folder_name_taken(store, parent["uuid"], body["plainName"], src=emu.lagged("folders")):
        raise conflict("Folder with the same name already exists in this location")
    with store.transaction():
        if folder_name_taken(store, parent["uuid"], body["plainName"]):
            raise ApiError(500, {"statusCode": 500, "message": "Internal server error"})
        row = _insert_folder(store, user, parent, body)
    return web.json_response(folder_dto(row), status=201)


def _create_bulk(store: Store, user: Row, body: dict[str, Any], src: str) -> web.Response:
    specs = body.get("folders")
    if not isinstance(specs, list) or not 1 <= len(specs) <= 5:
        raise bad_request(["folders must contain between 1 and 5 elements"])
    default_parent = body.get("parentFolderUuid")
    resolved: list[tuple[Row, dict[str, Any]]] = []
    for spec in specs:
        if not isinstance(spec, dict) or not valid_folder_name(spec.get("plainName")):
            raise bad_request("Invalid folder name")
        parent_uuid = spec.get("parentFolderUuid", default_parent)
        if not is_uuid(parent_uuid):
            raise bad_request(["parentFolderUuid must be a UUID"])
        parent = live_folder(store, user["id"], parent_uuid.lower(), src)
        if parent is None:
            raise not_found("Parent folder does not exist")
        resolved.append((parent, spec))
    with store.transaction():
        taken = [
            s["plainName"]
            for p, s in resolved
            if folder_name_taken(store, p["uuid"], s["plainName"])
        ]
        names = [(p["uuid"], s["plainName"]) for p, s in resolved]
        duplicates = [n for i, (pu, n) in enumerate(names) if (pu, n) in names[:i]]
        if taken or duplicates:
            raise ApiError(
                409,
                {
                    "statusCode": 409,
                    "message": "Folders already exist",
                    "error": "Conflict",
                    "existentFolders": taken + duplicates,
                },
            )
        created = [_insert_folder(store, user, parent, spec) for parent, spec in resolved]
    return web.json_response({"created": [folder_dto(row) for row in created]}, status=201)


# --- listing ---------------------------------------------------------------------------------


async def list_folders(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    parent = path_uuid(request)
    limit, offset = limit_offset(request)
    order = order_clause(sort_order(request, FOLDER_SORTS))
    emu = emulator_of(request)
    rows = list_child_folders(
        emu.store, user["id"], parent, limit, offset, order, emu.lagged("folders")
    )
    # A parent that does not exist simply has no children (§7.2).
    return web.json_response({"folders": [folder_dto(row) for row in rows]})


async def list_files(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    parent = path_uuid(request)
    limit, offset = limit_offset(request)
    order = order_clause(sort_order(request, FILE_SORTS))
    emu = emulator_of(request)
    rows = list_child_files(
        emu.store, user["id"], parent, limit, offset, order, emu.lagged("files")
    )
    return web.json_response({"files": [file_dto(row) for row in rows]})


async def folder_content(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    uuid = path_uuid(request)
    limit, offset = limit_offset(request, required=False)
    folders_src, files_src = emu.lagged("folders"), emu.lagged("files")
    folder = folder_by_uuid(store, user["id"], uuid, folders_src)
    if folder is None:
        raise not_found("Folder not found")
    order = order_clause(None)
    children = list_child_folders(store, user["id"], uuid, limit, offset, order, folders_src)
    files = list_child_files(store, user["id"], uuid, limit, offset, order, files_src)
    body = folder_dto(folder) | {
        "children": [folder_dto(row) for row in children],
        "files": [file_dto(row) for row in files],
    }
    return web.json_response(body)


async def files_existence(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    folders_src, files_src = emu.lagged("folders"), emu.lagged("files")
    uuid = path_uuid(request)
    body = await json_body(request)
    criteria = body.get("files")
    if not isinstance(criteria, list):
        raise bad_request(["files must be an array", "files must contain at least 1 elements"])
    if not criteria:
        raise bad_request(["files must contain at least 1 elements"])
    if len(criteria) > 200:
        raise bad_request(["files must contain no more than 200 elements"])
    if any(not isinstance(c, dict) or not isinstance(c.get("plainName"), str) for c in criteria):
        raise bad_request(["files.plainName must be a string"])
    # getFolderByUuid on a replica (checkFilesExistenceInFolder in folder.controller.ts): a
    # folder it does not show is a bare 404 (its "Parent folder not valid!" is unreachable).
    if folder_by_uuid(store, user["id"], uuid, folders_src) is None:
        raise ApiError(404, {"statusCode": 404, "message": "Not Found"})
    found: dict[int, Row] = {}
    for criterion in criteria:
        ftype = criterion.get("type")
        if ftype:  # an empty/absent type matches any extension (§7.3)
            rows = store.all(
                f"SELECT * FROM {files_src} WHERE folder_uuid = ? AND user_id = ?"
                " AND status = 'EXISTS'"
                " AND plain_name = ? AND COALESCE(type, '') = ?",
                uuid,
                user["id"],
                criterion["plainName"],
                str(ftype),
            )
        else:
            rows = store.all(
                f"SELECT * FROM {files_src} WHERE folder_uuid = ? AND user_id = ?"
                " AND status = 'EXISTS'"
                " AND plain_name = ?",
                uuid,
                user["id"],
                criterion["plainName"],
            )
        found.update((row["id"], row) for row in rows)
    rows = [found[key] for key in sorted(found)]
    return web.json_response({"existentFiles": [file_dto(row) for row in rows]}, status=201)


async def folders_existence(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    src = emu.lagged("folders")
    uuid = path_uuid(request)
    body = await json_body(request)
    names = body.get("plainNames")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise bad_request(["plainNames must contain at least 1 elements"])
    if len(names) > 200:
        raise bad_request(["plainNames must contain no more than 200 elements"])
    # searchFoldersInFolder (folder.usecase.ts) looks the folder up on a replica and answers
    # 400 when it does not show it, or when it is trashed.
    parent = folder_by_uuid(store, user["id"], uuid, src)
    if parent is None or parent["deleted"] or parent["removed"]:
        raise bad_request("Parent folder not valid")
    marks = ",".join("?" * len(names))
    rows = store.all(
        f"SELECT * FROM {src} WHERE parent_uuid = ? AND user_id = ? AND {LIVE_FOLDER}"
        f" AND plain_name IN ({marks}) ORDER BY id",
        uuid,
        user["id"],
        *names,
    )
    return web.json_response({"existentFolders": [folder_dto(row) for row in rows]}, status=201)


# --- meta, rename, move, delete --------------------------------------------------------------


async def get_meta(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    folder = folder_by_uuid(emu.store, user["id"], path_uuid(request), emu.lagged("folders"))
    if folder is None:
        raise not_found("Folder not found")
    return web.json_response(folder_dto(folder))


async def rename(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    uuid = path_uuid(request)
    body = await json_body(request)
    name = body.get("plainName")
    if not valid_folder_name(name):
        raise bad_request("Invalid folder name")
    # The lookup reads a replica (updateFolderMetaData in folder.usecase.ts).
    folder = store.folder(user["id"], uuid)
    if folder is None or folder_by_uuid(store, user["id"], uuid, emu.lagged("folders")) is None:
        raise not_found("Folder not found")
    if folder["removed"]:
        raise drive_error(422, "Folder is removed")
    with store.transaction() as conn:
        if folder["parent_uuid"] and folder_name_taken(store, folder["parent_uuid"], name, uuid):
            raise conflict("A folder with this name already exists in this location")
        now = now_iso()
        conn.execute(
            "UPDATE folders SET plain_name = ?, updated_at = ?, modification_time = ? WHERE id = ?",
            (name, now, now, folder["id"]),
        )
    row = store.folder(user["id"], uuid)
    assert row is not None
    return web.json_response(folder_dto(row))


async def move(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    uuid = path_uuid(request)
    body = await json_body(request)
    destination = destination_folder(body)
    name = body.get("name")
    if name is not None and not valid_folder_name(name):
        raise bad_request("Invalid folder name")
    # Both lookups read a replica (moveFolder and getFolderByUuid in folder.usecase.ts): a
    # folder or a destination created a moment ago is 404.
    folder = store.folder(user["id"], uuid)
    if folder is None or folder_by_uuid(store, user["id"], uuid, emu.lagged("folders")) is None:
        raise not_found("Folder does not exist")
    if folder["parent_uuid"] is None or folder["removed"]:
        raise drive_error(422, "Folder can not be moved")
    target = live_folder(store, user["id"], destination, emu.lagged("folders"))
    if target is None:
        raise not_found("Destination folder does not exist")
    # Moving a folder under itself would detach a cycle from the tree; refuse it.
    if target["id"] in subtree_folder_ids(store, folder["id"]):
        raise drive_error(422, "Folder can not be moved into itself")
    new_name = folder["plain_name"] if name is None else name
    # As for files: the name lookup (findByNameAndParentUuid) reads a replica, which may
    # still show the folder itself under the name after we moved it away a moment ago.
    shown_there = store.one(
        f"SELECT 1 FROM {emu.lagged('folders')} WHERE uuid = ? AND parent_uuid = ?"
        " AND plain_name = ? AND NOT deleted AND NOT removed",
        uuid,
        destination,
        new_name,
    )
    if shown_there or (
        folder["parent_uuid"] == destination
        and folder["plain_name"] == new_name
        and not folder["deleted"]
    ):
        raise conflict(f"Folder {uuid} was already moved to that location")
    with store.transaction() as conn:
        # The conflict check reads a replica: a folder moved away a moment ago still counts.
        if folder_name_taken(
            store, destination, new_name, uuid, emu.lagged("folders")
        ) or folder_name_taken(store, destination, new_name, uuid):
            raise conflict("A folder with the same name already exists in destination folder")
        now = now_iso()
        # Moving a trashed folder restores it, like files (§7.4).
        conn.execute(
            "UPDATE folders SET parent_id = ?, parent_uuid = ?, plain_name = ?, deleted = 0,"
            " deleted_at = NULL, updated_at = ? WHERE id = ?",
            (target["id"], destination, new_name, now, folder["id"]),
        )
    row = store.folder(user["id"], uuid)
    assert row is not None
    return web.json_response(folder_dto(row))


def remove_subtree(store: Store, folder_id: int) -> None:
    """Permanent delete: every folder below is removed, every file DELETED with its object.

    Callers hold a transaction."""
    now = now_iso()
    ids = subtree_folder_ids(store, folder_id)
    marks = ",".join("?" * len(ids))
    store.conn.execute(
        f"UPDATE folders SET removed = 1, removed_at = ?, updated_at = ? WHERE id IN ({marks})",
        (now, now, *ids),
    )
    rows = store.all(
        f"SELECT id, file_id FROM files WHERE folder_id IN ({marks}) AND status != 'DELETED'", *ids
    )
    for row in rows:
        store.delete_entry(row["file_id"])
    store.conn.execute(
        f"UPDATE files SET status = 'DELETED', removed_at = ?, updated_at = ?"
        f" WHERE folder_id IN ({marks}) AND status != 'DELETED'",
        (now, now, *ids),
    )


async def delete(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    uuid = path_uuid(request)
    # Looked up on a replica: a folder created a moment ago is "not found" (and stays).
    seen = folder_by_uuid(store, user["id"], uuid, emu.lagged("folders"))
    folder = store.folder(user["id"], uuid)
    if seen is None or seen["removed"] or folder is None or folder["removed"]:
        raise not_found("Folder not found")
    if folder["parent_uuid"] is None:
        raise drive_error(406, "Cannot delete root folder")
    with store.transaction():
        remove_subtree(store, folder["id"])
    return web.Response(status=204)


async def meta_by_path(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    path = request.query.get("path")
    if path is None:
        raise bad_request(["path must be a string"])
    parts = [p for p in path.strip("/").split("/") if p]
    folder = resolve_folder_path(emu.store, user, parts, emu.lagged("folders"))
    if folder is None:
        raise not_found("Folder not found")
    return web.json_response(folder_row_snake(folder))


def resolve_folder_path(
    store: Store, user: Row, parts: list[str], src: str = "folders"
) -> Row | None:
    folder = store.folder(user["id"], user["root_folder_uuid"])
    for part in parts:
        if folder is None:
            return None
        folder = store.one(
            f"SELECT * FROM {src} WHERE parent_uuid = ? AND plain_name = ? AND {LIVE_FOLDER}",
            folder["uuid"],
            part,
        )
    return folder


def add_routes(add: Any) -> None:
    add("POST", "/folders", create_folder)
    add("GET", "/folders/meta", meta_by_path)
    add("GET", "/folders/content/{uuid}/folders", list_folders)
    add("GET", "/folders/content/{uuid}/files", list_files)
    add("POST", "/folders/content/{uuid}/files/existence", files_existence)
    add("POST", "/folders/content/{uuid}/folders/existence", folders_existence)
    add("GET", "/folders/content/{uuid}", folder_content)
    add("GET", "/folders/{uuid}/meta", get_meta)
    add("PUT", "/folders/{uuid}/meta", rename)
    add("PATCH", "/folders/{uuid}", move)
    add("DELETE", "/folders/{uuid}", delete)
