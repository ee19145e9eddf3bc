"""Fixtures for end-to-end tests: a real FUSE mount of an emulator account."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.durability import mount_factory
from tests.harness.mounting import MountedFS, fuse_available


@pytest.fixture
def fs_user(emulator: Any) -> dict[str, Any]:
    return emulator.add_user(email=f"user-{uuid.uuid4().hex[:8]}@example.com", password="pw-e2e")


@pytest.fixture
def mounted_factory(emulator: Any, tmp_path: Path) -> Iterator[Any]:
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    mounts: list[MountedFS] = []

    def make(user: dict[str, Any] | None = None, *extra: str, name: str = "m") -> MountedFS:
        user = user or emulator.add_user(
            email=f"user-{uuid.uuid4().hex[:8]}@example.com", password="pw-e2e"
        )
        m = MountedFS(emulator, user, tmp_path / name)
        m.login()
        m.mount(*extra)
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        m.unmount()


@pytest.fixture
def mounted(mounted_factory: Any) -> MountedFS:
    return mounted_factory()


@pytest.fixture
def new_mount(emulator: Any, tmp_path: Path) -> Iterator[Any]:
    """Mounts that can be killed and mounted again (see tests/harness/durability.py)."""
    yield from mount_factory(emulator, tmp_path)
