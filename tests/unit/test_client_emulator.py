"""The protocol client against the real emulator over sockets: login and 2FA, token renewal,
listing, upload/download of every size class, ranged reads, conflicts, quota and size caps,
and injected faults survived with identical bytes."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pyotp
import pytest
import trio

from internxtfs.internxt import auth, crypto
from internxtfs.internxt.auth import Credentials
from internxtfs.internxt.client import InternxtClient
from internxtfs.internxt.errors import (
    AccountBlocked,
    Conflict,
    EmptyFilesLimit,
    FileTooLarge,
    NotFound,
    PlanNotAllowed,
    QuotaExceeded,
    SessionExpired,
    TwoFactorRequired,
    WrongCredentials,
    WrongTwoFactorCode,
)
from internxtfs.internxt.retry import RetryPolicy

MiB = 1024 * 1024
PASSWORD = "correct horse battery staple"
_counter = itertools.count()


def fast_retry(attempts: int = 8) -> RetryPolicy:
    # Short backoff keeps fault tests quick; Retry-After from the emulator is still honoured.
    return RetryPolicy(attempts=attempts, base=0.05, cap=0.5)


def new_email() -> str:
    return f"client-{next(_counter)}-{uuidlib.uuid4().hex[:8]}@example.com"


class Content:
    """Seeded, random-access test content: an AES-CTR keystream, so any byte range is computed
    on demand and a 101 MiB file is never held in memory."""

    def __init__(self, seed: int, size: int) -> None:
        self.key = hashlib.sha256(f"content-{seed}".encode()).digest()
        self.iv = bytes(16)
        self.size = size

    def bytes(self, offset: int, n: int) -> bytes:
        n = max(0, min(n, self.size - offset))
        return crypto.ctr_crypt(self.key, self.iv, bytes(n), offset)

    async def read(self, offset: int, n: int) -> bytes:
        return self.bytes(offset, n)

    def sha256(self, chunk: int = 4 * MiB) -> str:
        h = hashlib.sha256()
        for off in range(0, self.size, chunk):
            h.update(self.bytes(off, chunk))
        return h.hexdigest()


async def stream_sha256(stream: AsyncIterator[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    total = 0
    async for chunk in stream:
        h.update(chunk)
        total += len(chunk)
    return h.hexdigest(), total


@pytest.fixture
def emu(emulator: Any) -> Any:
    """The per-test emulator; knobs are put back anyway in case it ever becomes shared."""
    yield emulator
    emulator.set_faults(
        latency_ms=0, fail_rate=0, throttle_rate=0, reset_rate=0, bandwidth=0, token_lifetime=None
    )


def add_account(emu: Any, **kwargs: Any) -> dict[str, Any]:
    email = new_email()
    info = emu.add_user(email=email, password=PASSWORD, **kwargs)
    return {**info, "password": PASSWORD, "email": info.get("email", email)}


def make_client(emu: Any, **kwargs: Any) -> InternxtClient:
    kwargs.setdefault("retry", fast_retry())
    return InternxtClient(drive_url=emu.drive_url, network_url=emu.network_url, **kwargs)


async def logged_in(emu: Any, account: dict[str, Any], **kwargs: Any) -> InternxtClient:
    client = make_client(emu, **kwargs)
    await client.login(account["email"], account["password"], remember=True)
    return client


# --- login --------------------------------------------------------------------------------


async def test_login_without_2fa(emu: Any) -> None:
    mnemonic = crypto.generate_mnemonic()
    account = add_account(emu, mnemonic=mnemonic)
    async with make_client(emu) as client:
        session = await client.login(account["email"], PASSWORD)
        assert session.mnemonic == mnemonic
        assert session.bucket == account["bucket"]
        assert session.root_folder_uuid == account["rootFolderId"]
        assert session.user_uuid == account["uuid"]
        assert session.bridge_user == account["bridgeUser"]
        assert session.expires_at > session.issued_at
        assert await client.drive.list_files(session.root_folder_uuid) == []


async def test_login_wrong_password_and_unknown_email(emu: Any) -> None:
    account = add_account(emu)
    async with make_client(emu) as client:
        with pytest.raises(WrongCredentials):
            await client.login(account["email"], "wrong")
        with pytest.raises(WrongCredentials):
            await client.login(new_email(), PASSWORD)


async def test_login_with_2fa_code_and_stored_secret(emu: Any) -> None:
    secret = pyotp.random_base32()
    account = add_account(emu, totp_secret=secret)
    async with make_client(emu) as client:
        with pytest.raises(TwoFactorRequired):
            await client.login(account["email"], PASSWORD)
        now = pyotp.TOTP(secret).now()
        wrong = f"{(int(now) + 500000) % 1000000:06d}"
        with pytest.raises(WrongTwoFactorCode):
            await client.login(account["email"], PASSWORD, code=wrong)
        session = await client.login(account["email"], PASSWORD, code=pyotp.TOTP(secret).now())
        assert session.bucket == account["bucket"]
        session = await client.login(account["email"], PASSWORD, totp_secret=secret)
        assert session.bucket == account["bucket"]


async def test_lockout_after_repeated_failures(emu: Any) -> None:
    account = add_account(emu)
    async with make_client(emu) as client:
        blocked = False
        for _ in range(12):
            try:
                await client.login(account["email"], "wrong")
            except WrongCredentials:
                continue
            except AccountBlocked:
                blocked = True
                break
        assert blocked
        with pytest.raises(AccountBlocked):
            await client.login(account["email"], PASSWORD)


async def test_plan_without_cli_access(emu: Any) -> None:
    account = add_account(emu)
    emu.update_user(account["email"], cli_access=False)
    async with make_client(emu) as client:
        with pytest.raises(PlanNotAllowed):
            await client.login(account["email"], PASSWORD)


async def test_token_expiry_refresh_then_relogin(emu: Any) -> None:
    account = add_account(emu)
    emu.set_faults(token_lifetime=6)
    changes: list[auth.Session] = []
    async with make_client(emu, on_session_change=changes.append) as client:
        first = await client.login(account["email"], PASSWORD, remember=True)
        assert first.expires_at - first.issued_at == pytest.approx(6, abs=1)
        sm = client.session_manager
        root = first.root_folder_uuid
        await client.drive.list_folders(root)
        assert sm.refreshes == 0
        # Less than a third of the lifetime left (but not expired): renew ahead.
        await trio.sleep(first.expires_at - 1.2 - time.time())
        await client.drive.list_folders(root)
        assert sm.refreshes == 1 and changes and changes[-1].token != first.token

        # The server forgets the token (logout blacklists it): refresh fails, re-login works.
        await auth.logout(client.http, sm.session)
        await client.drive.list_folders(root)
        assert sm.relogins == 1

        # Token fully expired and no credentials: the session is over.
        sm.credentials = None
        await trio.sleep(sm.session.expires_at + 0.5 - time.time())
        with pytest.raises(SessionExpired):
            await client.drive.list_folders(root)


async def test_expired_token_relogs_in_with_totp_secret(emu: Any) -> None:
    secret = pyotp.random_base32()
    account = add_account(emu, totp_secret=secret)
    emu.set_faults(token_lifetime=2)
    async with make_client(emu) as client:
        await client.login(account["email"], PASSWORD, totp_secret=secret, remember=True)
        await trio.sleep(2.5)  # expired: refresh is refused, so a full 2FA login is needed
        await client.drive.usage()
        assert client.session_manager.relogins == 1


# --- listing ------------------------------------------------------------------------------


async def test_folder_of_120_entries_is_listed_completely(emu: Any) -> None:
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        drive = client.drive
        parent = await drive.create_folder(client.session.root_folder_uuid, "big")
        folder_names = [f"dir-{i:03d}" for i in range(55)]
        file_names = [f"file-{i:03d}.txt" for i in range(65)]

        async with trio.open_nursery() as nursery:
            for name in folder_names:
                nursery.start_soon(drive.create_folder, parent.uuid, name)
            for name in file_names:
                nursery.start_soon(drive.create_file, parent.uuid, name, 0, None)

        emu.reset_stats()
        emu.set_faults(latency_ms=30)  # slow answers make the concurrent pages observable
        folders = await drive.list_folders(parent.uuid)
        files = await drive.list_files(parent.uuid)
        stats = emu.stats()
        emu.set_faults(latency_ms=0)
        pages = [route for route in stats["requests"] if "/folders/content/" in route]
        assert pages and max(stats["max_concurrent_by_route"][r] for r in pages) > 1
        assert sorted(f.name for f in folders) == folder_names
        assert sorted(f.name for f in files) == file_names
        assert all(f.size == 0 and f.file_id is None for f in files)
        assert all(f.parent_uuid == parent.uuid for f in folders)


# --- upload / download --------------------------------------------------------------------


async def upload_file(client: InternxtClient, folder: str, name: str, content: Content) -> Any:
    file_id = await client.network.upload(content.read, content.size) if content.size else None
    return await client.drive.create_file(folder, name, content.size, file_id, mtime=1.7e9)


async def test_zero_byte_file_never_touches_the_network(emu: Any) -> None:
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        emu.reset_stats()
        entry = await upload_file(client, client.session.root_folder_uuid, "empty", Content(0, 0))
        assert entry.size == 0 and entry.file_id is None
        assert entry.modified == pytest.approx(1.7e9)
        stats = emu.stats()
        assert not any("network" in route or "objects" in route for route in stats["requests"])
        with pytest.raises(ValueError):
            await client.network.upload(Content(0, 0).read, 0)


@pytest.mark.parametrize("size", [1, 17, 5 * MiB])
async def test_upload_download_roundtrip(emu: Any, size: int) -> None:
    account = add_account(emu)
    content = Content(size, size)
    async with await logged_in(emu, account) as client:
        root = client.session.root_folder_uuid
        entry = await upload_file(client, root, f"blob-{size}.bin", content)
        listed = {f.name: f for f in await client.drive.list_files(root)}
        assert listed[f"blob-{size}.bin"].size == size
        assert listed[f"blob-{size}.bin"].file_id == entry.file_id
        digest, total = await stream_sha256(client.network.download_stream(entry.file_id))
        assert total == size and digest == content.sha256()
        whole = await client.network.download_range(entry.file_id, 0, size)
        assert whole == content.bytes(0, size)


async def test_ranged_reads_at_unaligned_offsets(emu: Any) -> None:
    account = add_account(emu)
    size = 5 * MiB + 123
    content = Content(7, size)
    async with await logged_in(emu, account) as client:
        entry = await upload_file(client, client.session.root_folder_uuid, "r.bin", content)
        cases = [(0, 1), (1, 15), (15, 2), (16, 16), (17, 4097), (MiB - 3, 10), (size - 5, 100)]
        cases += [(size, 10), (123457, 1 * MiB + 7)]
        for offset, length in cases:
            got = await client.network.download_range(entry.file_id, offset, length)
            assert got == content.bytes(offset, length), (offset, length)


@pytest.mark.slow
async def test_multipart_upload_of_101_mib(emu: Any) -> None:
    account = add_account(emu)
    size = 101 * MiB
    content = Content(101, size)
    async with await logged_in(emu, account) as client:
        emu.reset_stats()
        entry = await upload_file(client, client.session.root_folder_uuid, "big.bin", content)
        stats = emu.stats()
        assert entry.size == size
        assert stats["requests"]["PUT /objects/{name}"] == 4  # 30 MiB parts
        assert stats["max_concurrent_by_route"]["PUT /objects/{name}"] > 1
        digest, total = await stream_sha256(client.network.download_stream(entry.file_id))
        assert total == size and digest == content.sha256()
        boundary = 30 * MiB
        for offset, length in [(boundary - 7, 20), (2 * boundary + 5, 33), (size - 17, 17)]:
            got = await client.network.download_range(entry.file_id, offset, length)
            assert got == content.bytes(offset, length)


# --- rename / move / delete ---------------------------------------------------------------


async def test_a_move_sent_again_after_it_was_done_is_done(emu: Any) -> None:
    """An earlier call of the same move landed and gave up without knowing it (its answer
    lost, its budget spent), and the user runs `mv` again: Internxt answers 409 "was already
    moved to that location", which is the move done, not a name taken."""
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        drive = client.drive
        root = client.session.root_folder_uuid
        a = await drive.create_folder(root, "a")
        b = await drive.create_folder(root, "b")
        x = await upload_file(client, a.uuid, "x.txt", Content(1, 10))
        emu.reset_stats()
        for _ in range(2):
            moved = await drive.move_file(x.uuid, b.uuid, "y.txt")
            assert (moved.folder_uuid, moved.name) == (b.uuid, "y.txt")
            folder = await drive.move_folder(a.uuid, b.uuid, "c")
            assert (folder.parent_uuid, folder.name) == (b.uuid, "c")
        assert emu.stats()["requests"]["PATCH /drive/files/{uuid}"] == 2
        # Another file holding the name is still a conflict.
        z = await upload_file(client, root, "z.txt", Content(2, 10))
        with pytest.raises(Conflict):
            await drive.move_file(z.uuid, b.uuid, "y.txt")


async def test_rename_move_delete_with_conflicts(emu: Any) -> None:
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        drive = client.drive
        root = client.session.root_folder_uuid
        a = await drive.create_folder(root, "a")
        b = await drive.create_folder(root, "b")
        with pytest.raises(Conflict):
            await drive.create_folder(root, "a")
        x = await upload_file(client, a.uuid, "x.txt", Content(1, 10))
        y = await upload_file(client, a.uuid, "y.txt", Content(2, 10))
        with pytest.raises(Conflict):
            await upload_file(client, a.uuid, "x.txt", Content(3, 10))

        with pytest.raises(Conflict):
            await drive.rename_file(x.uuid, "y.txt")
        renamed = await drive.rename_file(x.uuid, "x.tar.gz")
        assert (renamed.plain_name, renamed.type, renamed.name) == ("x.tar", "gz", "x.tar.gz")

        moved = await drive.move_file(renamed.uuid, b.uuid, "noext")
        assert moved.folder_uuid == b.uuid and moved.name == "noext" and moved.type == ""
        dot = await drive.rename_file(moved.uuid, ".bashrc")
        assert dot.name == ".bashrc"
        await upload_file(client, b.uuid, "y.txt", Content(4, 10))
        with pytest.raises(Conflict):
            await drive.move_file(y.uuid, b.uuid, "y.txt")

        c = await drive.create_folder(b.uuid, "a")
        with pytest.raises(Conflict):
            await drive.move_folder(c.uuid, root)
        with pytest.raises(Conflict):
            await drive.rename_folder(b.uuid, "a")
        c2 = await drive.move_folder(c.uuid, root, "c")
        assert c2.parent_uuid == root and c2.name == "c"
        c3 = await drive.rename_folder(c2.uuid, "c3")
        assert (await drive.folder_meta(c3.uuid)).name == "c3"

        assert [f.name for f in await drive.files_exist(b.uuid, [".bashrc", "nope"])] == [".bashrc"]
        assert [f.name for f in await drive.folders_exist(root, ["a", "zz"])] == ["a"]

        await drive.delete_file(dot.uuid)
        assert [f.name for f in await drive.list_files(b.uuid)] == ["y.txt"]
        meta = None
        with contextlib.suppress(NotFound):
            meta = await drive.file_meta(dot.uuid)
        assert meta is None or meta.status != "EXISTS"
        await drive.delete_folder(b.uuid)
        names = sorted(f.name for f in await drive.list_folders(root))
        assert names == ["a", "c3"]
        await drive.trash([(y.uuid, "file")])
        assert await drive.list_files(a.uuid) == []


# --- quota and caps -----------------------------------------------------------------------


async def test_quota_exceeded(emu: Any) -> None:
    account = add_account(emu, quota=1000)
    async with await logged_in(emu, account) as client:
        assert await client.drive.limit() == 1000
        await upload_file(client, client.session.root_folder_uuid, "fits", Content(1, 600))
        assert await client.drive.usage() == 600
        with pytest.raises(QuotaExceeded):
            await upload_file(client, client.session.root_folder_uuid, "big", Content(2, 600))


async def test_deleting_an_unreferenced_object_gives_its_space_back(emu: Any) -> None:
    account = add_account(emu, quota=1000)
    async with await logged_in(emu, account) as client:
        content = Content(3, 700)
        orphan = await client.network.upload(content.read, content.size)  # no drive entry
        with pytest.raises(QuotaExceeded):  # the bridge charges for it all the same
            await client.network.upload(Content(4, 400).read, 400)
        # The answer to the delete is lost: the resend meets 404, which counts as done.
        emu.set_faults(lose_answer_next=1, fault_method="DELETE")
        await client.network.delete(orphan)
        emu.set_faults(fault_method=None)
        assert emu.stats()["faults_injected"]["lost_answer"] == 1
        assert emu.user_info(account["email"])["networkUsage"] == 0
        await upload_file(client, client.session.root_folder_uuid, "fits", Content(4, 400))
        await client.network.delete(orphan)  # already gone: still fine
        # A 404 for the bucket is not "already gone": it must not pass for a deletion.
        real_bucket, client.network.bucket = client.network.bucket, "f" * 24
        try:
            with pytest.raises(NotFound):
                await client.network.delete(orphan)
        finally:
            client.network.bucket = real_bucket


async def test_file_size_cap_and_empty_file_cap(emu: Any) -> None:
    account = add_account(emu)
    emu.update_user(account["email"], max_file_size=100, empty_file_cap=0)
    async with await logged_in(emu, account) as client:
        root = client.session.root_folder_uuid
        assert await client.drive.file_limits() == 100
        await upload_file(client, root, "small", Content(1, 100))
        with pytest.raises(FileTooLarge):
            await upload_file(client, root, "large", Content(2, 101))
        with pytest.raises(EmptyFilesLimit):
            await upload_file(client, root, "empty", Content(3, 0))


# --- faults -------------------------------------------------------------------------------


async def test_injected_500s_429s_and_resets_are_survived(emu: Any) -> None:
    account = add_account(emu)
    async with await logged_in(emu, account, retry=fast_retry(12)) as client:
        root = client.session.root_folder_uuid
        emu.set_faults(fail_rate=0.25, throttle_rate=0.05, reset_rate=0.3, seed=1234)
        contents = [Content(50 + i, size) for i, size in enumerate([1, 17, 3 * MiB + 5])]
        entries = [await upload_file(client, root, f"f{i}", c) for i, c in enumerate(contents)]
        listed = sorted(f.name for f in await client.drive.list_files(root))
        assert listed == ["f0", "f1", "f2"]
        for entry, content in zip(entries, contents, strict=True):
            digest, total = await stream_sha256(client.network.download_stream(entry.file_id))
            assert (digest, total) == (content.sha256(), content.size)
            got = await client.network.download_range(entry.file_id, 3, 1000)
            assert got == content.bytes(3, 1000)
        stats = emu.stats()
        emu.set_faults(fail_rate=0, throttle_rate=0, reset_rate=0)
        assert client.retry.stats.retries > 0
        assert sum(stats["faults_injected"].values()) > 0


async def test_one_shot_faults_each_path(emu: Any) -> None:
    account = add_account(emu)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await trio.sleep(min(seconds, 0.05))

    retry = RetryPolicy(attempts=6, base=0.05, cap=0.5, sleep=sleep)
    async with await logged_in(emu, account, retry=retry) as client:
        root = client.session.root_folder_uuid
        content = Content(77, 3 * MiB + 1)
        emu.set_faults(throttle_next=1, fault_path_regex="/files/start")
        file_id = await client.network.upload(content.read, content.size)
        assert 1.0 in delays  # the emulator's Retry-After: 1
        emu.set_faults(fail_next=2, fault_path_regex="^/drive/files$")
        entry = await client.drive.create_file(root, "f.bin", content.size, file_id)
        emu.set_faults(reset_next=1, fault_path_regex="^/objects/")
        digest, total = await stream_sha256(client.network.download_stream(entry.file_id))
        assert (digest, total) == (content.sha256(), content.size)
        emu.set_faults(reset_next=1, fault_path_regex="^/objects/")
        file_id2 = await client.network.upload(content.read, content.size)
        emu.set_faults(fault_path_regex=None)
        stats = emu.stats()
        injected = stats["faults_injected"]
        assert injected.get("429") == 1 and injected.get("reset") == 2
        assert injected.get("500", 0) + injected.get("503", 0) == 2
        got = await client.network.download_range(file_id2, 5, 100)
        assert got == content.bytes(5, 100)
        assert [f.name for f in await client.drive.list_files(root)] == ["f.bin"]


class DropAfterCreate(httpx.AsyncBaseTransport):
    """Lets the first ``POST /files`` reach the server, then loses its answer."""

    def __init__(self, match: Callable[[httpx.Request], bool]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.match = match
        self.dropped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.dropped == 0 and self.match(request):
            self.dropped += 1
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("connection reset by peer (simulated)", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_create_after_dropped_answer_makes_one_entry(emu: Any) -> None:
    account = add_account(emu)
    transport = DropAfterCreate(
        lambda r: r.method == "POST" and r.url.path.endswith(("/drive/files", "/drive/folders"))
    )
    async with await logged_in(emu, account, transport=transport) as client:
        root = client.session.root_folder_uuid
        entry = await upload_file(client, root, "once.txt", Content(9, 33))
        assert transport.dropped == 1
        files = await client.drive.list_files(root)
        assert [(f.name, f.uuid) for f in files] == [("once.txt", entry.uuid)]
        assert client.retry.stats.recovered >= 1
        transport.dropped = 0
        folder = await client.drive.create_folder(root, "once-dir")
        assert [f.uuid for f in await client.drive.list_folders(root)] == [folder.uuid]


async def test_stored_session_and_credentials_resume(emu: Any) -> None:
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        stored = client.session.to_dict()
    session = auth.Session.from_dict(stored)
    creds = Credentials(account["email"], PASSWORD)
    async with InternxtClient(
        session, creds, drive_url=emu.drive_url, network_url=emu.network_url
    ) as fresh:
        assert await fresh.drive.list_files(session.root_folder_uuid) == []
        assert fresh.network.bucket == account["bucket"]
