"""Fixtures for the rclone interop tests: one namespaced emulator per session, one account,
and seeded payload files on disk."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .rclone_ns import RcloneNamespace, unavailable_reason

MiB = 1024 * 1024
# A fixed, recognisable modification time: uploads must carry it to the server (§5.3).
PAYLOAD_MTIME = 1614834367  # 2021-03-04T05:06:07Z
PAYLOAD_MTIME_RFC3339 = "2021-03-04T05:06:07"

# name → size. "big" is ≥ 100 MiB, so rclone must upload it multipart (§5.2, 30 MiB parts).
PAYLOAD_SIZES = {
    "empty.bin": 0,
    "small.txt": 1024,
    "mid.bin": 5 * MiB,
    "big.bin": 101 * MiB,
}


@dataclass(frozen=True)
class Account:
    remote: str  # rclone remote name, e.g. "ix"
    email: str
    password: str
    user: dict[str, Any]  # what add-user printed

    def path(self, sub: str = "") -> str:
        return f"{self.remote}:{sub}"


def seeded_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="session")
def interop_ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneNamespace]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"rclone interop: {reason}")
    ns = RcloneNamespace(tmp_path_factory.mktemp("interop"))
    ns.start()
    try:
        yield ns
    finally:
        ns.stop()
        ns.discard_data()


@pytest.fixture(scope="session")
def account(interop_ns: RcloneNamespace) -> Account:
    """The main account, logged in through ``rclone config create`` (no 2FA)."""
    email, password = "rclone-main@example.com", "main pass wörd 1"
    user = interop_ns.add_user(email, password, quota=20 * 1024 * MiB)
    interop_ns.config_create("ix", email, password)
    return Account("ix", email, password, user)


@pytest.fixture(scope="session")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Seeded random files, all with the same known mtime; "small_set" holds the < 100 MiB ones."""
    root = tmp_path_factory.mktemp("payloads")
    small_set = root / "small_set"
    small_set.mkdir()
    files: dict[str, Path] = {"small_set": small_set}
    for seed, (name, size) in enumerate(PAYLOAD_SIZES.items()):
        target = (root if size >= 100 * MiB else small_set) / name
        target.write_bytes(seeded_bytes(size, seed))
        os.utime(target, (PAYLOAD_MTIME, PAYLOAD_MTIME))
        files[name] = target
    yield files
    shutil.rmtree(root, ignore_errors=True)  # pytest keeps old temp dirs; these are big


def upload(ns: RcloneNamespace, local: Path, remote: str) -> None:
    """``rclone copyto``; its stdout is ignored because the adapter prints JSON there (§7.5)."""
    ns.rclone("copyto", str(local), remote)


@pytest.fixture(scope="session")
def mid_remote(interop_ns: RcloneNamespace, account: Account, payloads: dict[str, Path]) -> str:
    """The 5 MiB file, uploaded once by rclone (single part)."""
    remote = account.path("ranged/mid.bin")
    upload(interop_ns, payloads["mid.bin"], remote)
    return remote


@pytest.fixture(scope="session")
def big_remote(interop_ns: RcloneNamespace, account: Account, payloads: dict[str, Path]) -> str:
    """The 101 MiB file, uploaded once by rclone; checks that it really went multipart."""
    remote = account.path("big/big.bin")
    interop_ns.reset_stats()
    upload(interop_ns, payloads["big.bin"], remote)
    requests = interop_ns.stats()["requests"]
    puts = sum(n for key, n in requests.items() if key.startswith("PUT "))
    # 101 MiB in rclone's 30 MiB parts: 30 + 30 + 30 + 11 → four object PUTs (§5.2).
    assert puts == 4, requests
    return remote
