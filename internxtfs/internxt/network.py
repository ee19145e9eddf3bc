"""The network (bucket) API: encrypted upload and download of file content (protocol §3–§6).

Memory stays bounded by ``chunk_size × parallel`` whatever the file size: request bodies are
async iterators that read ``chunk_size`` bytes through the caller's ``read(offset, n)``,
encrypt them at their offset, and hand them to httpx; downloads are decrypted as they stream.

Shard hash (RIPEMD-160 of SHA-256 over the whole ciphertext, in order):

* single part: hashed while the one PUT body streams (the body is produced in order anyway); if
  the PUT is retried the hasher starts over with the regenerated body.
* multipart: parts stream concurrently and out of order, and SHA-256 cannot be fed out of order.
  Buffering finished parts until their turn would cost up to ``parallel × part_size`` bytes, so
  the hash follows a frontier instead (:class:`_OrderedHash`): a part body that produces the
  chunk at the frontier feeds it to the hasher as it goes out, so the hash rides along with the
  lowest part in flight; one extra task produces (read → encrypt) only the chunks at the
  frontier that went out while the frontier was behind them and that no body in flight will
  produce again, and otherwise waits for a body to deliver the frontier. Chunks produced ahead
  of the frontier are kept for it up to ``HASH_STASH`` bytes (the nearest ones first), so
  only what does not fit is read and encrypted twice: without the stash that was about
  ``(parallel - 1) / parallel`` of the file.

In both cases SHA-256 itself runs in a worker thread (:mod:`threadhash`, bodies of at least
``THREAD_HASH`` bytes), fed the chunks in order as they are produced, while the trio thread
encrypts and sends: hashlib releases the GIL, so the hash no longer delays the send.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio
from cachetools import TTLCache

from . import crypto
from . import http as http_module
from .errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    LegacyFileFormat,
    NotFound,
    ProtocolError,
    SourceError,
    Unreachable,
)
from .http import Http, json_body
from .objectget import ObjectGetter
from .retry import RetryPolicy, as_internxt_error, is_retryable
from .threadhash import BackgroundHash
from .upload_starts import UploadStarts

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MULTIPART_THRESHOLD = 100 * MiB  # the network refuses multipart below this (protocol §5.2)
MIN_PART_SIZE = 5 * MiB  # S3 rule for every part but the last
MAX_PARTS = 10000
DEFAULT_PART_SIZE = 30 * MiB
DEFAULT_CHUNK = 1 * MiB
_AES_BLOCK = 16
# Ranges at least this large are decrypted in a worker thread (cryptography releases the GIL),
# so the trio thread keeps serving reads and receiving other ranges meanwhile.
THREAD_DECRYPT = 1 * MiB
OBJECT_GET_THREADS = 16  # object GETs running at once in worker threads (see objectget)
# Single-part bodies at least this long are hashed in a worker thread while they are sent
# (threadhash); a shorter one is hashed inline, where the thread hop would cost more.
THREAD_HASH = 2 * MiB
# Ciphertext chunks of a multipart upload produced ahead of the in-order hash, kept until it
# reaches them instead of read and encrypted again then (_OrderedHash). Four 30 MiB parts in
# flight put up to 90 MiB ahead of the hash; re-encrypting that cost about a tenth of the
# mount's CPU in a 512 MiB upload (bench/RESULTS.md). Bounded: the nearest chunks are kept,
# this much for all the multipart uploads of a client together (several run at once).
HASH_STASH = 64 * MiB

Read = Callable[[int, int], Awaitable[bytes | bytearray]]
# progress(offset, done): of the body (object or part) starting at ``offset``, ``done`` bytes
# were handed to the connection; a retried body starts again at 0.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FileInfo:
    file_id: str
    index: str  # 64 hex chars
    size: int
    hash: str  # shard hash, 40 hex chars
    url: str  # presigned GET URL of the object


# Finishing a multipart upload makes the object store assemble every part before it answers,
# which takes longer the more parts there are: the answer gets the usual read timeout plus this
# much per part (a 100 GiB file in 30 MiB parts: ~3,400 parts, ~6 minutes more).
FINISH_SECONDS_PER_PART = 0.1


def finish_timeouts(parts: int) -> httpx.Timeout:
    base = http_module.DEFAULT_TIMEOUT
    read = (
        (base.read or 60.0)
        + FINISH_SECONDS_PER_PART * max(0, parts - 1)
        + (30.0 if parts > 1 else 0.0)
    )
    return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)


def _first_usable_shard(shards: object, size: int) -> dict[str, Any] | None:
    """The bridge lists one entry per mirror of the shard (docs/protocol.md, "Shards"): take
    the first that has a download URL and a hash and describes the whole object (index 0, the
    object's size), so a multi-shard object is never read as if its first part were all."""
    if not isinstance(shards, list):
        return None
    for shard in shards:
        if not isinstance(shard, dict):
            continue
        url, digest = shard.get("url"), shard.get("hash")
        if not isinstance(url, str) or not url or not isinstance(digest, str) or not digest:
            continue
        if shard.get("index", 0) not in (0, "0") or int(shard.get("size", size)) != size:
            continue
        return shard
    return None


class _FinishLost(Exception):
    """Finish's answer was lost and the retry found the upload consumed: start over."""


class _Stash:
    """Bytes kept ahead of the in-order hash by all the multipart uploads of one client:
    ``HASH_STASH`` bounds them together (the uploader runs several big files at once)."""

    def __init__(self) -> None:
        self.used = 0


class _OrderedHash:
    """The shard hash fed in file order from chunks produced in any order (multipart).

    ``pos`` is the frontier: the bytes before it are hashed. A chunk is taken only when it
    starts exactly at the frontier; every producer cuts chunks on the same grid (``chunk``
    bytes from each part's start), so the frontier stays on it. Every producer encrypts the
    same snapshot at the same offset, so a chunk from any of them is the same ciphertext.
    With a :class:`BackgroundHash`, the hashing itself runs in its worker thread.
    """

    def __init__(
        self,
        size: int,
        part_size: int,
        chunk: int,
        hasher: crypto.ShardHasher | BackgroundHash | None = None,
        stash: int | None = None,
        shared: _Stash | None = None,
    ) -> None:
        self._hasher = hasher if hasher is not None else crypto.ShardHasher()
        self.pos = 0
        # Chunks ahead of the frontier: offset -> ciphertext; ``stash`` bounds them together
        # with those of the client's other multipart uploads (``shared``).
        self._ahead: dict[int, bytes] = {}
        self._ahead_bytes = 0
        self._stash = HASH_STASH if stash is None else stash
        self._shared = shared if shared is not None else _Stash()  # bytes kept, all uploads
        self._draining = 0  # offers feeding stashed chunks (they deliver the frontier)
        self.size = size
        self._part_size = part_size
        self._chunk = chunk
        # Bodies being produced: token -> [next offset it produces, its end].
        self._live: dict[object, list[int]] = {}
        # Per part, the furthest offset any body of it reached: the chunks before it went out.
        self._reached: dict[int, int] = {}
        self._changed = trio.Event()

    def chunk_at(self, pos: int) -> int:
        """Length of the grid chunk starting at ``pos``."""
        part_end = min(self.size, (pos // self._part_size + 1) * self._part_size)
        return min(self._chunk, part_end - pos)

    async def offer(self, pos: int, data: bytes) -> None:
        """Hash ``data`` if it starts at the frontier, then the chunks kept for the frontier
        that follow it; keep it for later if it lies ahead and fits."""
        if not data or pos < self.pos:
            return
        if pos > self.pos:
            self._keep(pos, data)
            return
        self._take(pos)  # kept earlier, produced again now (a retried PUT)
        self._draining += 1
        try:
            await self._feed(pos, data)
            while (nxt := self._take(self.pos)) is not None:
                await self._feed(self.pos, nxt)
        finally:
            self._draining -= 1
            self._wake()

    def _keep(self, pos: int, data: bytes) -> None:
        """Keep a chunk ahead of the frontier, making room by letting go of farther ones."""
        if pos in self._ahead:
            return  # produced again (a retried PUT): the same ciphertext
        while self._shared.used + len(data) > self._stash and self._ahead:
            farthest = max(self._ahead)
            if farthest < pos:
                return  # every kept chunk is nearer: this one waits for the catch-up
            self._take(farthest)
        if self._shared.used + len(data) <= self._stash:
            self._ahead[pos] = data
            self._ahead_bytes += len(data)
            self._shared.used += len(data)

    def _take(self, pos: int) -> bytes | None:
        """The chunk kept at ``pos``, no longer kept (None: none)."""
        data = self._ahead.pop(pos, None)
        if data is not None:
            self._ahead_bytes -= len(data)
            self._shared.used -= len(data)
        return data

    def close(self) -> None:
        """The upload is over (done or failed): let go of what is kept. Idempotent."""
        self._shared.used -= self._ahead_bytes
        self._ahead.clear()
        self._ahead_bytes = 0

    async def _feed(self, pos: int, data: bytes) -> None:
        """Hash ``data``, which starts at the frontier (unless another offer fed it first)."""
        hasher = self._hasher
        if isinstance(hasher, BackgroundHash):
            await hasher.reserve()  # waits while the hash thread lags behind
            if pos != self.pos:  # another producer delivered it meanwhile
                hasher.release()
                return
            hasher.put(data)  # synchronous with the check: chunks queue in file order
        else:
            hasher.update(data)
        self.pos += len(data)
        self._wake()

    def enter(self, token: object, pos: int, end: int) -> None:
        self._live[token] = [pos, end]

    def advance(self, token: object, pos: int) -> None:
        self._live[token][0] = pos
        part = (pos - 1) // self._part_size
        self._reached[part] = max(self._reached.get(part, 0), pos)

    def leave(self, token: object) -> None:
        """Synchronous: called from a body's ``finally``, also when it is closed."""
        if self._live.pop(token, None) is not None:
            self._wake()

    def left_behind(self) -> bool:
        """Whether the chunk at the frontier went out (a body produced it while the frontier
        was behind) and no body in flight will produce it again. Otherwise a body will still
        deliver it: one in flight, or the part's first body, which has not started yet (the
        catch-up must not race ahead into parts not sent yet and encrypt them twice)."""
        pos = self.pos
        if self._draining or pos in self._ahead:
            return False  # an offer is feeding the kept chunks, this one among them
        if self._reached.get(pos // self._part_size, 0) <= pos:
            return False
        return not any(nxt <= pos < end for nxt, end in self._live.values())

    async def changed(self) -> None:
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def hexdigest(self) -> str:
        if self.pos != self.size:  # never send a hash of less than the whole object
            raise AssertionError(f"shard hash covers {self.pos} of {self.size} bytes")
        if isinstance(self._hasher, BackgroundHash):
            return await self._hasher.hexdigest()
        return self._hasher.hexdigest()


class NetworkAPI:
    def __init__(
        self,
        http: Http,
        bridge_user: str,
        user_id: str,
        bucket: str,
        mnemonic: str,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        new_index: Callable[[], bytes] = crypto.new_index,
        chunk_size: int = DEFAULT_CHUNK,
        info_ttl: float = 60.0,
        object_getter: ObjectGetter | None = None,
    ) -> None:
        self._http = http
        self._auth = {"authorization": crypto.network_auth_header(bridge_user, user_id)}
        self.bucket = bucket
        self._mnemonic = mnemonic
        self._seed: bytes | None = None
        self._retry = retry or RetryPolicy()
        self._new_index = new_index
        self.chunk_size = chunk_size
        # Ranged reads of object bodies off the trio thread (see objectget); None: with httpx.
        self._getter = object_getter
        # Their own thread limit: GETs stalled by a slow network must not hold the tokens of
        # trio's default limiter, which the cache's local file I/O waits on.
        self._getter_threads: trio.CapacityLimiter | None = None
        # Presigned URLs expire; a short TTL keeps them fresh, and a 403/404 from the object
        # store drops the entry early (see _object_get).
        self._info: TTLCache[str, FileInfo] = TTLCache(maxsize=1024, ttl=info_ttl, timer=clock)
        self._stash = _Stash()  # HASH_STASH bounds the multipart uploads' stashes together
        self._starts = UploadStarts(
            lambda sizes: self._send_starts(sizes, 1), offline=lambda: self._retry.offline
        )

    # --- keys -------------------------------------------------------------------------------

    def _keys(self, index_hex: str) -> tuple[bytes, bytes]:
        if self._seed is None:  # PBKDF2 with 2048 rounds: once per client, not per file
            self._seed = crypto.bip39_seed(self._mnemonic)
        return crypto.file_key_iv(self._seed, self.bucket, bytes.fromhex(index_hex))

    # --- plumbing ---------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: dict[str, str | int] | None = None,
        expected: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        timeouts: httpx.Timeout | None = None,
    ) -> Any:
        resp = await self._http.send(
            method,
            f"{self._http.network_url}{path}",
            kind="network",
            json=json,
            params=params,
            headers={**self._auth, **(headers or {})},
            expected=expected,
            timeouts=timeouts,
        )
        return json_body(resp)

    def _body(
        self,
        read: Read,
        key: bytes,
        iv: bytes,
        offset: int,
        length: int,
        hasher: crypto.ShardHasher | BackgroundHash | None = None,
        done: list[int] | None = None,
        progress: Progress | None = None,
        ordered: _OrderedHash | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Ciphertext of plaintext ``[offset, offset+length)``, produced chunk by chunk.

        With ``ordered``, each chunk is offered to the in-order shard hash as it is produced;
        close the iterator (``aclose``) when done with it, so the hash stops counting on it.
        """
        chunk = self.chunk_size

        async def gen() -> AsyncGenerator[bytes, None]:
            ctr = crypto.CtrStream(key, iv, offset)
            pos, end = offset, offset + length
            token = object()
            if ordered is not None:
                ordered.enter(token, pos, end)
            try:
                while pos < end:
                    n = min(chunk, end - pos)
                    data = await read(pos, n)
                    if len(data) != n:
                        raise SourceError(f"short read at {pos}: wanted {n} bytes, got {len(data)}")
                    out = ctr.update(data)
                    if isinstance(hasher, BackgroundHash):
                        await hasher.update(out)  # hashed in its thread while this is sent
                    elif hasher is not None:
                        hasher.update(out)
                    if ordered is not None:
                        await ordered.offer(pos, out)
                        ordered.advance(token, pos + n)
                    pos += n
                    if done is not None:
                        done[0] = pos - offset
                    if progress is not None:
                        progress(offset, pos - offset)
                    yield out
            finally:
                if ordered is not None:
                    ordered.leave(token)

        return gen()

    async def _hash_pass(self, read: Read, key: bytes, iv: bytes, size: int) -> str:
        hasher = crypto.ShardHasher()
        async for _ in self._body(read, key, iv, 0, size, hasher):
            await trio.lowlevel.checkpoint()  # let the uploads run between chunks
        return hasher.hexdigest()

    async def _hash_frontier(
        self, read: Read, key: bytes, iv: bytes, ordered: _OrderedHash
    ) -> None:
        """Carry the in-order hash over the chunks no body in flight will produce any more:
        read and encrypt those here, and wait while a body will deliver the next one."""
        ctr: crypto.CtrStream | None = None
        ctr_pos = -1
        while ordered.pos < ordered.size:
            if not ordered.left_behind():
                await ordered.changed()
                continue
            pos = ordered.pos
            n = ordered.chunk_at(pos)
            data = await read(pos, n)
            if len(data) != n:
                raise SourceError(f"short read at {pos}: wanted {n} bytes, got {len(data)}")
            if ordered.pos == pos:  # no body delivered it while we read
                if ctr is None or ctr_pos != pos:
                    ctr = crypto.CtrStream(key, iv, pos)
                await ordered.offer(pos, ctr.update(data))
                ctr_pos = pos + n
            await trio.lowlevel.checkpoint()  # let the uploads run between chunks

    async def _put(self, url: str, body: AsyncIterator[bytes], length: int) -> str:
        """PUT one object or part to a presigned URL; returns its ETag (quotes stripped)."""
        resp = await self._http.send(
            "PUT",
            url,
            kind="object",
            content=body,
            headers={"content-type": "application/octet-stream", "content-length": str(length)},
            expected=(200, 201, 204),
        )
        return resp.headers.get("etag", "").strip().strip('"')

    # --- upload -----------------------------------------------------------------------------

    async def upload(
        self,
        read: Read,
        size: int,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        parallel: int = 4,
        progress: Progress | None = None,
    ) -> str:
        """Encrypt and store ``size`` bytes read through ``read(offset, n)``; returns the
        network fileId. Zero-byte files have no network object: ``size`` must be > 0.

        ``read`` must return exactly ``n`` bytes (else :class:`SourceError`) and may be called
        concurrently and more than once for the same range (parallel parts, retried PUTs, the
        multipart hash's catch-up reads), so it must read from a stable snapshot of the content.
        ``progress`` follows the bodies sent (never the hash reads), for a progress display.
        """
        if size <= 0:
            raise ValueError("zero-byte files are not uploaded to the network")
        for attempt in (1, 2):
            try:
                if size < MULTIPART_THRESHOLD:
                    return await self._upload_single(read, size, progress)
                return await self._upload_multipart(
                    read, size, part_size, max(1, parallel), progress
                )
            except _FinishLost:
                if attempt == 2:
                    raise ProtocolError("upload finish failed twice") from None
                log.warning("finish answer lost and upload consumed; uploading again")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _start(self, size: int, parts: int) -> dict[str, Any]:
        if parts == 1:  # with other single-part starts waiting meanwhile (upload_starts)
            return await self._starts.start(size)
        return (await self._send_starts([size], parts))[0]

    async def _send_starts(self, sizes: list[int], parts: int) -> list[dict[str, Any]]:
        """One ``files/start`` of uploads of these sizes; their answers in the same order."""
        uploads = [{"index": i, "size": size} for i, size in enumerate(sizes)]

        async def call() -> Any:
            return await self._json(
                "POST",
                f"/v2/buckets/{self.bucket}/files/start",
                params={"multiparts": parts},
                json={"uploads": uploads},
                expected=(200, 201),
            )

        # Starting twice only leaves unused upload slots behind: safe to retry.
        body = await self._retry.run(call, what="upload start")
        answers = body.get("uploads") if isinstance(body, dict) else None
        if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
            raise ProtocolError("upload start answer lacks 'uploads'")
        by_index = {a.get("index"): a for a in answers}
        if len(answers) != len(sizes) or set(by_index) != set(range(len(sizes))):
            raise ProtocolError(f"upload start answered {len(answers)} of {len(sizes)} uploads")
        return [by_index[i] for i in range(len(sizes))]

    async def _finish(self, index_hex: str, shard: dict[str, Any]) -> str:
        tries = 0
        parts = len(shard.get("parts") or ()) or 1
        timeouts = finish_timeouts(parts)

        async def call() -> Any:
            nonlocal tries
            tries += 1
            return await self._json(
                "POST",
                f"/v2/buckets/{self.bucket}/files/finish",
                json={"index": index_hex, "shards": [shard]},
                expected=(200, 201),
                timeouts=timeouts,
            )

        try:
            body = await self._retry.run(call, what="upload finish")
        except Conflict:
            if tries > 1:
                # A resent finish meets 409 once an earlier one consumed the upload: that one
                # created the object, but its id was in the lost answer and the bridge has no
                # lookup by index, so the content is uploaded again (docs/protocol.md,
                # "Upload finish"). The index names the stray object for a later clean-up.
                log.warning(
                    "upload finish answer lost; the object with index %s is stored but "
                    "unreachable (no lookup by index); uploading again",
                    index_hex,
                )
                raise _FinishLost from None
            raise
        file_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(file_id, str) or not file_id:
            raise ProtocolError("upload finish answer lacks 'id'")
        return file_id

    async def _upload_single(self, read: Read, size: int, progress: Progress | None) -> str:
        index = self._new_index()
        key, iv = self._keys(index.hex())
        slot = await self._start(size, 1)
        url, uuid = slot.get("url"), slot.get("uuid")
        if not isinstance(url, str) or not isinstance(uuid, str):
            raise ProtocolError("upload start answer lacks 'url' or 'uuid'")
        state: dict[str, Any] = {}

        async def put() -> None:
            # A fresh hash for every attempt: a retried PUT regenerates the body.
            hasher = BackgroundHash() if size >= THREAD_HASH else crypto.ShardHasher()
            done = [0]
            body = self._body(read, key, iv, 0, size, hasher, done, progress)
            try:
                await self._put(url, body, size)
            finally:
                if isinstance(hasher, BackgroundHash):
                    hasher.close()  # its thread ends once the queued chunks are hashed
            state["hasher"], state["done"] = hasher, done[0]

        await self._retry.run(put, what="upload PUT")
        if state["done"] == size:
            hasher = state["hasher"]
            if isinstance(hasher, BackgroundHash):
                digest = await hasher.hexdigest()
            else:
                digest = hasher.hexdigest()
        else:  # the server answered before we produced the whole body: hash separately
            digest = await self._hash_pass(read, key, iv, size)
        return await self._finish(index.hex(), {"hash": digest, "uuid": uuid})

    async def _upload_multipart(
        self, read: Read, size: int, part_size: int, parallel: int, progress: Progress | None
    ) -> str:
        part_size = max(part_size, MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
        count = math.ceil(size / part_size)
        index = self._new_index()
        key, iv = self._keys(index.hex())
        slot = await self._start(size, count)
        urls, uuid, upload_id = slot.get("urls"), slot.get("uuid"), slot.get("UploadId")
        if not isinstance(urls, list) or len(urls) != count or not isinstance(uuid, str):
            raise ProtocolError(f"upload start answer lacks {count} part urls")
        if not isinstance(upload_id, str):
            raise ProtocolError("upload start answer lacks 'UploadId'")

        etags: dict[int, str] = {}
        digest: list[str] = []
        # Hashed in a worker thread while the parts are sent (threadhash).
        background = BackgroundHash()
        ordered = _OrderedHash(size, part_size, self.chunk_size, background, shared=self._stash)
        next_part = 0  # shared by the workers; only touched between awaits

        async def upload_part(number: int) -> None:
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)

            async def put() -> str:
                body = self._body(read, key, iv, offset, length, progress=progress, ordered=ordered)
                try:
                    return await self._put(urls[number - 1], body, length)
                finally:
                    # The connection may stop pulling early (an error answer, a retry): the
                    # hash must not wait for chunks this body will never produce.
                    await body.aclose()

            etags[number] = await self._retry.run(put, what=f"upload part {number}/{count}")

        async def worker() -> None:
            nonlocal next_part
            while next_part < count:
                next_part += 1
                await upload_part(next_part)

        async def hash_all() -> None:
            await self._hash_frontier(read, key, iv, ordered)
            digest.append(await ordered.hexdigest())

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hash_all)
                for _ in range(min(parallel, count)):
                    nursery.start_soon(worker)
        finally:
            background.close()  # its thread ends once the queued chunks are hashed
            ordered.close()

        parts = [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)]
        shard = {"hash": digest[0], "uuid": uuid, "UploadId": upload_id, "parts": parts}
        return await self._finish(index.hex(), shard)

    # --- delete -----------------------------------------------------------------------------

    async def delete(self, file_id: str) -> None:
        """Delete a network object no drive entry points at (an orphan): ``DELETE
        /buckets/{bucket}/files/{id}``, 204. Already gone (404) counts as done. The bridge
        deletes whatever it is asked to, so the caller must know nothing references it."""

        async def call() -> None:
            try:
                await self._http.send(
                    "DELETE",
                    f"{self._http.network_url}/buckets/{self.bucket}/files/{file_id}",
                    kind="network",
                    headers=self._auth,
                    expected=(200, 204),  # 204, no body
                )
            except NotFound as exc:
                # Only the object's own absence is success; "Bucket not found" is not.
                if "bucket entry" not in exc.message.lower():
                    raise

        # Idempotent: a resend after a lost answer meets 404, which is success.
        await self._retry.run(call, what="delete network object")
        self._info.pop(file_id, None)

    # --- download ---------------------------------------------------------------------------

    async def info(self, file_id: str) -> FileInfo:
        """Index, size, shard hash and download URL of a stored object (cached briefly)."""
        cached = self._info.get(file_id)
        if cached is not None:
            return cached

        async def call() -> Any:
            return await self._json(
                "GET",
                f"/buckets/{self.bucket}/files/{file_id}/info",
                headers={"x-api-version": "2"},
            )

        body = await self._retry.run(call, what="file info")
        if not isinstance(body, dict):
            raise ProtocolError("file info answer is not an object")
        if body.get("version") not in (2, None) or "shards" not in body:
            # The bridge gives download links for version 2 objects only (docs/protocol.md,
            # "Legacy files"); v1 objects need the old multi-shard flow, which we do not speak.
            raise LegacyFileFormat(
                f"network object {file_id} is in Internxt's legacy (version "
                f"{body.get('version', 1)}) format, which internxtfs cannot read"
            )
        try:
            size = int(body["size"])
            shard = _first_usable_shard(body["shards"], size)
            if shard is None:
                raise ProtocolError(f"file {file_id}: no usable shard in the file info")
            info = FileInfo(
                file_id=file_id,
                index=str(body["index"]),
                size=size,
                hash=str(shard["hash"]),
                url=str(shard["url"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"file info answer is incomplete: {exc}") from exc
        self._info[file_id] = info
        return info

    async def _object_get(
        self, file_id: str, first: int, last: int | None, *, stream: bool
    ) -> tuple[FileInfo, httpx.Response]:
        """GET ciphertext bytes ``first..last`` (inclusive; ``None`` = to the end).

        A presigned URL that has expired answers 403/404: fetch fresh info once and retry.
        """
        for fresh in (False, True):
            info = await self.info(file_id)
            whole = first == 0 and (last is None or last >= info.size - 1)
            headers = {} if whole else {"range": f"bytes={first}-{'' if last is None else last}"}
            try:
                resp = await self._http.send(
                    "GET",
                    info.url,
                    kind="object",
                    headers=headers,
                    expected=(200, 206),
                    stream=stream,
                )
            except (NotFound, Forbidden):
                self._info.pop(file_id, None)
                if fresh:
                    raise
                continue
            if not whole and resp.status_code != 206:
                # A server that ignores Range would make us decrypt the wrong bytes.
                await resp.aclose()
                raise ProtocolError(f"object GET ignored Range (status {resp.status_code})")
            return info, resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_plain(self, file_id: str, first: int, last: int) -> memoryview:
        """Plaintext of ciphertext bytes ``first..last``, fetched and decrypted in a worker
        thread by the object getter; an expired presigned URL is refreshed once, as in
        :meth:`_object_get`."""
        assert self._getter is not None
        if self._getter_threads is None:
            self._getter_threads = trio.CapacityLimiter(OBJECT_GET_THREADS)
        for fresh in (False, True):
            info = await self.info(file_id)
            key, iv = self._keys(info.index)
            whole = first == 0 and last >= info.size - 1
            try:
                # abandon_on_cancel: an unmount does not wait for a GET in progress; the thread
                # finishes (or times out) on its own and its result is dropped.
                return await trio.to_thread.run_sync(
                    self._getter.get_plain, info.url, first, last, whole, key, iv,
                    abandon_on_cancel=True, limiter=self._getter_threads,
                )  # fmt: skip
            except (NotFound, Forbidden):
                self._info.pop(file_id, None)
                if fresh:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def download_range(self, file_id: str, offset: int, length: int) -> bytes:
        """Plaintext bytes ``[offset, offset+length)``, clipped to the file's size."""
        data = await self.fetch_range(file_id, offset, length)
        return data if isinstance(data, bytes) else bytes(data)

    async def fetch_range(self, file_id: str, offset: int, length: int) -> bytes | memoryview:
        """:meth:`download_range` for the block cache: the buffer the bytes were received and
        decrypted into (a ``memoryview`` when the object getter is used), with no copy."""
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")

        async def attempt() -> bytes | memoryview:
            info = await self.info(file_id)
            end = min(offset + length, info.size)
            if offset >= end:
                return b""
            aligned = offset - offset % _AES_BLOCK  # CTR can only start on a block boundary
            if self._getter is not None:
                plain = await self._get_plain(file_id, aligned, end - 1)
                # The buffer itself when aligned (every block fetch): slicing would copy it.
                return plain if offset == aligned else plain[offset - aligned :]
            info, resp = await self._object_get(file_id, aligned, end - 1, stream=False)
            data = resp.content
            if len(data) != end - aligned:
                raise IntegrityError(
                    f"range {aligned}-{end - 1} of {file_id}: got {len(data)} bytes"
                )
            key, iv = self._keys(info.index)
            ctr = crypto.CtrStream(key, iv, aligned)
            if len(data) >= THREAD_DECRYPT:
                plain_bytes = await trio.to_thread.run_sync(ctr.update, data)
            else:
                plain_bytes = ctr.update(data)
            return plain_bytes[offset - aligned :]

        return await self._retry.run(attempt, what=f"download {file_id}@{offset}+{length}")

    async def download_stream(self, file_id: str) -> AsyncIterator[bytes]:
        """The whole plaintext, in order; checks size and shard hash at the end.

        A connection that drops mid-body is resumed with a Range request from the last byte
        received, so the hash and the keystream simply continue.
        """
        info = await self.info(file_id)
        if info.size == 0:
            return
        key, iv = self._keys(info.index)
        ctr = crypto.CtrStream(key, iv, 0)
        hasher = crypto.ShardHasher()
        pos = 0
        failures = 0
        while pos < info.size:
            try:
                info, resp = await self._object_get(file_id, pos, None, stream=True)
                try:
                    async for chunk in resp.aiter_bytes(self.chunk_size):
                        if pos + len(chunk) > info.size:
                            raise IntegrityError(f"{file_id}: more bytes than its size")
                        hasher.update(chunk)
                        pos += len(chunk)
                        yield ctr.update(chunk)
                finally:
                    await resp.aclose()
                if pos < info.size:  # cut short: resume from here like a dropped connection
                    raise Unreachable(f"{file_id}: body ended at {pos} of {info.size}")
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                failures += 1
                if failures >= self._retry.attempts:
                    self._retry.record_failure(exc)
                    raise as_internxt_error(exc) from exc
                await self._retry.backoff(failures, exc, f"download {file_id}@{pos}")
        if hasher.hexdigest() != info.hash:
            raise IntegrityError(f"{file_id}: shard hash mismatch")
