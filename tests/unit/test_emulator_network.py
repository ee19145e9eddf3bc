"""Emulator: network API (bridge) and object store rules (protocol §3, §5.1, §5.2, §6)."""

from __future__ import annotations

import json
import secrets
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from internxtfs.emulator.objects import _Pieces
from internxtfs.internxt.crypto import ShardHasher, network_auth_header, shard_hash
from tests.harness.emulator import EmulatorProcess
from tests.harness.emulator_session import DriveSession

MIB = 1024 * 1024


@pytest.fixture
def session(emulator: EmulatorProcess) -> Iterator[DriveSession]:
    drive = DriveSession(emulator, emulator.add_user(email="carol@example.com", password="pw"))
    yield drive
    drive.close()


def _start(session: DriveSession, size: int, parts: int = 1) -> httpx.Response:
    return session.network(
        "POST",
        f"/v2/buckets/{session.bucket}/files/start?multiparts={parts}",
        json={"uploads": [{"index": 0, "size": size}]},
    )


def _finish(session: DriveSession, shard: dict, index: str | None = None) -> httpx.Response:
    return session.network(
        "POST",
        f"/v2/buckets/{session.bucket}/files/finish",
        json={"index": index or secrets.token_hex(32), "shards": [shard]},
    )


def test_basic_auth(session: DriveSession) -> None:
    url = f"{session.emulator.network_url}/v2/buckets/{session.bucket}/files/start"
    body = {"uploads": [{"index": 0, "size": 1}]}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401
    assert missing.json() == {"error": "No authentication strategy detected"}
    bad = httpx.post(
        url,
        json=body,
        headers={"Authorization": network_auth_header(session.user["bridgeUser"], "nope")},
    )
    assert bad.status_code == 401 and bad.json() == {"error": "Invalid email or password"}


def test_start_validation_and_quota(session: DriveSession, emulator: EmulatorProcess) -> None:
    small = _start(session, 50 * MIB, parts=2)
    assert small.status_code == 400
    assert small.json() == {"error": "Multipart is not allowed for files smaller than 100MB"}
    assert _start(session, 10, parts=0).status_code == 400
    assert _start(session, 10, parts=10001).status_code == 400
    assert _start(session, -1).status_code == 400
    dupe = session.network(
        "POST",
        f"/v2/buckets/{session.bucket}/files/start",
        json={"uploads": [{"index": 0, "size": 1}, {"index": 0, "size": 1}]},
    )
    assert dupe.status_code == 400
    assert session.network("POST", f"/v2/buckets/{'0' * 24}/files/start", json={}).status_code in (
        403,
        404,
    )

    emulator.update_user("carol@example.com", quota=100)
    session.create_file("used", "bin", b"x" * 60)
    over = _start(session, 41)
    assert over.status_code == 420 and over.json() == {"error": "Max space used"}
    # Quota is checked again at finish: shrink it between start and finish.
    started = _start(session, 40).json()["uploads"][0]
    data = b"y" * 40
    assert httpx.put(started["url"], content=data).status_code == 200
    emulator.update_user("carol@example.com", quota=90)
    late = _finish(session, {"hash": shard_hash(data), "uuid": started["uuid"]})
    assert late.status_code == 420


def test_finish_rules_and_hash_verification(session: DriveSession) -> None:
    data = secrets.token_bytes(1000)
    upload = _start(session, len(data)).json()["uploads"][0]
    assert upload["urls"] is None and upload["url"].startswith(session.emulator.url + "/objects/")
    shard = {"hash": shard_hash(data), "uuid": upload["uuid"]}
    assert _finish(session, shard).json() == {"error": "Missing uploads to complete the upload"}
    put = httpx.put(upload["url"], content=data)
    assert put.status_code == 200 and put.headers["ETag"].startswith('"')
    forged = httpx.put(upload["url"].replace("sig=", "sig=0"), content=data)
    assert forged.status_code == 403

    assert _finish(session, shard, index="xyz").json() == {"error": "Invalid index"}
    unknown = _finish(
        session, {"hash": shard["hash"], "uuid": "5f7f1c4e-0000-4000-8000-000000000000"}
    )
    assert unknown.status_code == 409
    assert unknown.json() == {"error": "Missing uploads to complete the upload"}
    half = _finish(session, shard | {"UploadId": "x"})
    assert half.status_code == 400
    wrong_hash = _finish(session, shard | {"hash": shard_hash(b"other")})
    assert wrong_hash.status_code in (400, 409)
    # A refused hash drops the stored bytes: PUT again, then finish properly.
    assert httpx.put(upload["url"], content=data).status_code == 200
    index = secrets.token_hex(32)
    done = _finish(session, shard, index=index)
    assert done.status_code == 200
    entry = done.json()
    assert entry["index"] == index and entry["size"] == 1000 and entry["version"] == 2
    assert entry["bucket"] == session.bucket and len(entry["id"]) == 24
    assert _finish(session, shard).status_code == 409  # consumed

    short = _start(session, 10).json()["uploads"][0]
    httpx.put(short["url"], content=b"123")
    mismatch = _finish(session, {"hash": shard_hash(b"123"), "uuid": short["uuid"]})
    assert mismatch.status_code == 409 and mismatch.json() == {"error": "Size does not match"}


def test_info_and_range_reads(session: DriveSession) -> None:
    data = bytes(range(256)) * 4
    entry = session.upload_object(data)
    base = f"/buckets/{session.bucket}/files"
    assert session.network("GET", f"/buckets/nothex/files/{entry['id']}/info").json() == {
        "error": "Bucket id is malformed"
    }
    assert session.network("GET", f"{base}/123/info").json() == {"error": "File id is malformed"}
    missing = session.network("GET", f"{base}/{'a' * 24}/info")
    assert missing.status_code == 404
    assert missing.json() == {"error": f"Bucket entry {'a' * 24} not found"}
    info = session.network("GET", f"{base}/{entry['id']}/info").json()
    assert info["version"] == 2 and info["size"] == len(data) and info["index"] == entry["index"]
    shard = info["shards"][0]
    assert shard["hash"] == shard_hash(data) and shard["size"] == len(data)
    url = shard["url"]
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == data
    part = httpx.get(url, headers={"Range": "bytes=16-47"})
    assert part.status_code == 206 and part.content == data[16:48]
    assert part.headers["Content-Range"] == f"bytes 16-47/{len(data)}"
    tail = httpx.get(url, headers={"Range": "bytes=1000-"})
    assert tail.status_code == 206 and tail.content == data[1000:]
    clipped = httpx.get(url, headers={"Range": "bytes=1020-5000"})
    assert clipped.content == data[1020:]
    suffix = httpx.get(url, headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == data[-10:]
    beyond = httpx.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"


def test_delete_object_frees_the_space_it_took(
    session: DriveSession, emulator: EmulatorProcess
) -> None:
    """The bridge charges for every object it holds, referenced by a drive entry or not, and
    deletes whatever its owner asks it to (204)."""
    email = session.user["email"]
    referenced = session.create_file("kept", "bin", b"k" * 300)
    orphan = session.upload_object(b"o" * 1000)  # finished, never given a drive entry
    info = emulator.user_info(email)
    assert (info["driveUsage"], info["networkUsage"]) == (300, 1300)
    emulator.update_user(email, quota=1500)
    assert _start(session, 250).status_code == 420  # the orphan's bytes count

    base = f"/buckets/{session.bucket}/files"
    other = DriveSession(emulator, emulator.add_user(email="mallory@example.com", password="pw"))
    try:
        foreign = other.network("DELETE", f"/buckets/{session.bucket}/files/{orphan['id']}")
        assert foreign.status_code == 403
    finally:
        other.close()
    assert foreign.json() == {"error": "Unauthorized"}
    assert httpx.delete(f"{emulator.network_url}{base}/{orphan['id']}").status_code == 401
    # Ids are validated before the credentials are looked at.
    assert httpx.delete(f"{emulator.network_url}{base}/123").status_code == 400
    nobody = session.network("DELETE", f"/buckets/{'f' * 24}/files/{orphan['id']}")
    assert nobody.status_code == 404 and nobody.json() == {"error": "Bucket  not found"}
    gone = session.network("DELETE", f"{base}/{orphan['id']}")
    assert gone.status_code == 204 and gone.content == b""
    again = session.network("DELETE", f"{base}/{orphan['id']}")
    assert again.status_code == 404 and again.json() == {"error": "Bucket entry  not found"}
    assert session.network("GET", f"{base}/{orphan['id']}/info").status_code == 404
    info = emulator.user_info(email)
    assert (info["driveUsage"], info["networkUsage"]) == (300, 300)
    assert _start(session, 250).status_code == 200
    # A permanent drive delete takes the object with it.
    assert session.drive("DELETE", f"/files/{referenced['uuid']}").status_code == 200
    assert emulator.user_info(email)["networkUsage"] == 0


def test_state_survives_a_restart(session: DriveSession, emulator: EmulatorProcess) -> None:
    folder = session.mkdir("kept")
    created = session.create_file("k", "bin", b"persist me", folder["uuid"])
    info = session.network("GET", f"/buckets/{session.bucket}/files/{created['fileId']}/info")
    url = info.json()["shards"][0]["url"]
    port = emulator.port
    emulator.restart()
    assert emulator.port == port
    # Tokens and presigned URLs were signed with per-data-dir secrets: both still work.
    listed = session.drive("GET", f"/folders/content/{folder['uuid']}/files?limit=50&offset=0")
    assert [f["uuid"] for f in listed.json()["files"]] == [created["uuid"]]
    assert httpx.get(url).content == b"persist me"
    again = DriveSession(emulator, {"email": "carol@example.com", "password": "pw"})
    assert again.drive("GET", "/users/usage").json()["drive"] == len(b"persist me")


def test_add_user_cli_while_serving(emulator: EmulatorProcess) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "internxtfs.emulator",
            "add-user",
            "--data",
            str(emulator.data_dir),
            "--email",
            "dave@example.com",
            "--password",
            "pw",
            "--quota",
            "12345",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    user = json.loads(done.stdout)
    assert {"email", "bucket", "rootFolderId", "uuid", "bridgeUser"} <= user.keys()
    session = DriveSession(emulator, {"email": "dave@example.com", "password": "pw"})
    assert session.drive("GET", "/users/limit").json() == {"maxSpaceBytes": 12345}
    assert session.root == user["rootFolderId"]


class _Fill(httpx.SyncByteStream):
    """``size`` bytes of the value ``byte`` produced lazily, so a 100 MiB body never sits in
    memory."""

    def __init__(self, size: int, byte: int = 0) -> None:
        self.size, self.byte = size, byte

    def __iter__(self) -> Iterator[bytes]:
        left = self.size
        block = bytes([self.byte]) * MIB
        while left > 0:
            chunk = block[: min(MIB, left)]
            left -= len(chunk)
            yield chunk


def _zero_hash(size: int) -> str:
    hasher = ShardHasher()
    for chunk in _Fill(size):
        hasher.update(chunk)
    return hasher.hexdigest()


@pytest.mark.slow
def test_multipart_upload(session: DriveSession) -> None:
    part_sizes = [40 * MIB, 40 * MIB, 20 * MIB + 7]
    total = sum(part_sizes)
    upload = _start(session, total, parts=3).json()["uploads"][0]
    assert upload["url"] is None and len(upload["urls"]) == 3 and upload["UploadId"]
    assert "partNumber=2" in upload["urls"][1] and "uploadId=" in upload["urls"][1]
    etags = []
    for url, size in zip(upload["urls"], part_sizes, strict=True):
        put = httpx.put(url, content=_Fill(size), headers={"Content-Length": str(size)}, timeout=60)
        assert put.status_code == 200
        etags.append(put.headers["ETag"])
    parts = [{"PartNumber": i + 1, "ETag": tag.strip('"')} for i, tag in enumerate(etags)]
    shard = {"hash": _zero_hash(total), "uuid": upload["uuid"], "UploadId": upload["UploadId"]}
    missing_parts = _finish(session, shard)
    assert missing_parts.status_code == 400  # UploadId without parts
    # A part's ETag given for another part is refused (not S3's MD5, but as checked: the
    # same bytes give the same tag, other bytes another).
    assert etags[0] == etags[1] != etags[2]
    swapped = _finish(session, shard | {"parts": [*parts[:2], parts[0] | {"PartNumber": 3}]})
    assert swapped.status_code == 400 and "ETag of part 3" in swapped.json()["error"]
    done = _finish(session, shard | {"parts": parts})
    assert done.status_code == 200, done.text
    assert done.json()["size"] == total
    info = session.network("GET", f"/buckets/{session.bucket}/files/{done.json()['id']}/info")
    url = info.json()["shards"][0]["url"]
    first = 40 * MIB - 16
    across = httpx.get(url, headers={"Range": f"bytes={first}-{first + 31}"})
    assert across.status_code == 206 and across.content == bytes(32)

    # Every part but the last must be at least 5 MiB.
    sizes = [MIB, 99 * MIB, MIB]
    upload = _start(session, sum(sizes), parts=3).json()["uploads"][0]
    tags = [
        httpx.put(u, content=_Fill(s), headers={"Content-Length": str(s)}, timeout=60).headers[
            "ETag"
        ]
        for u, s in zip(upload["urls"], sizes, strict=True)
    ]
    small = _finish(
        session,
        {
            "hash": _zero_hash(sum(sizes)),
            "uuid": upload["uuid"],
            "UploadId": upload["UploadId"],
            "parts": [{"PartNumber": i + 1, "ETag": t} for i, t in enumerate(tags)],
        },
    )
    assert small.status_code == 400 and "5 MiB" in small.json()["error"]


@pytest.mark.slow
def test_a_get_begun_before_the_delete_of_a_multipart_object_reads_to_its_end(
    session: DriveSession, emulator: EmulatorProcess
) -> None:
    """An object store serves a GET begun before a DELETE (another client's overwrite, an
    orphan clean-up) to its end, as an open file outlives its unlink. A multipart object is a
    folder of its parts (network_routes._adopt): the delete must not cut the body where the
    GET reaches a part it has not opened yet. Parts of different bytes: ranges across and at
    their boundaries read them in order, also after a restart."""
    sizes = [40 * MIB, 40 * MIB, 20 * MIB + 7]
    total = sum(sizes)
    upload = _start(session, total, parts=3).json()["uploads"][0]
    parts, hasher = [], ShardHasher()
    for number, (url, size) in enumerate(zip(upload["urls"], sizes, strict=True), 1):
        put = httpx.put(
            url, content=_Fill(size, number), headers={"Content-Length": str(size)}, timeout=60
        )
        assert put.status_code == 200
        parts.append({"PartNumber": number, "ETag": put.headers["ETag"].strip('"')})
        for chunk in _Fill(size, number):
            hasher.update(chunk)
    shard = {"hash": hasher.hexdigest(), "uuid": upload["uuid"], "UploadId": upload["UploadId"]}
    done = _finish(session, shard | {"parts": parts})
    assert done.status_code == 200, done.text
    file_id = done.json()["id"]
    info = session.network("GET", f"/buckets/{session.bucket}/files/{file_id}/info")
    url = info.json()["shards"][0]["url"]

    def expected(first: int, last: int) -> bytes:
        out, offset = bytearray(), 0
        for number, size in enumerate(sizes, 1):
            n = min(last + 1, offset + size) - max(first, offset)
            out += bytes([number]) * max(0, n)
            offset += size
        return bytes(out)

    b = 40 * MIB
    ranges = [(0, 0), (b - 1, b), (b, b), (2 * b - 3, 2 * b + 3), (b - 5, 2 * b + 5)]
    for first, last in [*ranges, (total - 1, total - 1)]:
        got = httpx.get(url, headers={"Range": f"bytes={first}-{last}"})
        assert got.status_code == 206 and got.content == expected(first, last), (first, last)
    emulator.restart()
    assert httpx.get(url, headers={"Range": "bytes=-2"}).content == expected(total - 2, total - 1)

    emulator.set_faults(bandwidth=50 * MIB)
    try:
        received = 0
        with httpx.stream("GET", url, timeout=15) as response:
            chunks = response.iter_bytes()
            received += len(next(chunks))
            deleted = session.network("DELETE", f"/buckets/{session.bucket}/files/{file_id}")
            assert deleted.status_code == 204
            try:
                for chunk in chunks:
                    received += len(chunk)
            except httpx.HTTPError as exc:
                pytest.fail(f"the GET ended after {received} of {total} bytes: {exc!r}")
        assert received == total
    finally:
        emulator.set_faults(bandwidth=0)
    assert httpx.get(url).status_code == 404
    assert list((emulator.data_dir / "objects").iterdir()) == []


def test_pieces_read_a_range_across_parts_and_outlive_their_delete(tmp_path: Path) -> None:
    """objects._Pieces: the bytes first..last of an object's pieces (empty ones among them),
    from pieces opened at once, so removing them meanwhile changes nothing."""
    contents = [b"abc", b"", b"defgh", b"i", b""]
    data = b"".join(contents)
    folder = tmp_path / "object"
    folder.mkdir()
    paths = []
    for number, content in enumerate(contents, 1):
        paths.append(folder / f"{number:05d}")
        paths[-1].write_bytes(content)

    def read(first: int, last: int, n: int = 2) -> bytes:
        out = b""
        with _Pieces(paths, first, last) as source:
            while (left := last - first + 1 - len(out)) > 0 and (
                chunk := source.read(min(n, left))
            ):
                out += chunk
        return out

    for first in range(len(data)):
        for last in range(first, len(data)):
            assert read(first, last) == data[first : last + 1], (first, last)
    assert read(0, -1) == b""  # a zero-length object
    with _Pieces(paths, 2, 8) as source:
        first = source.read(100)
        shutil.rmtree(folder)
        rest = b"".join(iter(lambda: source.read(100), b""))
    assert first + rest == data[2:]  # read to the end of the last piece; the caller stops


def test_tls_and_public_url(
    emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    emulator = emulator_factory(["--tls-cert", str(cert_pem), "--tls-key", str(key_pem)])
    assert emulator.url.startswith("https://127.0.0.1:")
    made = emulator.add_user(email="tls@example.com", password="pw")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    http = httpx.Client(verify=context)
    start = http.post(
        f"{emulator.network_url}/v2/buckets/{made['bucket']}/files/start",
        json={"uploads": [{"index": 0, "size": 3}]},
        headers={"Authorization": network_auth_header(made["bridgeUser"], made["userId"])},
    ).json()
    url = start["uploads"][0]["url"]
    assert url.startswith(f"{emulator.url}/objects/")  # the origin's own scheme and host
    assert http.put(url, content=b"abc").status_code == 200

    plain = emulator_factory(["--public-url", "https://gateway.internxt.com:443"])
    made = plain.add_user(email="pub@example.com", password="pw")
    start = httpx.post(
        f"{plain.network_url}/v2/buckets/{made['bucket']}/files/start",
        json={"uploads": [{"index": 0, "size": 3}]},
        headers={"Authorization": network_auth_header(made["bridgeUser"], made["userId"])},
    ).json()
    assert start["uploads"][0]["url"].startswith("https://gateway.internxt.com:443/objects/")
