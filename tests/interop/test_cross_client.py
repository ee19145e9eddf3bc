"""Cross-client fidelity: what rclone uploads, our client reads, and the other way round.

Both clients derive keys from the same mnemonic and bucket (§4), so a mismatch here means one
of them (or the emulator in between) deviates from the protocol. Our client runs as a separate
process inside the emulator's namespaces (``our_client.py``), where it reaches the emulator at
the production URL exactly as rclone does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from .conftest import PAYLOAD_MTIME_RFC3339, PAYLOAD_SIZES, Account, MiB, seeded_bytes
from .rclone_ns import RcloneNamespace

pytestmark = pytest.mark.interop

OUR_CLIENT = Path(__file__).with_name("our_client.py")
PART = 30 * MiB


def our_client(ns: RcloneNamespace, *args: str) -> dict[str, Any]:
    result = ns.python(str(OUR_CLIENT), *args, timeout=300)
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _slice(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as source:
        source.seek(offset)
        return source.read(length)


@pytest.mark.parametrize(
    ("fixture", "local_name", "remote_path", "ranges"),
    [
        pytest.param(
            "mid_remote",
            "mid.bin",
            "ranged/mid.bin",
            [(0, 1), (17, 4099), (5 * MiB - 3, 10)],
            id="single-part-5MiB",
        ),
        pytest.param(
            "big_remote",
            "big.bin",
            "big/big.bin",
            [(PART - 5, 11), (3 * PART - 1, 2), (PAYLOAD_SIZES["big.bin"] - 7, 7)],
            id="multipart-101MiB",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_rclone_upload_read_by_our_client(
    request: pytest.FixtureRequest,
    interop_ns: RcloneNamespace,
    account: Account,
    payloads: dict[str, Path],
    tmp_path: Path,
    fixture: str,
    local_name: str,
    remote_path: str,
    ranges: list[tuple[int, int]],
) -> None:
    request.getfixturevalue(fixture)  # rclone has uploaded the file
    local = payloads[local_name]
    out = tmp_path / "downloaded"
    answer = our_client(
        interop_ns,
        "download",
        account.email,
        account.password,
        remote_path,
        str(out),
        *(f"{offset}:{length}" for offset, length in ranges),
    )
    size = local.stat().st_size
    assert answer["size"] == answer["written"] == size
    # Whole-file read: our client also verified rclone's shard hash (§4.8) on the way.
    assert answer["sha256"] == sha256_file(local) == sha256_file(out)
    out.unlink()  # up to 101 MiB that pytest would otherwise keep around
    for (offset, length), got in zip(ranges, answer["ranges"], strict=True):
        assert bytes.fromhex(got) == _slice(local, offset, length), (offset, length)


@pytest.mark.parametrize("size", [0, 17, 3_000_017])
def test_our_upload_read_by_rclone(
    interop_ns: RcloneNamespace, account: Account, tmp_path: Path, size: int
) -> None:
    local = tmp_path / "ours.bin"
    data = seeded_bytes(size, 5000 + size)
    local.write_bytes(data)
    os.utime(local, (1614834367, 1614834367))  # the same known mtime as the rclone payloads
    name = f"ours-{size}.bin"
    answer = our_client(interop_ns, "upload", account.email, account.password, str(local), name)
    assert answer["size"] == size
    assert (answer["fileId"] is None) == (size == 0)

    entry = json.loads(interop_ns.rclone("lsjson", f"{account.remote}:{name}").stdout)[0]
    assert entry["Name"] == name
    assert entry["Size"] == size
    assert entry["ModTime"].startswith(PAYLOAD_MTIME_RFC3339), entry
    assert interop_ns.rclone("cat", f"{account.remote}:{name}").stdout == data
    if size > 40:
        ranged = interop_ns.rclone(
            "cat", f"{account.remote}:{name}", "--offset", "33", "--count", str(size // 2)
        ).stdout
        assert ranged == data[33 : 33 + size // 2]
