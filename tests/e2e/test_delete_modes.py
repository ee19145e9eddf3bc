"""--delete-mode permanent frees the quota once the deletes are sent (at the latest when
``flush`` returns); --delete-mode trash keeps files restorable."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio

from internxtfs.internxt.client import InternxtClient
from tests.harness.durability import flush_ok
from tests.harness.mounting import MountedFS


async def _usage_and_trash(emulator: Any, user: dict[str, Any]) -> tuple[int, int]:
    async with InternxtClient(drive_url=emulator.drive_url, network_url=emulator.network_url) as c:
        await c.login(user["email"], user["password"])
        usage = await c.drive.usage()
        token = await c.session_manager.token()
        answer = await c.http.client.get(  # not part of our client's API: read it raw
            f"{emulator.drive_url}/storage/trash/paginated",
            params={"limit": 50, "offset": 0, "type": "files", "root": "true"},
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        return usage, len(answer.json()["result"])


@pytest.mark.parametrize("mode", ["permanent", "trash"])
def test_delete_mode(
    mounted_factory: Any, fs_user: dict[str, Any], emulator: Any, mode: str
) -> None:
    m: MountedFS = mounted_factory(fs_user, "--delete-mode", mode)
    (m.mountpoint / "d").mkdir()
    (m.mountpoint / "d" / "pack").write_bytes(os.urandom(200_000))
    (m.mountpoint / "gone").write_bytes(os.urandom(100_000))
    m.unmount()
    m.mount("--delete-mode", mode)
    os.unlink(m.mountpoint / "gone")
    os.unlink(m.mountpoint / "d" / "pack")
    os.rmdir(m.mountpoint / "d")
    assert os.listdir(m.mountpoint) == []
    flush_ok(m)  # file deletes are sent in the background; flush waits for them
    usage, trashed = trio.run(_usage_and_trash, emulator, fs_user)
    if mode == "permanent":
        assert (usage, trashed) == (0, 0)
    else:
        assert usage == 300_000  # trash still counts against the quota
        assert trashed >= 1
