"""Protocol client against scripted in-process transports: retry policy, error mapping,
session renewal, recovery of non-idempotent calls, paged listing, name splitting."""

from __future__ import annotations

import json
import time
import uuid as uuidlib
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import jwt
import pytest
import trio

from internxtfs.internxt import crypto, endpoints
from internxtfs.internxt.auth import Credentials, Session, SessionManager, login
from internxtfs.internxt.drive import DriveAPI, FileEntry
from internxtfs.internxt.errors import (
    AccountBlocked,
    Conflict,
    EmptyFilesLimit,
    FileTooLarge,
    Forbidden,
    InvalidName,
    NotFound,
    PlanNotAllowed,
    QuotaExceeded,
    RequestRejected,
    ServerError,
    SessionExpired,
    TwoFactorRequired,
    Unreachable,
    WrongCredentials,
    WrongTwoFactorCode,
)
from internxtfs.internxt.http import Http, error_for, parse_retry_after
from internxtfs.internxt.names import join_name, name_problem, split_name
from internxtfs.internxt.network import NetworkAPI
from internxtfs.internxt.retry import RetryPolicy

DRIVE = "http://drive.test/drive"
NETWORK = "http://drive.test/network"
ROOT = str(uuidlib.uuid4())
BUCKET = "5f3c1e2d4b6a798812345678"
MNEMONIC = crypto.mnemonic_from_entropy(bytes(range(32)))


class Sleeps:
    """Injected sleep: records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await trio.lowlevel.checkpoint()


def make_token(lifetime: float = 3 * 86400, now: float | None = None) -> str:
    now = time.time() if now is None else now
    claims = {
        "jti": str(uuidlib.uuid4()),
        "sub": "user",
        "iat": int(now),
        "exp": int(now + lifetime),
        "payload": {"uuid": "user"},
    }
    return jwt.encode(claims, "a-test-secret-of-at-least-32-bytes!", algorithm="HS256")


def make_session(token: str | None = None) -> Session:
    token = token or make_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    return Session(
        token=token,
        expires_at=float(claims["exp"]),
        issued_at=float(claims["iat"]),
        email="a@b.c",
        user_uuid="user",
        root_folder_uuid=ROOT,
        bucket=BUCKET,
        bridge_user="a@b.c",
        user_id="$2a$08$x",
        mnemonic=MNEMONIC,
    )


def respond(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def make_http(handler: Callable[[httpx.Request], Any]) -> Http:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Http(client, drive_url=DRIVE, network_url=NETWORK)


def policy(sleeps: Sleeps, attempts: int = 6) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=sleeps, random=lambda: 0.5)


# --- retry policy -------------------------------------------------------------------------


def test_full_jitter_grows_exponentially_and_is_capped() -> None:
    p = RetryPolicy(base=0.5, cap=30.0, random=lambda: 1.0)
    assert [p.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    p = RetryPolicy(base=0.5, cap=30.0, random=lambda: 0.25)
    assert p.delay(3) == 0.5


def test_retry_after_replaces_the_jitter() -> None:
    p = RetryPolicy(random=lambda: 0.0, max_retry_after=100)
    assert p.delay(1, ServerError("slow down", status=429, retry_after=7)) == 7
    assert p.delay(1, ServerError("slow down", status=429, retry_after=1000)) == 100
    assert p.delay(1, ServerError("down", status=503)) == 0.0


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    when = format_datetime(datetime.fromtimestamp(now + 42, UTC), usegmt=True)
    assert 40 <= (parse_retry_after(when, now=now) or 0) <= 43
    past = format_datetime(datetime.fromtimestamp(now - 42, UTC), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


async def test_429_with_retry_after_is_honoured_then_succeeds() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return respond(429, {"message": "Too many"}, {"retry-after": "4"})
        if calls == 2:
            return respond(503, {"message": "down"})
        return respond(200, {"drive": 5})

    sleeps = Sleeps()
    http = make_http(handler)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(sleeps))
    assert await drive.usage() == 5
    assert sleeps.delays == [4.0, 0.5]  # Retry-After, then jitter 0.5 × base·2
    assert drive._retry.stats.retries == 2


async def test_other_4xx_are_never_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return respond(404, {"message": "File not found", "statusCode": 404})

    sleeps = Sleeps()
    http = make_http(handler)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(sleeps))
    with pytest.raises(NotFound):
        await drive.file_meta(str(uuidlib.uuid4()))
    assert calls == 1 and sleeps.delays == []


async def test_dropped_connections_are_retried_then_reported_unreachable() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    sleeps = Sleeps()
    http = make_http(handler)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(sleeps, 4))
    with pytest.raises(Unreachable):
        await drive.limit()
    assert calls == 4 and len(sleeps.delays) == 3
    assert "RemoteProtocolError" in (drive._retry.stats.last_error or "")


@pytest.mark.parametrize(
    ("errors", "sent"),
    [
        ([httpx.ConnectError], False),  # refused every time: nothing ever left
        ([httpx.RemoteProtocolError, httpx.ConnectError], True),  # the first one may have
        ([httpx.ConnectError, httpx.ReadTimeout], True),
    ],
)
async def test_an_unreachable_call_says_whether_anything_left(
    errors: list[type[httpx.TransportError]], sent: bool
) -> None:
    """fs/pending.py keeps a queued mkdir cancellable only when no attempt of its create ever
    reached the server (a connection refused is not carried out)."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise errors[min(calls, len(errors)) - 1]("down", request=request)

    http = make_http(handler)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(Sleeps(), 2))
    with pytest.raises(Unreachable) as failed:
        await drive.limit()
    assert failed.value.sent is sent


# --- error mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "cls"),
    [
        (401, {"message": "Wrong login credentials"}, "drive", WrongCredentials),
        (401, {"message": "Wrong 2-factor auth code"}, "drive", WrongTwoFactorCode),
        (401, {"message": "Unauthorized", "statusCode": 401}, "drive", SessionExpired),
        (
            403,
            {"message": "Your account has been blocked for security reasons."},
            "drive",
            AccountBlocked,
        ),
        (403, {"message": "Forbidden"}, "drive", Forbidden),
        (402, {"message": "cli access not allowed for this user tier"}, "drive", PlanNotAllowed),
        (
            402,
            {"message": "File size exceeds the maximum", "error": "FILE_UPLOAD_SIZE_EXCEEDED"},
            "drive",
            FileTooLarge,
        ),
        (402, {"message": "You can not have empty files, upgrade"}, "drive", EmptyFilesLimit),
        (400, {"message": "You can not have more empty files"}, "drive", EmptyFilesLimit),
        (400, {"message": "Invalid folder name"}, "drive", InvalidName),
        (400, {"message": ["limit must not be greater than 50"]}, "drive", RequestRejected),
        (404, {"message": "File not found"}, "drive", NotFound),
        (409, {"message": "File already exists"}, "drive", Conflict),
        (420, {"error": "Max space used"}, "network", QuotaExceeded),
        (408, {"message": "Request timed out"}, "drive", ServerError),
        (500, None, "drive", ServerError),
        (502, "<html>bad gateway</html>", "drive", ServerError),
    ],
)
def test_error_mapping(status: int, body: object, kind: Any, cls: type) -> None:
    resp = httpx.Response(status, text=body) if isinstance(body, str) else respond(status, body)
    resp.request = httpx.Request("GET", "http://x/")
    err = error_for(resp, kind)
    assert type(err) is cls
    assert err.status == status


async def test_unexpected_success_code_is_a_protocol_error() -> None:
    from internxtfs.internxt.errors import ProtocolError

    http = make_http(lambda request: respond(201, {"drive": 1}))
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(Sleeps()))
    with pytest.raises(ProtocolError):
        await drive.usage()


async def test_headers_of_drive_network_and_object_calls() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return respond(200, {"ok": True})

    http = make_http(handler)
    await http.send(
        "POST", f"{DRIVE}/x", json={"a": 1}, headers={"authorization": "Bearer t"}, expected=(200,)
    )
    await http.send(
        "GET", f"{NETWORK}/y", kind="network", headers={"authorization": "Basic b"}, expected=(200,)
    )
    await http.send("GET", "http://objects.test/o", kind="object", expected=(200,))
    drive, network, obj = seen
    assert drive.headers["content-type"] == "application/json; charset=utf-8"
    assert drive.headers["internxt-client"] == endpoints.CLIENT_NAME
    assert drive.headers["internxt-version"] == endpoints.CLIENT_VERSION
    assert drive.headers["authorization"] == "Bearer t"
    assert network.headers["authorization"] == "Basic b"
    assert "authorization" not in obj.headers and "internxt-client" not in obj.headers


def test_endpoint_env_overrides() -> None:
    assert endpoints.drive_url({}) == endpoints.DEFAULT_DRIVE_URL
    assert endpoints.network_url({}) == endpoints.DEFAULT_NETWORK_URL
    env = {
        "INTERNXTFS_DRIVE_URL": "http://127.0.0.1:1/drive/",
        "INTERNXTFS_NETWORK_URL": "http://n",
    }
    assert endpoints.drive_url(env) == "http://127.0.0.1:1/drive"
    assert endpoints.network_url(env) == "http://n"


# --- non-idempotent calls -----------------------------------------------------------------


class FakeDrive:
    """Just enough of the Drive API to create and find files, with scripted faults."""

    def __init__(self) -> None:
        self.files: list[dict[str, Any]] = []
        self.folders: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.drop_after_create = 0  # create lands, then the connection "drops"

    def file_dto(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": len(self.files) + 1,
            "uuid": str(uuidlib.uuid4()),
            "fileId": body.get("fileId"),
            "plainName": body["plainName"],
            "type": body["type"],
            "size": str(body["size"]),
            "bucket": body["bucket"],
            "folderUuid": body["folderUuid"],
            "creationTime": "2026-01-02T03:04:05.000Z",
            "modificationTime": "2026-01-02T03:04:05.000Z",
            "status": "EXISTS",
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/drive")
        self.requests.append((request.method, path))
        body = json.loads(request.content) if request.content else {}
        if request.method == "POST" and path == "/files":
            for f in self.files:
                if (f["plainName"], f["type"], f["folderUuid"]) == (
                    body["plainName"],
                    body["type"],
                    body["folderUuid"],
                ):
                    return respond(409, {"message": "File already exists"})
            dto = self.file_dto(body)
            self.files.append(dto)
            if self.drop_after_create:
                self.drop_after_create -= 1
                raise httpx.ReadError("connection reset by peer", request=request)
            return respond(201, dto)
        if request.method == "POST" and path.endswith("/files/existence"):
            wanted = {(c["plainName"], c["type"]) for c in body["files"]}
            hits = [f for f in self.files if (f["plainName"], f["type"]) in wanted]
            return respond(201, {"existentFiles": hits})
        if request.method == "POST" and path == "/folders":
            if any(f["plainName"] == body["plainName"] for f in self.folders):
                return respond(409, {"message": "Folder with the same name already exists"})
            dto = {
                "id": len(self.folders) + 1,
                "uuid": str(uuidlib.uuid4()),
                "parentUuid": body["parentFolderUuid"],
                "plainName": body["plainName"],
                "status": "EXISTS",
            }
            self.folders.append(dto)
            if self.drop_after_create:
                self.drop_after_create -= 1
                raise httpx.ReadError("connection reset by peer", request=request)
            return respond(201, dto)
        if request.method == "POST" and path.endswith("/folders/existence"):
            hits = [f for f in self.folders if f["plainName"] in body["plainNames"]]
            return respond(201, {"existentFolders": hits})
        return respond(404, {"message": "no route"})


async def test_create_file_after_dropped_answer_is_adopted_not_duplicated() -> None:
    fake = FakeDrive()
    fake.drop_after_create = 1
    sleeps = Sleeps()
    http = make_http(fake)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(sleeps))
    fid = "65f0c1d2e3f4a5b6c7d8e9f0"
    entry = await drive.create_file(ROOT, "report.pdf", 10, fid, mtime=1_700_000_000.0)
    assert isinstance(entry, FileEntry)
    assert entry.name == "report.pdf" and entry.file_id == fid and entry.size == 10
    assert len(fake.files) == 1
    assert [r for r in fake.requests if r == ("POST", "/files")] == [("POST", "/files")]
    assert drive._retry.stats.recovered == 1


async def test_create_file_conflict_with_someone_elses_file_is_reported() -> None:
    fake = FakeDrive()
    http = make_http(fake)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(Sleeps()))
    await drive.create_file(ROOT, "a.txt", 1, "65f0c1d2e3f4a5b6c7d8e9f0")
    with pytest.raises(Conflict):
        await drive.create_file(ROOT, "a.txt", 2, "65f0c1d2e3f4a5b6c7d8e9f1")
    assert len(fake.files) == 1


async def test_create_folder_after_dropped_answer_is_adopted() -> None:
    fake = FakeDrive()
    fake.drop_after_create = 1
    http = make_http(fake)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(Sleeps()))
    folder = await drive.create_folder(ROOT, "docs")
    assert folder.name == "docs" and len(fake.folders) == 1
    assert [r for r in fake.requests if r == ("POST", "/folders")] == [("POST", "/folders")]


async def test_the_time_of_a_write_is_kept_before_it_leaves() -> None:
    """A write may land and its answer never come back, the process killed meanwhile: the
    time kept across runs (last_writes.py, fed by on_write) must already cover it, or the next
    run takes a lagging replica's answer for the truth. Every attempt counts, the resend of a
    dropped answer too; reads do not."""
    fake = FakeDrive()
    fake.drop_after_create = 1
    http = make_http(fake)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(Sleeps()))
    kept_at: list[int] = []  # how many requests had reached the server at each save
    drive.read_lag.on_write = lambda: kept_at.append(len(fake.requests))
    await drive.create_folder(ROOT, "docs")
    creates = [i for i, r in enumerate(fake.requests) if r == ("POST", "/folders")]
    assert creates and all(i in kept_at for i in creates), (fake.requests, kept_at)
    before = len(kept_at)
    await drive.folders_exist(ROOT, ["docs"])
    assert len(kept_at) == before


async def test_invalid_names_are_refused_locally() -> None:
    fake = FakeDrive()
    http = make_http(fake)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(Sleeps()))
    for bad in ("", "a/b", "back\\slash", "   "):
        with pytest.raises(InvalidName):
            await drive.create_folder(ROOT, bad)
    with pytest.raises(InvalidName):
        await drive.create_file(ROOT, "", 0, None)
    assert fake.requests == []


# --- listing ------------------------------------------------------------------------------


async def test_listing_fetches_every_page_concurrently_and_dedupes() -> None:
    names = sorted(f"f{i:04d}" for i in range(237))
    in_flight = 0
    peak = 0
    offsets: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        params = request.url.params
        assert params["limit"] == "50" and params["sort"] == "id" and params["order"] == "ASC"
        offset = int(params["offset"])
        offsets.append(offset)
        in_flight += 1
        peak = max(peak, in_flight)
        await trio.sleep(0.01)
        in_flight -= 1
        page = names[offset : offset + 50]
        folders = [
            {
                "id": i,
                "uuid": f"00000000-0000-4000-8000-{i:012d}",
                "plainName": n,
                "parentUuid": ROOT,
            }
            for i, n in enumerate(page, start=offset)
        ]
        return respond(200, {"folders": folders})

    http = make_http(handler)
    drive = DriveAPI(
        http, SessionManager(http, make_session()), retry=policy(Sleeps()), list_window=4
    )
    entries = await drive.list_folders(ROOT)
    assert [e.name for e in entries] == names
    assert len({e.uuid for e in entries}) == 237
    assert peak > 1  # pages after the first were in flight together
    assert set(offsets) >= {0, 50, 100, 150, 200}


async def test_listing_exactly_one_full_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        files = (
            [
                {
                    "id": i,
                    "uuid": f"00000000-0000-4000-8000-{i:012d}",
                    "plainName": f"n{i}",
                    "type": "",
                    "size": "0",
                    "folderUuid": ROOT,
                }
                for i in range(50)
            ]
            if offset == 0
            else []
        )
        return respond(200, {"files": files})

    http = make_http(handler)
    drive = DriveAPI(http, SessionManager(http, make_session()), retry=policy(Sleeps()))
    assert len(await drive.list_files(ROOT)) == 50


# --- sessions -----------------------------------------------------------------------------


def user_record(password: str, mnemonic: str = MNEMONIC) -> dict[str, Any]:
    return {
        "email": "a@b.c",
        "uuid": "user",
        "rootFolderId": ROOT,
        "bucket": BUCKET,
        "bridgeUser": "a@b.c",
        "userId": "$2a$08$x",
        "mnemonic": crypto.encrypt_text(mnemonic, password),
    }


class FakeAuth:
    """Login, refresh and one protected route, with a token table."""

    def __init__(self, *, tfa_secret: str | None = None, lifetime: float = 3 * 86400) -> None:
        self.salt = "00112233445566778899aabbccddeeff"
        self.hash = crypto.password_hash("pw", self.salt)
        self.tfa_secret = tfa_secret
        self.lifetime = lifetime
        self.valid: set[str] = set()
        self.refresh_works = True
        self.log: list[str] = []
        self.last_access_body: dict[str, Any] = {}

    def issue(self) -> str:
        token = make_token(self.lifetime)
        self.valid.add(token)
        return token

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import pyotp

        path = request.url.path.removeprefix("/drive")
        self.log.append(path)
        if path == "/auth/login":
            return respond(
                200, {"sKey": crypto.encrypt_text(self.salt), "tfa": bool(self.tfa_secret)}
            )
        if path == "/auth/cli/login/access":
            body = json.loads(request.content)
            self.last_access_body = body
            if crypto.decrypt_text(body["password"]) != self.hash:
                return respond(401, {"message": "Wrong login credentials"})
            if self.tfa_secret and not pyotp.TOTP(self.tfa_secret).verify(
                body.get("tfa", ""), valid_window=2
            ):
                return respond(401, {"message": "Wrong 2-factor auth code"})
            return respond(
                200, {"newToken": self.issue(), "token": "legacy", "user": user_record("pw")}
            )
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.valid:
            return respond(401, {"message": "Unauthorized", "statusCode": 401})
        if path == "/users/cli/refresh":
            if not self.refresh_works:
                return respond(401, {"message": "Unauthorized", "statusCode": 401})
            return respond(200, {"newToken": self.issue(), "user": user_record("other")})
        if path == "/users/usage":
            return respond(200, {"drive": 123})
        return respond(404, {"message": "no route"})


async def test_login_decrypts_mnemonic_and_reads_token_expiry() -> None:
    fake = FakeAuth()
    http = make_http(fake)
    session = await login(http, "a@b.c", "pw", retry=policy(Sleeps()))
    assert session.mnemonic == MNEMONIC
    assert session.root_folder_uuid == ROOT and session.bucket == BUCKET
    assert session.expires_at - session.issued_at == pytest.approx(3 * 86400, abs=2)
    assert "tfa" not in fake.last_access_body
    assert Session.from_dict(json.loads(json.dumps(session.to_dict()))) == session
    with pytest.raises(WrongCredentials):
        await login(http, "a@b.c", "nope", retry=policy(Sleeps()))


async def test_login_with_2fa() -> None:
    import pyotp

    secret = pyotp.random_base32()
    fake = FakeAuth(tfa_secret=secret)
    http = make_http(fake)
    with pytest.raises(TwoFactorRequired):
        await login(http, "a@b.c", "pw")
    with pytest.raises(WrongTwoFactorCode):
        await login(
            http, "a@b.c", "pw", code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
        )
    assert (await login(http, "a@b.c", "pw", totp_secret=secret)).mnemonic == MNEMONIC
    assert (await login(http, "a@b.c", "pw", code=pyotp.TOTP(secret).now())).mnemonic == MNEMONIC


async def test_login_refuses_a_mnemonic_that_is_not_bip39() -> None:
    from internxtfs.internxt.errors import InvalidMnemonic

    fake = FakeAuth()
    http = make_http(fake)
    original = user_record

    def broken(password: str, mnemonic: str = MNEMONIC) -> dict[str, Any]:
        return original(password, "not a mnemonic at all")

    globals()["user_record"] = broken
    try:
        with pytest.raises(InvalidMnemonic):
            await login(http, "a@b.c", "pw")
    finally:
        globals()["user_record"] = original


async def test_token_refreshed_ahead_of_expiry_and_persisted() -> None:
    fake = FakeAuth()
    http = make_http(fake)
    session = await login(http, "a@b.c", "pw")
    now = [time.time()]
    changes: list[Session] = []
    sm = SessionManager(http, session, clock=lambda: now[0], on_session_change=changes.append)
    drive = DriveAPI(http, sm, retry=policy(Sleeps()))
    assert await drive.usage() == 123
    assert sm.refreshes == 0
    now[0] += 2.1 * 86400  # less than a third of the 3-day lifetime left
    assert await drive.usage() == 123
    assert sm.refreshes == 1 and len(changes) == 1 and changes[0].token != session.token
    assert changes[0].mnemonic == MNEMONIC  # refresh answers carry it encrypted; keep ours


async def test_401_refreshes_then_relogs_in_with_stored_credentials() -> None:
    fake = FakeAuth()
    http = make_http(fake)
    session = await login(http, "a@b.c", "pw")
    sm = SessionManager(http, session, Credentials("a@b.c", "pw"))
    drive = DriveAPI(http, sm, retry=policy(Sleeps()))
    fake.valid.clear()  # server forgot every token (logout, blacklist, restart)
    fake.refresh_works = False
    assert await drive.usage() == 123
    assert sm.relogins == 1
    # Without credentials the session is simply over.
    fake.valid.clear()
    sm2 = SessionManager(http, sm.session)
    with pytest.raises(SessionExpired):
        await DriveAPI(http, sm2, retry=policy(Sleeps())).usage()


async def test_refused_credentials_are_not_sent_again() -> None:
    """A changed password: every failed login counts towards Internxt's account lockout, so a
    mount must not retry the refused password on every call (issue 4)."""
    fake = FakeAuth()
    http = make_http(fake)
    session = await login(http, "a@b.c", "pw")
    sm = SessionManager(http, session, Credentials("a@b.c", "old password"))
    drive = DriveAPI(http, sm, retry=policy(Sleeps()))
    fake.valid.clear()
    fake.refresh_works = False
    for _ in range(5):
        with pytest.raises(WrongCredentials):
            await drive.usage()
    assert fake.log.count("/auth/cli/login/access") == 2  # first login + one re-login
    assert sm.last_error is not None and "WrongCredentials" in sm.last_error
    sm.credentials = Credentials("a@b.c", "pw")  # new credentials are tried
    assert await drive.usage() == 123
    assert sm.relogins == 1 and sm.last_error is None


async def test_concurrent_401s_renew_once() -> None:
    fake = FakeAuth()
    http = make_http(fake)
    session = await login(http, "a@b.c", "pw")
    sm = SessionManager(http, session, Credentials("a@b.c", "pw"))
    drive = DriveAPI(http, sm, retry=policy(Sleeps()))
    fake.valid.clear()
    fake.refresh_works = False
    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(drive.usage)
    assert sm.relogins == 1
    assert fake.log.count("/auth/cli/login/access") == 2  # first login + one re-login


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "plain", "ext"),
    [
        ("a.tar.gz", "a.tar", "gz"),
        (".bashrc", ".bashrc", ""),
        ("noext", "noext", ""),
        ("trailing.", "trailing.", ""),
        ("..", "..", ""),
        ("...", "...", ""),
        ("..bashrc", ".", "bashrc"),
        (".a.b", ".a", "b"),
        ("x.y", "x", "y"),
        ("with space.txt", "with space", "txt"),
    ],
)
def test_split_name(name: str, plain: str, ext: str) -> None:
    assert split_name(name) == (plain, ext)
    assert join_name(plain, ext) == name


def test_name_problems() -> None:
    assert name_problem("ok", folder=True) is None
    assert name_problem("back\\slash", folder=False) is None
    assert name_problem("back\\slash", folder=True)
    assert name_problem(" ", folder=True)
    assert name_problem(" ", folder=False) is None
    assert name_problem("..", folder=False)


# --- network (mock object store) ----------------------------------------------------------


class FakeNetwork:
    """Start/PUT/finish/info and a Range-capable object store, with scripted faults."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.parts: dict[str, dict[int, bytes]] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        self.fail_puts = 0
        self.cut_puts = 0
        self.put_count = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        path = url.path
        if path.endswith("/files/start"):
            assert request.headers["authorization"].startswith("Basic ")
            body = json.loads(request.content)
            n = int(url.params["multiparts"])
            up = str(uuidlib.uuid4())
            if n == 1:  # one slot per upload asked for (starts go together: upload_starts)
                slots = []
                for asked in body["uploads"]:
                    up = str(uuidlib.uuid4())
                    url_ = f"http://obj.test/put/{up}"
                    slots.append({"index": asked["index"], "uuid": up, "url": url_, "urls": None})
                return respond(200, {"uploads": slots})
            self.parts[up] = {}
            urls = [f"http://obj.test/part/{up}?partNumber={i}" for i in range(1, n + 1)]
            return respond(
                200,
                {
                    "uploads": [
                        {"index": 0, "uuid": up, "url": None, "urls": urls, "UploadId": "U" + up}
                    ]
                },
            )
        if path.startswith("/put/") or path.startswith("/part/"):
            assert "authorization" not in request.headers
            if self.cut_puts:  # answer an error after reading only the body's first chunk
                self.cut_puts -= 1
                async for _ in request.stream:
                    break
                return respond(500, {"error": "cut"})
            data = b"".join([chunk async for chunk in request.stream])
            assert len(data) == int(request.headers["content-length"])
            self.put_count += 1
            if self.fail_puts:
                self.fail_puts -= 1
                return respond(500, {"error": "boom"})
            up = path.rsplit("/", 1)[1]
            if path.startswith("/put/"):
                self.objects[up] = data
            else:
                self.parts[up][int(url.params["partNumber"])] = data
            return httpx.Response(200, headers={"etag": f'"e{len(data)}"'})
        if path.endswith("/files/finish"):
            body = json.loads(request.content)
            shard = body["shards"][0]
            up = shard["uuid"]
            if "parts" in shard:
                got = self.parts.pop(up)
                assert [p["PartNumber"] for p in shard["parts"]] == sorted(got)
                data = b"".join(got[i] for i in sorted(got))
            else:
                data = self.objects.pop(up)
            assert crypto.shard_hash(data) == shard["hash"]
            fid = uuidlib.uuid4().hex[:24]
            self.objects[fid] = data
            self.entries[fid] = {"index": body["index"], "hash": shard["hash"]}
            return respond(200, {"id": fid, "index": body["index"]})
        if path.endswith("/info"):
            fid = path.split("/")[-2]
            data = self.objects[fid]
            e = self.entries[fid]
            return respond(
                200,
                {
                    "id": fid,
                    "index": e["index"],
                    "size": len(data),
                    "version": 2,
                    "shards": [
                        {
                            "index": 0,
                            "size": len(data),
                            "hash": e["hash"],
                            "url": f"http://obj.test/get/{fid}",
                        }
                    ],
                },
            )
        if path.startswith("/get/"):
            data = self.objects[path.rsplit("/", 1)[1]]
            rng = request.headers.get("range")
            if rng:
                a, b = rng.removeprefix("bytes=").split("-")
                end = int(b) + 1 if b else len(data)
                return httpx.Response(206, content=data[int(a) : end])
            return httpx.Response(200, content=data)
        return respond(404, {"error": "no route"})


def reader(data: bytes) -> Callable[[int, int], Any]:
    async def read(offset: int, n: int) -> bytes:
        return data[offset : offset + n]

    return read


async def test_upload_retries_a_failed_put_and_roundtrips() -> None:
    fake = FakeNetwork()
    fake.fail_puts = 2
    http = make_http(fake)
    net = NetworkAPI(http, "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()), chunk_size=7)
    data = bytes(range(256)) * 3 + b"tail"
    fid = await net.upload(reader(data), len(data))
    assert fake.put_count == 3
    assert await net.download_range(fid, 0, len(data)) == data
    for off, ln in [(1, 5), (15, 2), (16, 16), (17, 100), (700, 500), (len(data), 3)]:
        assert await net.download_range(fid, off, ln) == data[off : off + ln]
    got = b"".join([c async for c in net.download_stream(fid)])
    assert got == data


async def test_upload_refuses_zero_bytes_and_short_reads() -> None:
    from internxtfs.internxt.errors import SourceError

    http = make_http(FakeNetwork())
    net = NetworkAPI(http, "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()))
    with pytest.raises(ValueError):
        await net.upload(reader(b""), 0)
    with pytest.raises(SourceError):
        await net.upload(reader(b"abc"), 10)


async def test_multipart_upload_with_small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    from internxtfs.internxt import network as network_mod

    # Shrink the protocol thresholds so the multipart path runs on a few KiB.
    monkeypatch.setattr(network_mod, "MULTIPART_THRESHOLD", 1000)
    monkeypatch.setattr(network_mod, "MIN_PART_SIZE", 100)
    fake = FakeNetwork()
    fake.fail_puts = 1
    http = make_http(fake)
    net = NetworkAPI(http, "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()), chunk_size=64)
    data = bytes((i * 7) % 251 for i in range(5000))
    fid = await net.upload(reader(data), len(data), part_size=300, parallel=3)
    assert await net.download_range(fid, 290, 40) == data[290:330]
    assert b"".join([c async for c in net.download_stream(fid)]) == data


@pytest.mark.parametrize("stash", [None, 0, 200])
async def test_multipart_hash_reuses_the_part_bodies(
    monkeypatch: pytest.MonkeyPatch, stash: int | None
) -> None:
    """The in-order shard hash is fed from the part bodies as they go out, and from the
    chunks they produced ahead of it, kept up to HASH_STASH bytes: the file is read (and
    encrypted) once when they fit, and less than twice when they do not (the chunks not kept
    are read again for the hash); and the hash the finish carries matches the stored parts
    (FakeNetwork checks it), also when a part is retried, when a PUT is answered before its
    body was read, and when the part size is not a multiple of the chunk size."""
    from internxtfs.internxt import network as network_mod

    monkeypatch.setattr(network_mod, "MULTIPART_THRESHOLD", 1000)
    monkeypatch.setattr(network_mod, "MIN_PART_SIZE", 100)
    if stash is not None:  # None: the default, which holds this whole file
        monkeypatch.setattr(network_mod, "HASH_STASH", stash)
    data = bytes((i * 13) % 253 for i in range(7001))
    for parallel, part_size, chunk, fails, cuts in [
        (1, 300, 64, 0, 0),
        (1, 320, 64, 1, 0),
        (3, 300, 64, 0, 0),
        (3, 250, 64, 2, 0),
        (4, 1000, 100, 1, 0),
        (1, 300, 64, 0, 2),  # a body abandoned after its first chunk, then sent again
        (3, 300, 64, 1, 3),
    ]:
        fake = FakeNetwork()
        fake.fail_puts = fails
        fake.cut_puts = cuts
        http = make_http(fake)
        net = NetworkAPI(
            http, "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()), chunk_size=chunk
        )
        read_bytes = [0]

        async def read(offset: int, n: int, read_bytes: list[int] = read_bytes) -> bytes:
            read_bytes[0] += n
            await trio.lowlevel.checkpoint()
            return data[offset : offset + n]

        fid = await net.upload(read, len(data), part_size=part_size, parallel=parallel)
        assert b"".join([c async for c in net.download_stream(fid)]) == data
        # Retried parts are read again for their PUT; the hash reads no part twice.
        resent = (fails + cuts) * part_size
        if parallel == 1 or stash is None:
            assert read_bytes[0] <= len(data) + resent, (parallel, part_size, read_bytes)
        assert read_bytes[0] < 2 * len(data) + resent, (parallel, part_size, read_bytes)
        if stash == 0 and parallel > 1 and not fails and not cuts:
            assert read_bytes[0] > len(data) * 1.3  # without a stash, parts are read again


async def test_the_multipart_hash_keeps_the_nearest_chunks_ahead_within_its_bound() -> None:
    """_OrderedHash keeps chunks produced ahead of its frontier up to its bound, letting go of
    the farthest first, and hashes them in order once the frontier reaches them."""
    from internxtfs.internxt.network import _OrderedHash

    data = bytes(range(100))
    chunks = {pos: data[pos : pos + 10] for pos in range(0, 100, 10)}
    ordered = _OrderedHash(100, 50, 10, stash=30)
    for pos in (50, 40, 60, 20):  # 20 comes when full: 60, the farthest, makes room
        await ordered.offer(pos, chunks[pos])
    await ordered.offer(90, chunks[90])  # farther than all it keeps: not kept
    assert sorted(ordered._ahead) == [20, 40, 50] and ordered._ahead_bytes == 30
    await ordered.offer(0, chunks[0])
    await ordered.offer(10, chunks[10])  # the frontier, then 20 from the stash
    assert ordered.pos == 30 and sorted(ordered._ahead) == [40, 50]
    await ordered.offer(40, chunks[40])  # ahead and kept already: nothing changes
    assert ordered._ahead_bytes == 20
    for pos in (30, 60, 70, 80, 90):
        await ordered.offer(pos, chunks[pos])
    assert ordered.pos == 100 and not ordered._ahead and ordered._ahead_bytes == 0
    expected = crypto.ShardHasher()
    expected.update(data)
    assert await ordered.hexdigest() == expected.hexdigest()


async def test_single_part_hash_runs_beside_the_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """A single-part body of at least THREAD_HASH bytes is hashed in a worker thread while
    the trio thread encrypts and sends it (the fsync of a restic pack waits for this PUT), and
    the hash the finish carries still matches the stored object (FakeNetwork checks it), also
    when the PUT fails and is sent again and when a body is abandoned after its first chunk."""
    import threading

    from internxtfs.internxt import network as network_mod

    monkeypatch.setattr(network_mod, "THREAD_HASH", 1000)
    hashed: dict[int, int] = {}  # bytes hashed, per thread
    sha_update = crypto.ShardHasher.update

    def update(self: crypto.ShardHasher, data: bytes) -> None:
        hashed[threading.get_ident()] = hashed.get(threading.get_ident(), 0) + len(data)
        sha_update(self, data)

    monkeypatch.setattr(crypto.ShardHasher, "update", update)
    data = bytes((i * 7) % 251 for i in range(5003))
    for fails, cuts in [(0, 0), (1, 0), (0, 2)]:
        fake = FakeNetwork()
        fake.fail_puts = fails
        fake.cut_puts = cuts
        net = NetworkAPI(
            make_http(fake), "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()), chunk_size=64
        )
        hashed.clear()
        fid = await net.upload(reader(data), len(data))
        # Each attempt that produced the whole body hashed it off the trio thread (a body cut
        # short is hashed only as far as it went); the trio thread hashed the object only in
        # FakeNetwork's check at finish.
        off_trio = sum(n for t, n in hashed.items() if t != threading.get_ident())
        assert off_trio >= len(data), (fails, cuts, hashed)
        assert hashed.get(threading.get_ident()) == len(data)
        assert b"".join([c async for c in net.download_stream(fid)]) == data
    # Short bodies stay inline (one hop would cost more than the hash).
    hashed.clear()
    small = data[:999]
    fake = FakeNetwork()
    net = NetworkAPI(make_http(fake), "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()))
    await net.upload(reader(small), len(small))
    assert list(hashed) == [threading.get_ident()]


async def test_multipart_hash_runs_beside_the_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-order multipart hash is computed in a worker thread too, and stays right with
    parts in parallel, retried and abandoned (FakeNetwork checks the hash at finish)."""
    import threading

    from internxtfs.internxt import network as network_mod

    monkeypatch.setattr(network_mod, "MULTIPART_THRESHOLD", 1000)
    monkeypatch.setattr(network_mod, "MIN_PART_SIZE", 100)
    hashed: dict[int, int] = {}  # bytes hashed, per thread
    sha_update = crypto.ShardHasher.update

    def update(self: crypto.ShardHasher, data: bytes) -> None:
        hashed[threading.get_ident()] = hashed.get(threading.get_ident(), 0) + len(data)
        sha_update(self, data)

    monkeypatch.setattr(crypto.ShardHasher, "update", update)
    data = bytes((i * 11) % 241 for i in range(6007))
    for parallel, fails, cuts in [(1, 0, 0), (3, 1, 0), (4, 0, 2)]:
        fake = FakeNetwork()
        fake.fail_puts = fails
        fake.cut_puts = cuts
        net = NetworkAPI(
            make_http(fake), "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()), chunk_size=64
        )
        hashed.clear()
        fid = await net.upload(reader(data), len(data), part_size=300, parallel=parallel)
        # The upload hashed the object once, off the trio thread; the trio thread hashed it
        # only in FakeNetwork's check at finish.
        off_trio = sum(n for t, n in hashed.items() if t != threading.get_ident())
        assert off_trio == len(data), (parallel, fails, cuts, hashed)
        assert hashed.get(threading.get_ident()) == len(data)
        assert b"".join([c async for c in net.download_stream(fid)]) == data


async def test_download_stream_detects_corruption() -> None:
    from internxtfs.internxt.errors import IntegrityError

    fake = FakeNetwork()
    http = make_http(fake)
    net = NetworkAPI(http, "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()))
    data = b"x" * 1000
    fid = await net.upload(reader(data), len(data))
    stored = bytearray(fake.objects[fid])
    stored[500] ^= 1
    fake.objects[fid] = bytes(stored)
    with pytest.raises(IntegrityError):
        async for _ in net.download_stream(fid):
            pass


async def test_expired_download_url_is_fetched_again() -> None:
    fake = FakeNetwork()
    http = make_http(fake)
    net = NetworkAPI(http, "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()))
    data = bytes(range(200))
    fid = await net.upload(reader(data), len(data))
    assert await net.download_range(fid, 0, 10) == data[:10]  # info now cached
    info_calls = 0
    inner = fake.__call__

    async def expiring(request: httpx.Request) -> httpx.Response:
        nonlocal info_calls
        if request.url.path.endswith("/info"):
            info_calls += 1
        if request.url.path.startswith("/get/") and info_calls == 0:
            return respond(403, {"error": "Request has expired"})
        return await inner(request)

    http.client._transport = httpx.MockTransport(expiring)
    assert await net.download_range(fid, 33, 50) == data[33:83]
    assert info_calls == 1


async def test_network_401_is_not_a_session_problem() -> None:
    from internxtfs.internxt.errors import AuthError

    http = make_http(lambda request: respond(401, {"error": "Invalid email or password"}))
    net = NetworkAPI(http, "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()))
    with pytest.raises(AuthError) as info:
        await net.info("65f0c1d2e3f4a5b6c7d8e9f0")
    assert not isinstance(info.value, SessionExpired)
