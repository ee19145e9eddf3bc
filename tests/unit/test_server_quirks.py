"""The protocol client against an emulator as unkind as the real Internxt (issue 8): listing
ties, replace to empty, legacy files, the per-file cap, trash batches, usage, odd answers."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from internxtfs.emulator.dto import now_iso
from internxtfs.emulator.store import Store
from tests.unit.test_client_emulator import add_account, emu, logged_in

__all__ = ["emu"]  # the fixture, shared with the neighbouring client tests


def seed_empty_files(emu: Any, folder_uuid: str, names: list[str]) -> None:
    """Empty file entries written straight into the emulator's database (which it shares with
    other processes, see emulator/store.py): 2,000 creates over HTTP would take seconds."""
    store = Store(emu.data_dir)
    try:
        folder = store.one("SELECT * FROM folders WHERE uuid = ?", folder_uuid)
        assert folder is not None
        user = store.one("SELECT * FROM users WHERE id = ?", folder["user_id"])
        assert user is not None
        now = now_iso()
        with store.transaction() as conn:
            for name in names:
                stem, _, ext = name.rpartition(".")
                conn.execute(
                    "INSERT INTO files (uuid, user_id, folder_id, folder_uuid, plain_name, type,"
                    " size, file_id, bucket, created_at, updated_at, creation_time,"
                    " modification_time) VALUES (?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?, ?, ?)",
                    (str(uuidlib.uuid4()), user["id"], folder["id"], folder_uuid, stem, ext,
                     user["bucket"], now, now, now, now),
                )  # fmt: skip
    finally:
        store.close()


async def test_folder_of_2001_files_sharing_stems_lists_completely_20_times(emu: Any) -> None:
    """Each stem has three extensions, so most page boundaries fall inside a group of entries
    that tie on ``plainName``; the emulator orders such ties anew on every request, as
    PostgreSQL may. Paging on a unique key finds every entry every time."""
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        drive = client.drive
        folder = await drive.create_folder(client.session.root_folder_uuid, "many")
        names = [f"report-{i:03d}.{ext}" for i in range(667) for ext in ("pdf", "docx", "txt")]
        seed_empty_files(emu, folder.uuid, names)

        for attempt in range(20):
            listed = [entry.name for entry in await drive.list_files(folder.uuid)]
            assert len(listed) == len(names), f"listing {attempt}"
            assert sorted(listed) == sorted(names), f"listing {attempt}"


async def test_trash_of_more_than_50_items_is_sent_in_batches(emu: Any) -> None:
    """The server takes at most 50 items per trash request."""
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        drive = client.drive
        folder = await drive.create_folder(client.session.root_folder_uuid, "bin")
        names = [f"f{i:03d}.txt" for i in range(120)]
        seed_empty_files(emu, folder.uuid, names)
        entries = await drive.list_files(folder.uuid)
        assert len(entries) == len(names)
        await drive.trash([(entry.uuid, "file") for entry in entries])
        assert await drive.list_files(folder.uuid) == []
        for entry in entries[::17]:
            assert (await drive.file_meta(entry.uuid)).status == "TRASHED"


async def test_usage_is_the_total_the_quota_is_measured_against(emu: Any) -> None:
    account = add_account(emu)
    emu.update_user(account["email"], backup_usage=12345)
    async with await logged_in(emu, account) as client:
        assert await client.drive.usage() == 12345
