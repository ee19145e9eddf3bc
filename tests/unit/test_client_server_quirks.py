"""The protocol client against an emulator as unkind as the real Internxt (issue 8): listing
ties, replace to empty, legacy files, the per-file cap, trash batches, usage, odd answers."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import httpx
import pytest

from internxtfs.emulator.dto import now_iso
from internxtfs.emulator.store import Store
from internxtfs.internxt import http as http_module
from internxtfs.internxt.errors import LegacyFileFormat, NotFound, RequestRejected, ServerError
from tests.unit.test_client_emulator import Content, MiB, add_account, emu, logged_in, upload_file

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


def set_object_version(emu: Any, file_id: str, version: int) -> None:
    """Make a stored object look like one uploaded in the bridge's legacy format."""
    store = Store(emu.data_dir)
    try:
        with store.transaction() as conn:
            conn.execute("UPDATE entries SET version = ? WHERE id = ?", (version, file_id))
    finally:
        store.close()


async def test_legacy_v1_object_is_a_clear_error(emu: Any) -> None:
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        entry = await upload_file(
            client, client.session.root_folder_uuid, "old.pdf", Content(1, 99)
        )
        set_object_version(emu, entry.file_id, 1)
        with pytest.raises(LegacyFileFormat):
            await client.network.download_range(entry.file_id, 0, 10)


async def test_file_info_with_one_shard_entry_per_mirror_is_read(emu: Any) -> None:
    account = add_account(emu)
    content = Content(2, 1000)
    async with await logged_in(emu, account) as client:
        entry = await upload_file(client, client.session.root_folder_uuid, "m.bin", content)
        emu.set_faults(info_mirrors=3)
        assert await client.network.download_range(entry.file_id, 0, 1000) == content.bytes(0, 1000)


async def test_meta_answered_200_with_no_body_is_retried(emu: Any) -> None:
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        entry = await client.drive.create_file(client.session.root_folder_uuid, "e.txt", 0, None)
        emu.set_faults(empty_answer_next=2, fault_path_regex=r"/meta$")
        meta = await client.drive.file_meta(entry.uuid)
        assert meta.uuid == entry.uuid and meta.status == "EXISTS"
        assert emu.stats()["faults_injected"]["empty_answer"] == 2


def test_bridge_400_that_was_a_server_error_is_retryable() -> None:
    def error(status: int, message: str) -> Exception:
        return http_module.error_for(httpx.Response(status, json={"error": message}), "network")

    assert isinstance(error(400, "Service Unavailable"), ServerError)
    assert isinstance(error(400, "Timed out waiting for pointers"), ServerError)
    refusal = error(400, "Invalid index")
    assert isinstance(refusal, RequestRejected) and not refusal.retryable
    # On the drive API a 400 is a 400, whatever it says.
    drive = http_module.error_for(httpx.Response(400, json={"message": "timed out"}), "drive")
    assert not drive.retryable


async def test_bridge_503_answered_as_400_is_retried(emu: Any) -> None:
    account = add_account(emu)
    content = Content(3, 500)
    async with await logged_in(emu, account) as client:
        entry = await upload_file(client, client.session.root_folder_uuid, "b.bin", content)
        # Seeded: the emulator's first injected faults on /info are 503s, which the bridge
        # answers as 400 {"error": "Service Unavailable"}.
        emu.set_faults(fail_next=3, fault_path_regex=r"/info$", seed=3)
        assert await client.network.download_range(entry.file_id, 0, 500) == content.bytes(0, 500)
        assert emu.stats()["faults_injected"].get("503", 0) >= 1


@pytest.mark.slow
async def test_slow_multipart_finish_is_waited_for_not_uploaded_twice(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completing many parts takes the server a while; a finish answered after the ordinary
    read timeout must not be taken as lost (its retry meets 409 and the whole file would be
    uploaded again, leaving the first object behind)."""
    monkeypatch.setattr(
        http_module, "DEFAULT_TIMEOUT", httpx.Timeout(connect=10.0, read=1.0, write=60.0, pool=60.0)
    )
    account = add_account(emu)
    size = 101 * MiB
    content = Content(4, size)
    async with await logged_in(emu, account) as client:
        emu.set_faults(finish_ms_per_part=500)  # 4 parts: answered after 2 s
        entry = await upload_file(client, client.session.root_folder_uuid, "big.bin", content)
        assert entry.size == size
        usage = emu.user_info(account["email"])
        assert usage["networkUsage"] == size  # one object, no stray copy


# --- creates after a failed attempt, with lagging read replicas ---------------------------


async def test_a_create_refused_with_500_is_sent_again_without_waiting_for_replicas(
    emu: Any,
) -> None:
    """A 500 almost never means the create landed: the check before the resend is one read,
    not a wait for the replica window (which cost 3 s per failed request under faults)."""
    account = add_account(emu)
    async with await logged_in(emu, account, replica_window=30.0) as client:
        root = client.session.root_folder_uuid
        await client.drive.create_folder(root, "before")  # a write of ours: replicas may lag
        emu.set_faults(replica_lag_ms=60_000, fail_next=1, fault_path_regex="^/drive/folders$")
        emu.reset_stats()
        made = await client.drive.create_folder(root, "after")
        requests = emu.stats()["requests"]
        emu.set_faults(replica_lag_ms=0, fault_path_regex=None)
        assert made.name == "after"
        assert requests.get("POST /drive/folders") == 2
        assert requests.get("POST /drive/folders/content/{uuid}/folders/existence") == 1


@pytest.mark.parametrize("kind", ["folder", "file"])
async def test_a_create_whose_answer_was_lost_is_adopted_once_replicas_show_it(
    emu: Any, kind: str
) -> None:
    """The first check misses the entry (the replica trails by 1 s); the resend is refused by
    the server's unique index (500 for a folder, 409 for a file) and the patient check that
    follows finds and adopts our entry: one entry, no error."""
    account = add_account(emu)
    async with await logged_in(emu, account, replica_window=3.0) as client:
        root = client.session.root_folder_uuid
        path = "^/drive/folders$" if kind == "folder" else "^/drive/files$"
        emu.set_faults(
            replica_lag_ms=1000, lose_answer_next=1, fault_path_regex=path, fault_method="POST"
        )
        try:
            if kind == "folder":
                made = await client.drive.create_folder(root, "once")
            else:
                made = await upload_file(client, root, "once.txt", Content(7, 10))
        finally:
            emu.set_faults(replica_lag_ms=0, fault_path_regex=None, fault_method=None)
        assert emu.stats()["faults_injected"]["lost_answer"] == 1
        listed = await (client.drive.list_folders if kind == "folder" else client.drive.list_files)(
            root
        )
        assert [entry.uuid for entry in listed if entry.name == made.name] == [made.uuid]
        assert client.retry.stats.recovered == 1


async def test_a_failed_create_in_a_folder_just_made_is_checked_and_sent_again(emu: Any) -> None:
    """The check before the resend asks for the name in a parent the replica does not show yet
    (400 "Parent folder not valid" for folders, 404 for files): the parent is not there yet,
    so neither is our entry, and the create is asked again (restic init under faults got
    EINVAL for mkdir repo/keys)."""
    account = add_account(emu)
    async with await logged_in(emu, account, replica_window=3.0) as client:
        root = client.session.root_folder_uuid
        emu.set_faults(replica_lag_ms=1000)
        try:
            parent = await client.drive.create_folder(root, "repo")
            emu.set_faults(fail_next=2, fault_path_regex="^/drive/(folders|files)$")
            child = await client.drive.create_folder(parent.uuid, "keys")
            made = await upload_file(client, parent.uuid, "config", Content(8, 10))
        finally:
            emu.set_faults(replica_lag_ms=0, fault_path_regex=None)
        assert (
            emu.stats()["faults_injected"].get("500", 0)
            + emu.stats()["faults_injected"].get("503", 0)
            == 2
        )
        assert [f.uuid for f in await client.drive.list_folders(parent.uuid)] == [child.uuid]
        assert [f.uuid for f in await client.drive.list_files(parent.uuid)] == [made.uuid]


async def test_replacing_a_file_deleted_elsewhere_is_a_not_found(emu: Any) -> None:
    """A replica still shows the file, so the client replaces it; the server refuses with 400
    "DELETED files can not be replaced". That is the entry gone (the uploader then creates it
    again, or stores it in the recovery folder), not a refusal to retry forever."""
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        root = client.session.root_folder_uuid
        entry = await upload_file(client, root, "gone.txt", Content(9, 10))
        new_id = await client.network.upload(Content(10, 12).read, 12)
        await client.drive.delete_file(entry.uuid)
        with pytest.raises(NotFound):
            await client.drive.replace_file(entry.uuid, new_id, 12)


async def test_a_move_back_is_not_taken_for_done_by_a_lagging_replica(emu: Any) -> None:
    """A file (folder) moved from a to b and at once back: the server's name lookup reads a
    replica that still shows it in a, and answers 409 "was already moved to that location".
    That is not the move done: the client waits until the replicas show its first move, finds
    the entry in b, and sends the move again."""
    account = add_account(emu)
    async with await logged_in(emu, account, replica_window=3.0) as client:
        drive = client.drive
        root = client.session.root_folder_uuid
        a = await drive.create_folder(root, "a")
        b = await drive.create_folder(root, "b")
        x = await upload_file(client, a.uuid, "x.txt", Content(1, 10))
        d = await drive.create_folder(a.uuid, "d")
        emu.set_faults(replica_lag_ms=1000)
        try:
            await drive.move_file(x.uuid, b.uuid, "x.txt")
            back = await drive.move_file(x.uuid, a.uuid, "x.txt")
            await drive.move_folder(d.uuid, b.uuid, "d")
            folder_back = await drive.move_folder(d.uuid, a.uuid, "d")
        finally:
            emu.set_faults(replica_lag_ms=0)
        assert (back.folder_uuid, folder_back.parent_uuid) == (a.uuid, a.uuid)
        assert [f.uuid for f in await drive.list_files(a.uuid)] == [x.uuid]
        assert [f.uuid for f in await drive.list_folders(a.uuid)] == [d.uuid]
        assert await drive.list_files(b.uuid) == [] and await drive.list_folders(b.uuid) == []
