"""The object store behind presigned URLs (S3-like): PUT parts, ranged GET, both streaming.

URLs look like ``<origin>/objects/<upload uuid>?sig=…`` (multipart parts add ``partNumber`` and
``uploadId``); the signature is an HMAC over method, object and part, keyed by a per-data-dir
secret, so URLs stay valid across a restart and cannot be forged by tweaking the query.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import uuid as uuidlib
import zlib
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from aiohttp import web

from .context import Emulator, emulator_of
from .errors import network_error
from .faults import Pacer, abort_connection, should_reset

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _signature(emu: Emulator, method: str, name: str, part: str = "", upload_id: str = "") -> str:
    message = f"{method}\n{name}\n{part}\n{upload_id}".encode()
    return hmac.new(emu.url_secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def presigned_url(
    emu: Emulator,
    request: web.Request,
    method: str,
    name: str,
    part: int | None = None,
    upload_id: str | None = None,
) -> str:
    query: dict[str, str] = {}
    if part is not None and upload_id is not None:
        query = {"partNumber": str(part), "uploadId": upload_id}
    query["sig"] = _signature(emu, method, name, query.get("partNumber", ""), upload_id or "")
    return f"{emu.base_url(request)}/objects/{name}?{urlencode(query)}"


def _check_signature(request: web.Request, method: str, name: str) -> None:
    emu = emulator_of(request)
    part = request.query.get("partNumber", "")
    upload_id = request.query.get("uploadId", "")
    expected = _signature(emu, method, name, part, upload_id)
    if not hmac.compare_digest(expected, request.query.get("sig", "")):
        raise network_error(403, "SignatureDoesNotMatch")


async def put_object(request: web.Request) -> web.StreamResponse:
    emu = emulator_of(request)
    store = emu.store
    name = request.match_info["name"]
    _check_signature(request, "PUT", name)
    upload = store.one("SELECT * FROM uploads WHERE uuid = ? AND state = 'open'", name)
    if upload is None:
        raise network_error(404, "NoSuchUpload")
    part = 0
    if upload["parts"] > 1:
        try:
            part = int(request.query["partNumber"])
        except (KeyError, ValueError):
            part = -1
        if not 1 <= part <= upload["parts"] or request.query.get("uploadId") != upload["upload_id"]:
            raise network_error(400, "InvalidPart")
    directory = store.upload_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f"part-{part}.{uuidlib.uuid4().hex}.tmp"
    reset = should_reset(request)
    # Cut after roughly half the declared body (at least one chunk is read first).
    cut_at = (request.content_length or 0) // 2
    pacer = Pacer(emu.knobs.bandwidth)
    # S3 answers a part's MD5 as its ETag; clients only hand it back at finish, where it is
    # compared. A CRC-32 and the length, as 32 hex digits like an MD5, serve the same: the same
    # bytes give the same tag, a part's tag given for another part is refused. An MD5 cost this
    # one event-loop thread 1.15 s per 512 MiB received, beside every other request.
    crc = 0
    received = 0
    try:
        with temp.open("wb") as out:
            async for chunk in request.content.iter_chunked(pacer.chunk_size):
                out.write(chunk)
                crc = zlib.crc32(chunk, crc)
                received += len(chunk)
                if reset and received >= cut_at:
                    log.info("resetting PUT of %s after %d bytes", name, received)
                    abort_connection(request)
                    return web.Response(status=500)
                await pacer.pace(len(chunk))
        if reset:  # empty body: nothing to cut in the middle of, so cut at the end
            abort_connection(request)
            return web.Response(status=500)
        etag = f"{crc:08x}{received:024x}"
        # The upload may have been finished or abandoned while the body was streaming. Checked
        # before the part takes its place, with no await in between: a finish under way has
        # hashed the parts it will adopt (network_routes._adopt), and a part swapped in now
        # would be stored unchecked.
        if store.one("SELECT 1 FROM uploads WHERE uuid = ? AND state = 'open'", name) is None:
            raise network_error(404, "NoSuchUpload")
        temp.replace(directory / f"part-{part}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO upload_parts (upload_uuid, part_number, size, etag)"
            " VALUES (?, ?, ?, ?)",
            (name, part, received, etag),
        )
    return web.Response(status=200, headers={"ETag": f'"{etag}"'})


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) inclusive; None = whole object; "unsatisfiable" for a 416.

    Only a single range is understood; anything else is ignored (RFC 9110 allows that)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first_s, last_s = match.groups()
    if not first_s:  # suffix range: the last N bytes
        length = int(last_s)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        return "unsatisfiable"
    return first, min(last, size - 1)


async def get_object(request: web.Request) -> web.StreamResponse:
    emu = emulator_of(request)
    name = request.match_info["name"]
    _check_signature(request, "GET", name)
    entry = emu.store.one("SELECT * FROM entries WHERE name = ?", name)
    pieces = emu.store.object_pieces(entry["id"]) if entry else None
    if entry is None or pieces is None:
        raise network_error(404, "NoSuchKey")
    size = entry["size"]
    wanted = parse_range(request.headers.get("Range"), size)
    headers: dict[str, Any] = {
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{entry["hash"]}"',
    }
    if wanted == "unsatisfiable":
        return web.Response(status=416, headers=headers | {"Content-Range": f"bytes */{size}"})
    if wanted is None:
        first, last, status = 0, size - 1, 200
    else:
        assert isinstance(wanted, tuple)
        first, last = wanted
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    length = max(0, last - first + 1)
    headers["Content-Length"] = str(length)
    # Opened before the first await: a delete of the object while its body streams (another
    # client's overwrite, an orphan clean-up) must not cut the body. An object store serves a
    # GET begun before a DELETE to its end, as an open file outlives its unlink.
    with _Pieces(pieces, first, last) as source:
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        reset = should_reset(request)
        pacer = Pacer(emu.knobs.bandwidth)
        remaining = length
        while remaining > 0:
            chunk = source.read(min(pacer.chunk_size, remaining))
            if not chunk:
                break
            if reset and remaining - len(chunk) <= length // 2:
                # Send part of the body, then drop the connection without finishing it.
                await response.write(chunk[: max(1, len(chunk) // 2)])
                log.info("resetting GET of %s mid-body", name)
                abort_connection(request)
                return response
            # Pace before writing, so the last byte cannot leave earlier than the cap allows.
            await pacer.pace(len(chunk))
            await response.write(chunk)
            remaining -= len(chunk)
    if reset:  # zero-length body: abort before the end of the response
        abort_connection(request)
        return response
    await response.write_eof()
    return response


class _Pieces:
    """The bytes ``first..last`` (inclusive) of one object's files (``Store.object_pieces``)
    read as one: ``read`` up to n bytes, which stops at the end of a piece rather than join
    two. The pieces the range touches are all opened at once, so that the object deleted
    meanwhile (its folder of parts removed) is still read to the end."""

    def __init__(self, paths: list[Path], first: int, last: int) -> None:
        self._files: list[BinaryIO] = []
        try:
            offset = 0
            for path in paths:
                size = path.stat().st_size
                if size > 0 and offset + size > first and offset <= last:
                    source = path.open("rb")
                    self._files.append(source)
                    source.seek(max(0, first - offset))
                offset += size
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> _Pieces:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for source in self._files:
            source.close()
        self._files.clear()

    def read(self, n: int) -> bytes:
        while self._files:
            chunk = self._files[0].read(n)
            if chunk:
                return chunk
            self._files.pop(0).close()
        return b""


def add_routes(app: web.Application) -> None:
    app.router.add_put("/objects/{name}", put_object)
    app.router.add_get("/objects/{name}", get_object, allow_head=False)
