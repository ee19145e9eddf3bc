"""Trash endpoints (protocol §7.4): soft delete, permanent delete from trash, listing."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from . import tokens
from .context import emulator_of
from .dto import file_dto, folder_dto, now_iso
from .errors import bad_request
from .file_routes import delete_file_row
from .folder_routes import remove_subtree
from .store import Row, Store
from .validation import is_uuid, json_body, limit_offset

log = logging.getLogger(__name__)

MAX_ITEMS = 50


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise bad_request(["items must contain at least 1 elements"])
    if len(items) > MAX_ITEMS:
        # drive-server-wip src/modules/trash/dto/controllers/move-items-to-trash.dto.ts:
        # ``@ArrayMaxSize(50)``.
        raise bad_request([f"items must contain no more than {MAX_ITEMS} elements"])
    for item in items:
        if not isinstance(item, dict) or item.get("type") not in ("file", "folder"):
            raise bad_request("Invalid item: type must be file or folder")
        if not is_uuid(item.get("uuid")) and not isinstance(item.get("id"), int | str):
            raise bad_request("Invalid item: uuid or id is required")
    return items


def _lookup(store: Store, user: Row, item: dict[str, Any], table: str | None = None) -> Row | None:
    table = table or ("files" if item["type"] == "file" else "folders")
    if is_uuid(item.get("uuid")):
        return store.one(
            f"SELECT * FROM {table} WHERE uuid = ? AND user_id = ?",
            item["uuid"].lower(),
            user["id"],
        )
    return store.one(f"SELECT * FROM {table} WHERE id = ? AND user_id = ?", item["id"], user["id"])


async def add_to_trash(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    emu = emulator_of(request)
    store = emu.store
    items = _items(await json_body(request))
    now = now_iso()
    with store.transaction() as conn:
        for item in items:
            row = _lookup(store, user, item)
            # Folders are looked up on a replica first (moveFoldersToTrash in folder.usecase.ts,
            # findUserFoldersByUuid): one created a moment ago is skipped without a word, and
            # stays. Files given by uuid are updated on the primary directly.
            if (
                item["type"] == "folder"
                and _lookup(store, user, item, emu.lagged("folders")) is None
            ):
                continue
            if row is None:
                continue  # already gone: trashing is idempotent
            if item["type"] == "file" and row["status"] == "EXISTS":
                conn.execute(
                    "UPDATE files SET status = 'TRASHED', deleted_at = ?, updated_at = ?"
                    " WHERE id = ?",
                    (now, now, row["id"]),
                )
            elif item["type"] == "folder":
                if row["parent_uuid"] is None:
                    raise bad_request("Root folder can not be trashed")
                conn.execute(
                    "UPDATE folders SET deleted = 1, deleted_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, row["id"]),
                )
    return web.Response(status=200)


async def delete_from_trash(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    store = emulator_of(request).store
    items = _items(await json_body(request))
    with store.transaction():
        for item in items:
            row = _lookup(store, user, item)
            if row is None:
                continue
            if item["type"] == "file" and row["status"] != "DELETED":
                delete_file_row(store, row)
            elif item["type"] == "folder" and row["parent_uuid"] is not None:
                remove_subtree(store, row["id"])
    return web.Response(status=202)


async def empty_trash(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    store = emulator_of(request).store
    with store.transaction():
        for row in store.all(
            "SELECT * FROM files WHERE user_id = ? AND status = 'TRASHED'", user["id"]
        ):
            delete_file_row(store, row)
        for row in store.all(
            "SELECT * FROM folders WHERE user_id = ? AND deleted = 1 AND removed = 0", user["id"]
        ):
            remove_subtree(store, row["id"])
    return web.Response(status=200)


async def list_trash(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    store = emulator_of(request).store
    limit, offset = limit_offset(request)
    kind = request.query.get("type")
    if kind not in ("files", "folders"):
        raise bad_request(["type must be one of the following values: files, folders"])
    # root=true: only items whose parent is not itself in the trash (what the trash UI shows).
    only_roots = request.query.get("root") == "true"
    if kind == "files":
        sql = "SELECT f.* FROM files f WHERE f.user_id = ? AND f.status = 'TRASHED'"
        if only_roots:
            sql += (
                " AND NOT EXISTS"
                " (SELECT 1 FROM folders p WHERE p.id = f.folder_id AND p.deleted = 1)"
            )
        rows = store.all(sql + " ORDER BY f.id LIMIT ? OFFSET ?", user["id"], limit, offset)
        return web.json_response({"result": [file_dto(row) for row in rows]})
    sql = "SELECT f.* FROM folders f WHERE f.user_id = ? AND f.deleted = 1 AND f.removed = 0"
    if only_roots:
        sql += (
            " AND NOT EXISTS (SELECT 1 FROM folders p WHERE p.id = f.parent_id AND p.deleted = 1)"
        )
    rows = store.all(sql + " ORDER BY f.id LIMIT ? OFFSET ?", user["id"], limit, offset)
    return web.json_response({"result": [folder_dto(row) for row in rows]})


def add_routes(add: Any) -> None:
    add("POST", "/storage/trash/add", add_to_trash)
    add("DELETE", "/storage/trash", delete_from_trash)
    add("DELETE", "/storage/trash/all", empty_trash)
    add("GET", "/storage/trash/paginated", list_trash)
