"""Network (bridge) API: upload start/finish and file info (protocol §3, §5.1, §5.2, §6).

The bridge never sees keys or plaintext; it checks sizes, quota and — stricter than needed but
useful to catch client bugs — that the shard hash is ripemd160(sha256(stored bytes)).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import secrets
import shutil
import uuid as uuidlib
from pathlib import Path
from typing import Any

from aiohttp import web

from internxtfs.internxt.crypto import ShardHasher, network_password

from .context import emulator_of
from .dto import now_iso
from .errors import network_error
from .objects import presigned_url
from .store import Row, Store
from .validation import HEX24, HEX64, is_uuid

log = logging.getLogger(__name__)

MULTIPART_MIN_TOTAL = 104857600  # 100 MiB
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's rule for every part but the last
MAX_PARTS = 10000


def bridge_user(request: web.Request) -> Row:
    """HTTP Basic: bridgeUser + sha256hex(userId) (§3)."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise network_error(401, "No authentication strategy detected")
    try:
        username, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise network_error(401, "Invalid email or password") from exc
    user = emulator_of(request).store.one("SELECT * FROM users WHERE bridge_user = ?", username)
    if user is None or not hmac.compare_digest(network_password(user["user_id_str"]), password):
        raise network_error(401, "Invalid email or password")
    return user


def owned_bucket(request: web.Request, user: Row) -> str:
    bucket = request.match_info["bucket"]
    if not HEX24.match(bucket):
        raise network_error(400, "Bucket id is malformed")
    if bucket != user["bucket"]:
        owner = emulator_of(request).store.scalar("SELECT 1 FROM users WHERE bucket = ?", bucket)
        raise network_error(403 if owner else 404, "Forbidden" if owner else "Bucket not found")
    return bucket


async def network_json(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise network_error(400, "Invalid JSON body") from exc
    if not isinstance(body, dict):
        raise network_error(400, "Invalid JSON body")
    return body


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_quota(store: Store, user: Row, extra: int) -> None:
    # The bridge counts the bytes of its own bucket entries (``totalUsedSpaceBytes``), not the
    # drive's files: an object no drive entry points at still takes space until deleted.
    # Backups and mail share the quota (user.backup_usage, see users.py).
    used = store.network_usage(user["id"]) + int(user.get("backup_usage") or 0)
    if used + extra > user["quota"]:
        raise network_error(420, "Max space used")


async def start_upload(request: web.Request) -> web.Response:
    emu = emulator_of(request)
    store = emu.store
    user = bridge_user(request)
    bucket = owned_bucket(request, user)
    raw_parts = request.query.get("multiparts", "1")
    if not raw_parts.isdigit() or not 1 <= int(raw_parts) <= MAX_PARTS:
        raise network_error(400, "Invalid multiparts value")
    parts = int(raw_parts)
    body = await network_json(request)
    uploads = body.get("uploads")
    if not isinstance(uploads, list) or not uploads:
        raise network_error(400, "Missing uploads")
    if not all(isinstance(u, dict) and _is_count(u.get("index")) for u in uploads):
        raise network_error(400, "Invalid upload indexes")
    if not all(_is_count(u.get("size")) for u in uploads):
        raise network_error(400, "Invalid size")
    if len({u["index"] for u in uploads}) != len(uploads):
        raise network_error(400, "Invalid upload indexes")
    if parts > 1 and any(u["size"] < MULTIPART_MIN_TOTAL for u in uploads):
        raise network_error(400, "Multipart is not allowed for files smaller than 100MB")
    _check_quota(store, user, sum(u["size"] for u in uploads))
    answer = []
    now = now_iso()
    with store.transaction() as conn:
        for upload in uploads:
            name = str(uuidlib.uuid4())
            upload_id = secrets.token_hex(16) if parts > 1 else None
            conn.execute(
                "INSERT INTO uploads (uuid, user_id, bucket, size, parts, upload_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, user["id"], bucket, upload["size"], parts, upload_id, now),
            )
            if upload_id is None:
                item = {
                    "index": upload["index"],
                    "uuid": name,
                    "url": presigned_url(emu, request, "PUT", name),
                    "urls": None,
                }
            else:
                urls = [
                    presigned_url(emu, request, "PUT", name, part, upload_id)
                    for part in range(1, parts + 1)
                ]
                item = {
                    "index": upload["index"],
                    "uuid": name,
                    "url": None,
                    "urls": urls,
                    "UploadId": upload_id,
                }
            answer.append(item)
    return web.json_response({"uploads": answer})


def _strip_quotes(etag: Any) -> str:
    return str(etag).strip().strip('"') if etag is not None else ""


def _validate_parts(store: Store, upload: Row, shard: dict[str, Any]) -> list[int]:
    """The part numbers to assemble, in order; raises on any S3-style inconsistency."""
    recorded = {
        row["part_number"]: row
        for row in store.all("SELECT * FROM upload_parts WHERE upload_uuid = ?", upload["uuid"])
    }
    multipart = upload["parts"] > 1
    if not multipart:
        if "parts" in shard:
            raise network_error(400, "Upload is not multipart: UploadId and parts not expected")
        if 0 not in recorded:
            raise network_error(409, "Missing uploads to complete the upload")
        return [0]
    if "parts" not in shard:
        raise network_error(400, "Multipart upload requires UploadId and parts")
    if shard["UploadId"] != upload["upload_id"]:
        raise network_error(400, "Invalid UploadId")
    given = shard["parts"]
    if not isinstance(given, list) or not given:
        raise network_error(400, "Invalid parts")
    numbers = []
    for item in given:
        if not isinstance(item, dict) or not isinstance(item.get("PartNumber"), int):
            raise network_error(400, "Invalid parts")
        numbers.append(item["PartNumber"])
    if numbers != list(range(1, upload["parts"] + 1)):
        raise network_error(400, "Invalid parts: every part 1..N is required, in order")
    for item in given:
        row = recorded.get(item["PartNumber"])
        if row is None:
            raise network_error(409, "Missing uploads to complete the upload")
        if _strip_quotes(item.get("ETag")) != row["etag"]:
            raise network_error(400, f"ETag of part {item['PartNumber']} does not match")
    for number in numbers[:-1]:
        if recorded[number]["size"] < MIN_PART_SIZE:
            raise network_error(400, f"Part {number} is smaller than the 5 MiB minimum")
    return numbers


HASH_CHUNK = 8 * 1024 * 1024


def _hash_parts(parts: list[Path]) -> str:
    """The shard hash of the parts' concatenation, read back from the disk.

    The bridge itself does not hash at finish: it records the client's hash once the storage
    node says it holds the object (``completeUpload`` in ``lib/core/buckets/usecase.ts`` of
    internxt/bridge). The emulator checks it, to catch a client that hashes wrongly; it runs
    in a worker thread (the event loop serves every other request) and is all the finish
    costs: the parts are then adopted as they are (:func:`_adopt`), not copied into one file
    (which cost 1.8 s of the emulator's CPU per 512 MiB, inside every client's "until stored").
    """
    hasher = ShardHasher()
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    for part in parts:
        with part.open("rb", buffering=0) as source:
            while n := source.readinto(buffer):
                hasher.update(view[:n])
    return hasher.hexdigest()


def _adopt(parts: list[Path], target: Path) -> None:
    """Make the parts the object ``target``: the only part becomes the file, several become a
    folder of them in order (``store.object_pieces``), renamed into place whole."""
    if len(parts) == 1:
        parts[0].replace(target)
        return
    temp = target.with_suffix(".tmp")
    temp.mkdir()
    for number, part in enumerate(parts, 1):
        part.replace(temp / f"{number:05d}")
    temp.replace(target)


async def finish_upload(request: web.Request) -> web.Response:
    emu = emulator_of(request)
    store = emu.store
    user = bridge_user(request)
    bucket = owned_bucket(request, user)
    body = await network_json(request)
    index = body.get("index")
    if not isinstance(index, str) or not HEX64.match(index):
        raise network_error(400, "Invalid index")
    shards = body.get("shards")
    if not isinstance(shards, list) or len(shards) != 1 or not isinstance(shards[0], dict):
        raise network_error(400, "Exactly one shard is expected")
    shard = shards[0]
    if not is_uuid(shard.get("uuid")):
        raise network_error(400, "Invalid shard uuid")
    if not isinstance(shard.get("hash"), str) or not shard["hash"]:
        raise network_error(400, "Missing shard hash")
    if ("UploadId" in shard) != ("parts" in shard):
        raise network_error(400, "UploadId and parts must be given together")
    upload = store.one(
        "SELECT * FROM uploads WHERE uuid = ? AND user_id = ? AND bucket = ? AND state = 'open'",
        shard["uuid"].lower(),
        user["id"],
        bucket,
    )
    if upload is None:
        raise network_error(409, "Missing uploads to complete the upload")
    numbers = _validate_parts(store, upload, shard)
    stored = store.scalar(
        f"SELECT COALESCE(SUM(size), 0) FROM upload_parts WHERE upload_uuid = ?"
        f" AND part_number IN ({','.join('?' * len(numbers))})",
        upload["uuid"],
        *numbers,
    )
    if stored != upload["size"]:
        raise network_error(409, "Size does not match")
    _check_quota(store, user, upload["size"])
    # Claim the upload so a concurrent finish or PUT cannot interleave with the assembly.
    with store.transaction() as conn:
        conn.execute("UPDATE uploads SET state = 'finishing' WHERE uuid = ?", (upload["uuid"],))
    entry_id = secrets.token_hex(12)
    target = store.object_path(entry_id)
    directory = store.upload_dir(upload["uuid"])
    sources = [directory / f"part-{n}" for n in numbers]
    try:
        digest = await asyncio.to_thread(_hash_parts, sources)
    except BaseException:
        with store.transaction() as conn:
            conn.execute("UPDATE uploads SET state = 'open' WHERE uuid = ?", (upload["uuid"],))
        raise
    if digest != shard["hash"].lower():
        # The stored bytes are not what the client hashed: drop them; the client may PUT again.
        shutil.rmtree(directory, ignore_errors=True)
        with store.transaction() as conn:
            conn.execute("UPDATE uploads SET state = 'open' WHERE uuid = ?", (upload["uuid"],))
            conn.execute("DELETE FROM upload_parts WHERE upload_uuid = ?", (upload["uuid"],))
        log.info(
            "finish of %s refused: hash %s, stored bytes hash to %s",
            upload["uuid"],
            shard["hash"],
            digest,
        )
        raise network_error(409, "Hash does not match the uploaded content")
    _adopt(sources, target)
    created = now_iso()
    hmac_value = body.get("hmac")
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO entries (id, name, bucket, user_id, idx, size, hash, hmac, mimetype,"
            " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry_id,
                upload["uuid"],
                bucket,
                user["id"],
                index.lower(),
                upload["size"],
                digest,
                json.dumps(hmac_value) if hmac_value is not None else None,
                "application/octet-stream",
                created,
            ),
        )
        conn.execute("DELETE FROM uploads WHERE uuid = ?", (upload["uuid"],))
        conn.execute("DELETE FROM upload_parts WHERE upload_uuid = ?", (upload["uuid"],))
    shutil.rmtree(directory, ignore_errors=True)
    if emu.knobs.finish_ms_per_part > 0:
        # Completing a multipart upload takes longer the more parts it has (the object store
        # assembles them); the object exists already, only the answer is late.
        await asyncio.sleep(emu.knobs.finish_ms_per_part * len(numbers) / 1000)
    return web.json_response(
        {
            "id": entry_id,
            "index": index.lower(),
            "bucket": bucket,
            "name": upload["uuid"],
            "mimetype": "application/octet-stream",
            "created": created,
            "version": 2,
            "size": upload["size"],
        }
    )


def _path_ids(request: web.Request) -> tuple[str, str]:
    """The bucket and file ids of a ``/buckets/{bucket}/files/{file}`` path, checked (400)."""
    bucket, file_id = request.match_info["bucket"], request.match_info["file"]
    if not HEX24.match(bucket):
        raise network_error(400, "Bucket id is malformed")
    if not HEX24.match(file_id):
        raise network_error(400, "File id is malformed")
    return bucket, file_id


def _bucket_entry(request: web.Request) -> Row:
    """The bucket entry named by the path, for its authenticated owner (404/403 otherwise)."""
    user = bridge_user(request)
    bucket, file_id = _path_ids(request)
    owned_bucket(request, user)
    store = emulator_of(request).store
    entry = store.one("SELECT * FROM entries WHERE id = ? AND bucket = ?", file_id, bucket)
    if entry is None:
        raise network_error(404, f"Bucket entry {file_id} not found")
    return entry


async def file_info(request: web.Request) -> web.Response:
    emu = emulator_of(request)
    entry = _bucket_entry(request)
    info = {
        "id": entry["id"],
        "bucket": entry["bucket"],
        "index": entry["idx"],
        "size": entry["size"],
        "version": entry.get("version", 2),
        "created": entry["created"],
        "mimetype": entry["mimetype"],
        "filename": entry["name"],
    }
    if info["version"] != 2:
        # bridge lib/core/buckets/usecase.ts ``getFileInfo``: only version 2 entries get
        # download links; older ones are answered with their frame and no ``shards``.
        return web.json_response(info | {"frame": f"{entry['id'][:12]}{'0' * 12}"})
    url = presigned_url(emu, request, "GET", entry["name"])
    shard = {"index": 0, "size": entry["size"], "hash": entry["hash"], "url": url}
    # One entry per mirror of the shard (knob ``info_mirrors``); clients take the first.
    return web.json_response(info | {"shards": [shard] * max(1, emu.knobs.info_mirrors)})


async def delete_file(request: web.Request) -> web.Response:
    """``DELETE /buckets/{bucket}/files/{file}``: drop the object whatever points at it (the
    bridge knows nothing of drive entries); its bytes stop counting. 204 with no body.

    The bridge's order and wording: ids validated (400) before authentication (401); then
    ``Bucket  not found`` (404), ``Unauthorized`` (403, another user's bucket), ``Bucket
    entry  not found`` (404) — its messages leave the ids out, hence the double spaces. (It
    looks the entry up by id alone; here it must be in that bucket, which no client notices.)
    """
    bucket, file_id = _path_ids(request)
    user = bridge_user(request)
    store = emulator_of(request).store
    owner = store.one("SELECT id FROM users WHERE bucket = ?", bucket)
    if owner is None:
        raise network_error(404, "Bucket  not found")
    if owner["id"] != user["id"]:
        raise network_error(403, "Unauthorized")
    entry = store.one("SELECT id FROM entries WHERE id = ? AND bucket = ?", file_id, bucket)
    if entry is None:
        raise network_error(404, "Bucket entry  not found")
    with store.transaction():
        store.delete_entry(entry["id"])
    return web.Response(status=204)


def add_routes(add: Any) -> None:
    add("POST", "/v2/buckets/{bucket}/files/start", start_upload)
    add("POST", "/v2/buckets/{bucket}/files/finish", finish_upload)
    add("GET", "/buckets/{bucket}/files/{file}/info", file_info)
    add("DELETE", "/buckets/{bucket}/files/{file}", delete_file)
