"""rclone 1.75.2 (Internxt's own adapter code) against the emulator.

Each rclone command runs in the emulator's private namespaces (see ``rclone_ns``). Checks only
ever read rclone's stdout from ``lsjson``, ``cat`` and ``about``: during uploads the adapter
prints its own JSON on stdout (protocol §7.5), so upload output is ignored.

Tests use disjoint remote folders, so they do not depend on each other's order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest

from .conftest import PAYLOAD_MTIME_RFC3339, PAYLOAD_SIZES, Account, MiB, seeded_bytes, upload
from .rclone_ns import RcloneNamespace

pytestmark = pytest.mark.interop

BIG = PAYLOAD_SIZES["big.bin"]
PART = 30 * MiB  # rclone's default chunk_size (§5.2)


# --- helpers ---------------------------------------------------------------------------------


def lsjson(ns: RcloneNamespace, path: str, *flags: str) -> dict[str, dict[str, Any]]:
    """Entries of a remote directory by their path relative to it."""
    out = ns.rclone("lsjson", *flags, path).stdout
    return {entry["Path"]: entry for entry in json.loads(out)}


def cat(
    ns: RcloneNamespace, path: str, offset: int | None = None, count: int | None = None
) -> bytes:
    args = ["cat", path]
    if offset is not None:
        args += ["--offset", str(offset)]
    if count is not None:
        args += ["--count", str(count)]
    return ns.rclone(*args).stdout


def put_bytes(ns: RcloneNamespace, data: bytes, remote: str) -> None:
    ns.rclone("rcat", remote, input=data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def reveal(ns: RcloneNamespace, obscured: str) -> str:
    # An obscured value is base64url of a random IV and may start with "-": end the flags first.
    return ns.rclone("reveal", "--", obscured).stdout.decode().strip()


def wrong_totp(secret: str) -> str:
    """A 6-digit code outside the server's ±2-step window (§2.4), whatever the clock says."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    # One step of margin beyond the window on each side, in case a step boundary passes.
    valid = {totp.at(now + step * totp.interval) for step in range(-3, 4)}
    candidate = 123456
    while f"{candidate:06d}" in valid:
        candidate += 1
    return f"{candidate:06d}"


# --- login -----------------------------------------------------------------------------------


def test_login_without_2fa_stores_token_and_mnemonic(
    interop_ns: RcloneNamespace, account: Account
) -> None:
    section = interop_ns.config_section(account.remote)
    assert section["type"] == "internxt"
    assert section["email"] == account.email
    token = json.loads(section["token"])
    assert token["token_type"] == "Bearer"
    assert token["access_token"].count(".") == 2  # a JWT
    assert token["expiry"]  # taken from the JWT's exp (§2.5)
    # rclone decrypted the mnemonic with the password (§2.6) to exactly what was provisioned.
    assert reveal(interop_ns, section["mnemonic"]) == account.user["mnemonic"]
    assert reveal(interop_ns, section["pass"]) == account.password
    # And the stored session works for a command (NewFs refresh + listing of the root).
    assert isinstance(json.loads(interop_ns.rclone("lsjson", account.path()).stdout), list)


def test_login_wrong_password_fails(interop_ns: RcloneNamespace) -> None:
    interop_ns.add_user("rclone-wrongpw@example.com", "right password")
    result = interop_ns.config_create(
        "wrongpw", "rclone-wrongpw@example.com", "wrong password", check=False
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, stderr
    assert "Wrong login credentials" in stderr
    assert not interop_ns.config_section("wrongpw").get("token")


def test_login_with_2fa(interop_ns: RcloneNamespace) -> None:
    email, password, secret = "rclone-2fa@example.com", "tfa password", pyotp.random_base32()
    interop_ns.add_user(email, password, totp_secret=secret)

    # With tfa:true from /auth/login, config create stops and asks for the code (§2.7, §9.2).
    first = interop_ns.config_create("tfa", email, password)
    question = json.loads(first.stdout)
    assert question["State"] == "2fa"
    assert question["Option"]["Name"] == "config_2fa"
    assert not interop_ns.config_section("tfa").get("token")

    def answer(code: str) -> Any:
        return interop_ns.rclone(
            "config",
            "update",
            "tfa",
            "--continue",
            "--state",
            "2fa",
            "--result",
            code,
            "--non-interactive",
            check=False,
        )

    wrong = answer(wrong_totp(secret))
    wrong_text = wrong.stderr.decode(errors="replace")
    assert wrong.returncode != 0, wrong_text
    assert "Wrong 2-factor auth code (status 401)" in wrong_text
    assert not interop_ns.config_section("tfa").get("token")

    right = answer(pyotp.TOTP(secret).now())
    right_text = (right.stdout + right.stderr).decode(errors="replace")
    assert right.returncode == 0, right_text
    section = interop_ns.config_section("tfa")
    assert json.loads(section["token"])["access_token"]
    # The 2FA session is usable: a write and a read.
    put_bytes(interop_ns, b"behind a second factor", "tfa:secret.txt")
    assert cat(interop_ns, "tfa:secret.txt") == b"behind a second factor"


# --- about -----------------------------------------------------------------------------------


def test_about_reports_quota_and_usage(interop_ns: RcloneNamespace) -> None:
    quota = 1024 * MiB
    email, password = "rclone-about@example.com", "about password"
    interop_ns.add_user(email, password, quota=quota)
    interop_ns.config_create("about", email, password)

    before = json.loads(interop_ns.rclone("about", "about:", "--json").stdout)
    assert before == {"total": quota, "used": 0, "free": quota}

    put_bytes(interop_ns, seeded_bytes(1024, 99), "about:one-kib.bin")
    after = json.loads(interop_ns.rclone("about", "about:", "--json").stdout)
    assert after == {"total": quota, "used": 1024, "free": quota - 1024}


# --- directories -----------------------------------------------------------------------------


def test_mkdir_nested_and_existing(interop_ns: RcloneNamespace, account: Account) -> None:
    interop_ns.rclone("mkdir", account.path("mk/a/b"))
    interop_ns.rclone("mkdir", account.path("mk/a/b"))  # already there: still success
    interop_ns.rclone("mkdir", account.path("mk/c"))
    entries = lsjson(interop_ns, account.path("mk"), "-R")
    assert set(entries) == {"a", "a/b", "c"}
    assert all(entry["IsDir"] for entry in entries.values())


# --- uploads and reads -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.bin", "small.txt", "mid.bin"])
def test_copyto_roundtrip(
    interop_ns: RcloneNamespace, account: Account, payloads: dict[str, Path], name: str
) -> None:
    local = payloads[name]
    upload(interop_ns, local, account.path(f"up/{name}"))
    entry = lsjson(interop_ns, account.path("up"))[name]
    assert entry["Name"] == name
    assert entry["Size"] == PAYLOAD_SIZES[name]
    assert not entry["IsDir"]
    # rclone sends the source mtime as modificationTime (§5.3); it must come back.
    assert entry["ModTime"].startswith(PAYLOAD_MTIME_RFC3339), entry
    assert cat(interop_ns, account.path(f"up/{name}")) == local.read_bytes()


@pytest.mark.parametrize("size", [0, 1024])
def test_rcat_roundtrip(interop_ns: RcloneNamespace, account: Account, size: int) -> None:
    data = seeded_bytes(size, 1000 + size)
    put_bytes(interop_ns, data, account.path(f"rcat/r{size}.dat"))
    assert lsjson(interop_ns, account.path("rcat"))[f"r{size}.dat"]["Size"] == size
    assert cat(interop_ns, account.path(f"rcat/r{size}.dat")) == data


@pytest.mark.parametrize(("offset", "count"), [(1, 17), (4097, 33333), (5 * MiB - 5, None)])
def test_ranged_cat_single_part(
    interop_ns: RcloneNamespace,
    payloads: dict[str, Path],
    mid_remote: str,
    offset: int,
    count: int | None,
) -> None:
    data = payloads["mid.bin"].read_bytes()
    end = None if count is None else offset + count
    assert cat(interop_ns, mid_remote, offset, count) == data[offset:end]


def test_copy_directory_and_back(
    interop_ns: RcloneNamespace, account: Account, payloads: dict[str, Path], tmp_path: Path
) -> None:
    small_set = payloads["small_set"]
    interop_ns.rclone("copy", str(small_set), account.path("cb"))
    entries = lsjson(interop_ns, account.path("cb"))
    assert {name: e["Size"] for name, e in entries.items()} == {
        p.name: p.stat().st_size for p in small_set.iterdir()
    }
    back = tmp_path / "back"
    interop_ns.rclone("copy", account.path("cb"), str(back))
    for original in small_set.iterdir():
        assert (back / original.name).read_bytes() == original.read_bytes(), original.name


# --- multipart (≥ 100 MiB) -------------------------------------------------------------------


@pytest.mark.slow
def test_multipart_listing_and_copy_back(
    interop_ns: RcloneNamespace,
    account: Account,
    payloads: dict[str, Path],
    big_remote: str,
    tmp_path: Path,
) -> None:
    entry = lsjson(interop_ns, account.path("big"))["big.bin"]
    assert entry["Size"] == BIG
    assert entry["ModTime"].startswith(PAYLOAD_MTIME_RFC3339), entry
    back = tmp_path / "big.bin"
    interop_ns.rclone("copyto", big_remote, str(back))
    assert back.stat().st_size == BIG
    assert sha256_file(back) == sha256_file(payloads["big.bin"])
    back.unlink()  # 101 MiB that pytest would otherwise keep around


@pytest.mark.slow
@pytest.mark.parametrize(
    ("offset", "count"),
    [
        (12345, 1000),  # unaligned, inside part 1
        (PART - 7, 20),  # straddles the part 1 / part 2 boundary
        (2 * PART - 1, 2),  # the last byte of part 2 and the first of part 3
        (PART + 3, PART),  # a whole part's worth, unaligned, across a boundary
        (BIG - 100, 1000),  # runs past the end: clipped
        (BIG - 33, None),  # to the end
    ],
)
def test_multipart_ranged_cat(
    interop_ns: RcloneNamespace,
    payloads: dict[str, Path],
    big_remote: str,
    offset: int,
    count: int | None,
) -> None:
    with payloads["big.bin"].open("rb") as source:
        source.seek(offset)
        expected = source.read(count if count is not None else -1)
    assert cat(interop_ns, big_remote, offset, count) == expected


# --- overwrite, rename, move -----------------------------------------------------------------


def test_overwrite_existing_file(interop_ns: RcloneNamespace, account: Account) -> None:
    first, second = seeded_bytes(1024, 7), seeded_bytes(3001, 8)
    put_bytes(interop_ns, first, account.path("ow/file.txt"))
    uploaded = lsjson(interop_ns, account.path("ow"))["file.txt"]
    assert uploaded["Size"] == 1024
    put_bytes(interop_ns, second, account.path("ow/file.txt"))
    entries = lsjson(interop_ns, account.path("ow"))
    # rclone renames the old file to a backup name and deletes it afterwards (§5.5).
    assert list(entries) == ["file.txt"], entries
    assert entries["file.txt"]["Size"] == 3001
    assert cat(interop_ns, account.path("ow/file.txt")) == second


@pytest.mark.parametrize("target", ["noext", "a.tar.gz", ".bashrc", "plain name.txt"])
def test_moveto_rename(interop_ns: RcloneNamespace, account: Account, target: str) -> None:
    data = target.encode() * 100
    source = f"src-{hashlib.md5(target.encode()).hexdigest()[:8]}.txt"
    put_bytes(interop_ns, data, account.path(f"mv/{source}"))
    interop_ns.rclone("moveto", account.path(f"mv/{source}"), account.path(f"mv/{target}"))
    entries = lsjson(interop_ns, account.path("mv"))
    assert source not in entries
    # The name must be exact: a move to "noext" drops ".txt" (§9.1, §7.4 `type ?? old`).
    assert entries[target]["Size"] == len(data), entries
    assert cat(interop_ns, account.path(f"mv/{target}")) == data


def test_moveto_into_new_folder(interop_ns: RcloneNamespace, account: Account) -> None:
    data = seeded_bytes(2048, 11)
    put_bytes(interop_ns, data, account.path("mvf/f.bin"))
    interop_ns.rclone("moveto", account.path("mvf/f.bin"), account.path("mvf/new/deeper/g.bin"))
    entries = lsjson(interop_ns, account.path("mvf"), "-R")
    assert set(entries) == {"new", "new/deeper", "new/deeper/g.bin"}
    assert cat(interop_ns, account.path("mvf/new/deeper/g.bin")) == data


def test_move_directory(interop_ns: RcloneNamespace, account: Account) -> None:
    data = b"x" * 777
    put_bytes(interop_ns, data, account.path("dm/src/inner/x.txt"))
    interop_ns.rclone("mkdir", account.path("dm/target"))
    # A server-side DirMove (PATCH /folders/{uuid}, §9.1): rename + reparent in one go.
    interop_ns.rclone("moveto", account.path("dm/src"), account.path("dm/target/moved"))
    entries = lsjson(interop_ns, account.path("dm"), "-R")
    assert set(entries) == {
        "target",
        "target/moved",
        "target/moved/inner",
        "target/moved/inner/x.txt",
    }
    assert cat(interop_ns, account.path("dm/target/moved/inner/x.txt")) == data


# --- deletion --------------------------------------------------------------------------------


def test_deletefile(interop_ns: RcloneNamespace, account: Account) -> None:
    put_bytes(interop_ns, b"a", account.path("del/a.txt"))
    put_bytes(interop_ns, b"b", account.path("del/b.txt"))
    interop_ns.rclone("deletefile", account.path("del/a.txt"))
    assert set(lsjson(interop_ns, account.path("del"))) == {"b.txt"}
    again = interop_ns.rclone("deletefile", account.path("del/a.txt"), check=False)
    assert again.returncode != 0
    assert cat(interop_ns, account.path("del/b.txt")) == b"b"


def test_rmdir_refuses_non_empty(interop_ns: RcloneNamespace, account: Account) -> None:
    put_bytes(interop_ns, b"content", account.path("rm/full/f.txt"))
    interop_ns.rclone("mkdir", account.path("rm/empty"))

    refused = interop_ns.rclone("rmdir", account.path("rm/full"), check=False)
    assert refused.returncode != 0
    assert set(lsjson(interop_ns, account.path("rm"), "-R")) == {"full", "full/f.txt", "empty"}

    interop_ns.rclone("rmdir", account.path("rm/empty"))
    interop_ns.rclone("deletefile", account.path("rm/full/f.txt"))
    interop_ns.rclone("rmdir", account.path("rm/full"))
    assert lsjson(interop_ns, account.path("rm")) == {}


def test_purge_tree(interop_ns: RcloneNamespace, account: Account) -> None:
    put_bytes(interop_ns, b"deep", account.path("pg/a/b/c.txt"))
    put_bytes(interop_ns, b"top", account.path("pg/d.txt"))
    interop_ns.rclone("mkdir", account.path("pg/empty"))
    interop_ns.rclone("purge", account.path("pg"))
    assert "pg" not in lsjson(interop_ns, account.path())
    assert interop_ns.rclone("lsjson", account.path("pg"), check=False).returncode != 0


# --- session renewal -------------------------------------------------------------------------


def _set_config_token(ns: RcloneNamespace, remote: str, token: dict[str, Any]) -> None:
    lines, current = [], None
    for line in ns.rclone_conf.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
        elif current == remote and stripped.startswith("token ="):
            line = f"token = {json.dumps(token, separators=(',', ':'))}"
        lines.append(line)
    ns.rclone_conf.write_text("\n".join(lines) + "\n")


def test_relogin_after_unusable_token(interop_ns: RcloneNamespace) -> None:
    """A token the server refuses (bad signature) → 401 on refresh → rclone logs in again with
    the stored credentials and carries on (§9.1 token refresh)."""
    email, password = "rclone-relogin@example.com", "relogin password"
    user = interop_ns.add_user(email, password)
    interop_ns.config_create("relog", email, password)
    put_bytes(interop_ns, b"still here", "relog:keep.txt")

    def b64(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    # Well-formed, unexpired, right user — but not signed by the server.
    exp = int(time.time()) + 3600
    forged = ".".join(
        [
            b64({"alg": "HS256", "typ": "JWT"}),
            b64({"sub": user["uuid"], "exp": exp, "payload": {"uuid": user["uuid"]}}),
            "c2lnbmF0dXJlLW5vdC1mcm9tLXRoZS1zZXJ2ZXI",
        ]
    )
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
    _set_config_token(
        interop_ns,
        "relog",
        {"access_token": forged, "token_type": "Bearer", "expiry": expiry},
    )
    interop_ns.reset_stats()
    assert cat(interop_ns, "relog:keep.txt") == b"still here"
    requests = interop_ns.stats()["requests"]
    logins = sum(n for key, n in requests.items() if key.endswith("/auth/cli/login/access"))
    assert logins == 1, requests
    renewed = json.loads(interop_ns.config_section("relog")["token"])["access_token"]
    assert renewed != forged


# --- names, listings, sync -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "naïve ünïcödé 日本語.txt",
        "trailing.",  # rclone sends U+FF0E for the final dot (§5.3)
        "back\\slash.txt",  # and U+FF3C for the backslash
        "multi..dots..txt",
        "percent%20and+plus&amp.md",
    ],
)
def test_unusual_names_roundtrip(interop_ns: RcloneNamespace, account: Account, name: str) -> None:
    data = name.encode() + b"\n"
    folder = f"names/{hashlib.md5(name.encode()).hexdigest()[:8]} dir ü"
    put_bytes(interop_ns, data, account.path(f"{folder}/{name}"))
    entries = lsjson(interop_ns, account.path(folder))
    assert set(entries) == {name}
    assert entries[name]["Size"] == len(data)
    assert cat(interop_ns, account.path(f"{folder}/{name}")) == data


def test_listing_spans_pages(interop_ns: RcloneNamespace, account: Account, tmp_path: Path) -> None:
    """rclone lists with limit=50 until a page is short (§7.2): 50 folders is exactly one full
    page (then an empty one), 101 files are 50 + 50 + 1."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(50):
        (tree / f"dir-{i:03d}").mkdir()
    expected_files = {}
    for i in range(101):
        data = b"" if i % 10 == 0 else seeded_bytes(i, 7000 + i)
        (tree / f"file-{i:03d}.dat").write_bytes(data)
        expected_files[f"file-{i:03d}.dat"] = len(data)
    interop_ns.rclone(
        "copy", str(tree), account.path("pages"), "--create-empty-src-dirs", timeout=300
    )
    entries = lsjson(interop_ns, account.path("pages"))
    assert {n for n, e in entries.items() if e["IsDir"]} == {f"dir-{i:03d}" for i in range(50)}
    assert {n: e["Size"] for n, e in entries.items() if not e["IsDir"]} == expected_files


def test_sync_and_check_download(
    interop_ns: RcloneNamespace, account: Account, tmp_path: Path
) -> None:
    """sync (uploads, overwrites, deletions) then ``check --download`` compares every byte."""
    source = tmp_path / "sync-src"
    (source / "sub").mkdir(parents=True)
    (source / "keep.txt").write_bytes(seeded_bytes(4000, 1))
    (source / "change.bin").write_bytes(seeded_bytes(1000, 2))
    (source / "sub" / "gone.txt").write_bytes(b"to be deleted")
    remote = account.path("sync")
    interop_ns.rclone("sync", str(source), remote)
    interop_ns.rclone("check", "--download", str(source), remote)

    (source / "change.bin").write_bytes(seeded_bytes(2500, 3))  # different size: re-upload
    (source / "sub" / "gone.txt").unlink()
    (source / "sub" / "new.txt").write_bytes(b"new")
    interop_ns.rclone("sync", str(source), remote)
    interop_ns.rclone("check", "--download", str(source), remote)
    assert set(lsjson(interop_ns, remote, "-R")) == {"keep.txt", "change.bin", "sub", "sub/new.txt"}


# --- limits ----------------------------------------------------------------------------------


def test_quota_exceeded(interop_ns: RcloneNamespace) -> None:
    """The network refuses the upload at start with 420 (§7.5); rclone reports it and the file
    does not appear."""
    email, password = "rclone-quota@example.com", "quota password"
    interop_ns.add_user(email, password, quota=4096)
    interop_ns.config_create("tiny", email, password)
    put_bytes(interop_ns, seeded_bytes(3000, 1), "tiny:fits.bin")
    refused = interop_ns.rclone(
        "rcat", "tiny:too-much.bin", input=seeded_bytes(2000, 2), check=False
    )
    stderr = refused.stderr.decode(errors="replace")
    assert refused.returncode != 0
    assert "Max space used (status 420)" in stderr, stderr
    assert set(lsjson(interop_ns, "tiny:")) == {"fits.bin"}


def test_per_file_size_cap(interop_ns: RcloneNamespace) -> None:
    """A positive maxUploadFileSize from /files/limits makes rclone refuse locally (§7.5)."""
    email, password = "rclone-cap@example.com", "cap password"
    interop_ns.add_user(email, password)
    interop_ns.admin("PATCH", f"/users/{email}", {"max_file_size": 6000})
    interop_ns.config_create("cap", email, password)
    put_bytes(interop_ns, seeded_bytes(5000, 1), "cap:under.bin")
    refused = interop_ns.rclone("rcat", "cap:over.bin", input=seeded_bytes(7000, 2), check=False)
    stderr = refused.stderr.decode(errors="replace")
    assert refused.returncode != 0
    assert "exceeds account upload limit" in stderr, stderr
    assert set(lsjson(interop_ns, "cap:")) == {"under.bin"}
