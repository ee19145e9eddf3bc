"""Emulator: drive API folders/files rules, status codes and JSON typing (protocol §5.3, §7)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.harness.emulator import EmulatorProcess
from tests.harness.emulator_session import DriveSession

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MISSING_UUID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def session(emulator: EmulatorProcess) -> Iterator[DriveSession]:
    user = emulator.add_user(email="bob@example.com", password="pw")
    drive = DriveSession(emulator, user)
    yield drive
    drive.close()


def _empty(session: DriveSession, name: str, ext: str = "txt", folder: str | None = None) -> dict:
    return session.create_file(name, ext, b"", folder)


def test_listing_requires_limit_and_offset(session: DriveSession) -> None:
    base = f"/folders/content/{session.root}/files"
    missing = session.drive("GET", base)
    assert missing.status_code == 400
    body = missing.json()
    assert body["statusCode"] == 400 and body["error"] == "Bad Request"
    assert "limit must not be greater than 50" in body["message"]
    assert "offset must not be less than 0" in body["message"]
    too_big = session.drive("GET", f"{base}?limit=51&offset=0").json()
    assert too_big == {
        "statusCode": 400,
        "message": ["limit must not be greater than 50"],
        "error": "Bad Request",
    }
    assert session.drive("GET", f"{base}?limit=0&offset=0").json()["message"] == [
        "limit must not be less than 1"
    ]
    assert session.drive("GET", f"{base}?limit=5&offset=-1").json()["message"] == [
        "offset must not be less than 0"
    ]
    assert session.drive("GET", f"{base}?limit=5&offset=0&sort=name&order=ASC").status_code == 400
    # Trailing slash before the query (the SDK does this), unknown parent, invalid uuid.
    assert session.drive("GET", f"{base}/?limit=50&offset=0").json() == {"files": []}
    unknown = session.drive("GET", f"/folders/content/{MISSING_UUID}/folders?limit=50&offset=0")
    assert unknown.status_code == 200 and unknown.json() == {"folders": []}
    assert session.drive("GET", "/folders/content/nope/folders?limit=1&offset=0").status_code == 400


def test_pagination_of_120_entries(session: DriveSession) -> None:
    folder = session.mkdir("many")["uuid"]
    for i in range(120):
        _empty(session, f"f{i:03d}", folder=folder)
    for i in range(60):
        session.mkdir(f"d{i:03d}", folder)
    pages = []
    offset = 0
    while True:
        page = session.drive(
            "GET",
            f"/folders/content/{folder}/files?limit=50&offset={offset}&sort=plainName&order=ASC",
        ).json()["files"]
        pages.append(len(page))
        offset += len(page)
        if len(page) < 50:
            break
    assert pages == [50, 50, 20]
    names = [
        f["plainName"]
        for off in (0, 50, 100)
        for f in session.drive(
            "GET", f"/folders/content/{folder}/files?limit=50&offset={off}&sort=plainName&order=ASC"
        ).json()["files"]
    ]
    assert names == [f"f{i:03d}" for i in range(120)]
    desc = session.drive(
        "GET", f"/folders/content/{folder}/folders?limit=50&offset=50&sort=plainName&order=DESC"
    ).json()["folders"]
    assert [f["plainName"] for f in desc] == ["d009", *[f"d{i:03d}" for i in range(8, -1, -1)]]


def test_json_typing(session: DriveSession) -> None:
    folder = session.mkdir("docs")
    assert isinstance(folder["id"], int) and isinstance(folder["size"], int)
    assert folder["parentUuid"] == session.root and folder["bucket"] is None
    assert TIME.match(folder["createdAt"]) and folder["status"] == "EXISTS"
    created = session.create_file("report", "pdf", b"x" * 100, folder["uuid"])
    assert created["size"] == "100" and isinstance(created["id"], int)
    assert created["folderUuid"] == folder["uuid"] and created["folderId"] == folder["id"]
    assert created["bucket"] == session.bucket and re.fullmatch(r"[0-9a-f]{24}", created["fileId"])
    for key in ("creationTime", "modificationTime", "createdAt", "updatedAt"):
        assert TIME.match(created[key]), key
    listed = session.drive("GET", f"/folders/content/{folder['uuid']}?limit=50&offset=0").json()
    assert listed["uuid"] == folder["uuid"] and [f["uuid"] for f in listed["files"]] == [
        created["uuid"]
    ]
    # Client times (Go RFC3339Nano with an offset) are normalised.
    body = {
        "plainName": "t",
        "type": "",
        "size": 0,
        "bucket": session.bucket,
        "folderUuid": session.root,
        "encryptVersion": "03-aes",
        "creationTime": "2026-01-02T04:04:05.123456789+01:00",
        "modificationTime": "2026-01-02T03:04:05Z",
    }
    made = session.drive("POST", "/files", json=body).json()
    assert made["creationTime"] == "2026-01-02T03:04:05.123Z"
    assert made["modificationTime"] == "2026-01-02T03:04:05.000Z"


def test_folder_rules(session: DriveSession) -> None:
    first = session.mkdir("dup")
    again = session.drive(
        "POST", "/folders", json={"plainName": "dup", "parentFolderUuid": session.root}
    )
    assert again.status_code == 409
    assert again.json()["message"] == "Folder with the same name already exists in this location"
    for bad in ("", "  ", "a/b", "a\\b"):
        response = session.drive(
            "POST", "/folders", json={"plainName": bad, "parentFolderUuid": session.root}
        )
        assert response.status_code == 400 and response.json()["message"] == "Invalid folder name"
    orphan = session.drive(
        "POST", "/folders", json={"plainName": "x", "parentFolderUuid": MISSING_UUID}
    )
    assert orphan.status_code == 404
    bulk = session.drive(
        "POST",
        "/folders",
        json={
            "parentFolderUuid": session.root,
            "folders": [{"plainName": "b1"}, {"plainName": "b2"}],
        },
    )
    assert bulk.status_code == 201 and len(bulk.json()["created"]) == 2
    clash = session.drive(
        "POST",
        "/folders",
        json={
            "parentFolderUuid": session.root,
            "folders": [{"plainName": "b1"}, {"plainName": "b3"}],
        },
    )
    assert clash.status_code == 409 and clash.json()["existentFolders"] == ["b1"]

    meta = session.drive("GET", f"/folders/{first['uuid']}/meta")
    assert meta.status_code == 200 and meta.json()["plainName"] == "dup"
    renamed = session.drive("PUT", f"/folders/{first['uuid']}/meta", json={"plainName": "b1"})
    assert renamed.status_code == 409
    assert (
        session.drive("PUT", f"/folders/{first['uuid']}/meta", json={"plainName": "new"}).json()[
            "plainName"
        ]
        == "new"
    )
    target = session.mkdir("target")
    moved = session.drive(
        "PATCH", f"/folders/{first['uuid']}", json={"destinationFolder": target["uuid"]}
    )
    assert moved.status_code == 200 and moved.json()["parentUuid"] == target["uuid"]
    into_self = session.drive(
        "PATCH", f"/folders/{target['uuid']}", json={"destinationFolder": first["uuid"]}
    )
    assert into_self.status_code == 422
    existence = session.drive(
        "POST",
        f"/folders/content/{session.root}/folders/existence",
        json={"plainNames": ["b1", "zzz"]},
    )
    assert existence.status_code == 201
    assert [f["plainName"] for f in existence.json()["existentFolders"]] == ["b1"]
    by_path = session.drive("GET", "/folders/meta", params={"path": "/target/new"})
    assert by_path.status_code == 200
    assert by_path.json()["uuid"] == first["uuid"] and by_path.json()["plain_name"] == "new"
    assert (
        session.drive("GET", "/folders/meta", params={"path": "/"}).json()["uuid"] == session.root
    )
    assert session.drive("GET", "/folders/meta", params={"path": "/nope"}).status_code == 404


def test_delete_folder_removes_subtree(session: DriveSession) -> None:
    top = session.mkdir("top")
    inner = session.mkdir("inner", top["uuid"])
    data = session.create_file("a", "bin", b"abc", inner["uuid"])
    deleted = session.drive("DELETE", f"/folders/{top['uuid']}")
    assert deleted.status_code == 204
    assert session.drive("GET", f"/files/{data['uuid']}/meta").json()["status"] == "DELETED"
    assert session.drive("GET", f"/folders/{inner['uuid']}/meta").json()["status"] == "DELETED"
    assert session.drive("DELETE", f"/folders/{top['uuid']}").status_code == 404
    root = session.drive("DELETE", f"/folders/{session.root}")
    assert root.status_code == 406 and root.json()["message"] == "Cannot delete root folder"
    info = session.network("GET", f"/buckets/{session.bucket}/files/{data['fileId']}/info")
    assert info.status_code == 404
    assert session.drive("GET", "/users/usage").json()["drive"] == 0


def test_file_create_rules(session: DriveSession, emulator: EmulatorProcess) -> None:
    base = {
        "plainName": "a",
        "type": "txt",
        "size": 0,
        "bucket": session.bucket,
        "folderUuid": session.root,
        "encryptVersion": "03-aes",
    }
    assert session.drive("POST", "/files", json=base).status_code == 201
    dup = session.drive("POST", "/files", json=base)
    assert dup.status_code == 409 and dup.json()["message"] == "File already exists"
    # null and "" types are the same extension
    assert (
        session.drive("POST", "/files", json=base | {"plainName": "n", "type": None}).status_code
        == 201
    )
    assert (
        session.drive("POST", "/files", json=base | {"plainName": "n", "type": ""}).status_code
        == 409
    )
    missing = session.drive("POST", "/files", json=base | {"folderUuid": MISSING_UUID})
    assert missing.status_code == 404 and missing.json()["message"] == "Folder not found"
    no_id = session.drive("POST", "/files", json=base | {"plainName": "b", "size": 5})
    assert no_id.status_code == 400
    bogus = session.drive(
        "POST", "/files", json=base | {"plainName": "b", "size": 5, "fileId": "0" * 24}
    )
    assert bogus.status_code == 400
    entry = session.upload_object(b"12345")
    wrong_size = session.drive(
        "POST", "/files", json=base | {"plainName": "b", "size": 6, "fileId": entry["id"]}
    )
    assert wrong_size.status_code == 400
    ok = session.drive(
        "POST", "/files", json=base | {"plainName": "b", "size": 5, "fileId": entry["id"]}
    )
    assert ok.status_code == 201

    emulator.update_user("bob@example.com", max_file_size=4)
    assert session.drive("GET", "/files/limits").json()["maxUploadFileSize"] == 4
    entry = session.upload_object(b"123456")
    capped = session.drive(
        "POST", "/files", json=base | {"plainName": "c", "size": 6, "fileId": entry["id"]}
    )
    assert capped.status_code == 402
    assert capped.json() == {
        "message": "File size exceeds the maximum allowed by your plan",
        "error": "FILE_UPLOAD_SIZE_EXCEEDED",
    }

    emulator.update_user("bob@example.com", empty_file_cap=0)
    none_allowed = session.drive("POST", "/files", json=base | {"plainName": "e1"})
    assert none_allowed.status_code == 402
    assert none_allowed.json()["message"].startswith("You can not have empty files")
    emulator.update_user("bob@example.com", empty_file_cap=3)  # two exist already
    assert session.drive("POST", "/files", json=base | {"plainName": "e1"}).status_code == 201
    more = session.drive("POST", "/files", json=base | {"plainName": "e2"})
    assert more.status_code == 400 and more.json()["message"] == "You can not have more empty files"


def test_existence_rename_move(session: DriveSession) -> None:
    _empty(session, "a", "txt")
    _empty(session, "a", "gz")
    other = _empty(session, "b", "txt")
    url = f"/folders/content/{session.root}/files/existence"
    exact = session.drive("POST", url, json={"files": [{"plainName": "a", "type": "txt"}]})
    assert exact.status_code == 201 and len(exact.json()["existentFiles"]) == 1
    any_ext = session.drive(
        "POST", url, json={"files": [{"plainName": "a", "type": "", "originalFile": {}}]}
    )
    assert sorted(f["type"] for f in any_ext.json()["existentFiles"]) == ["gz", "txt"]
    assert session.drive("POST", url, json={"files": []}).status_code == 400
    too_many = [{"plainName": str(i)} for i in range(201)]
    assert session.drive("POST", url, json={"files": too_many}).status_code == 400

    rename = session.drive(
        "PUT", f"/files/{other['uuid']}/meta", json={"plainName": "a", "type": "txt"}
    )
    assert rename.status_code == 409
    assert rename.json()["message"] == "A file with this name already exists in this location"
    empty = session.drive(
        "PUT", f"/files/{other['uuid']}/meta", json={"plainName": " ", "type": ""}
    )
    assert empty.status_code == 400 and empty.json()["message"] == "Filename cannot be empty"
    ok = session.drive("PUT", f"/files/{other['uuid']}/meta", json={"plainName": "c"})
    assert ok.status_code == 200 and (ok.json()["plainName"], ok.json()["type"]) == ("c", "txt")

    folder = session.mkdir("dest")
    moved = session.drive(
        "PATCH",
        f"/files/{other['uuid']}",
        json={"destinationFolder": folder["uuid"], "name": "noext", "type": ""},
    )
    assert moved.status_code == 200
    assert (moved.json()["plainName"], moved.json()["type"], moved.json()["folderUuid"]) == (
        "noext",
        "",
        folder["uuid"],
    )
    again = session.drive(
        "PATCH", f"/files/{other['uuid']}", json={"destinationFolder": folder["uuid"]}
    )
    assert again.status_code == 409
    _empty(session, "x", "txt", folder["uuid"])
    clash = session.drive(
        "PATCH",
        f"/files/{other['uuid']}",
        json={"destinationFolder": folder["uuid"], "name": "x", "type": "txt"},
    )
    assert clash.status_code == 409
    gone = session.drive(
        "PATCH", f"/files/{MISSING_UUID}", json={"destinationFolder": folder["uuid"]}
    )
    assert gone.status_code == 422
    by_path = session.drive("GET", "/files/meta", params={"path": "/dest/noext"})
    assert by_path.status_code == 200 and by_path.json()["uuid"] == other["uuid"]
    assert session.drive("GET", "/files/meta", params={"path": "nopath"}).status_code == 400
    assert session.drive("GET", "/files/meta", params={"path": "/zz/a.txt"}).json()["message"] == (
        "Parent folders not found"
    )


def test_delete_replace_and_trash(session: DriveSession) -> None:
    first = session.create_file("doc", "txt", b"one")
    replaced = session.drive(
        "PUT",
        f"/files/{first['uuid']}",
        json={"fileId": session.upload_object(b"three")["id"], "size": 5},
    )
    assert replaced.status_code == 200
    assert replaced.json()["uuid"] == first["uuid"] and replaced.json()["size"] == "5"
    old = session.network("GET", f"/buckets/{session.bucket}/files/{first['fileId']}/info")
    assert old.status_code == 404

    assert session.drive("GET", "/users/usage").json()["drive"] == 5
    trash = session.drive(
        "POST", "/storage/trash/add", json={"items": [{"uuid": first["uuid"], "type": "file"}]}
    )
    assert trash.status_code == 200
    assert session.drive("GET", f"/files/{first['uuid']}/meta").json()["status"] == "TRASHED"
    assert session.drive("GET", "/users/usage").json()["drive"] == 5  # trash still counts
    listed = session.drive("GET", f"/folders/content/{session.root}/files?limit=50&offset=0")
    assert listed.json()["files"] == []
    paginated = session.drive(
        "GET", "/storage/trash/paginated?limit=50&offset=0&type=files&root=true"
    )
    assert [f["uuid"] for f in paginated.json()["result"]] == [first["uuid"]]
    restored = session.drive(
        "PATCH", f"/files/{first['uuid']}", json={"destinationFolder": session.root}
    )
    assert restored.status_code == 200 and restored.json()["status"] == "EXISTS"

    session.drive(
        "POST", "/storage/trash/add", json={"items": [{"uuid": first["uuid"], "type": "file"}]}
    )
    purge = session.drive(
        "DELETE", "/storage/trash", json={"items": [{"uuid": first["uuid"], "type": "file"}]}
    )
    assert purge.status_code == 202
    assert session.drive("GET", "/users/usage").json()["drive"] == 0

    second = session.create_file("b", "bin", b"12")
    deleted = session.drive("DELETE", f"/files/{second['uuid']}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
    assert session.drive("GET", f"/files/{second['uuid']}/meta").json()["status"] == "DELETED"
    assert session.drive("DELETE", f"/files/{second['uuid']}").status_code == 404
    assert session.drive("GET", f"/files/{MISSING_UUID}/meta").status_code == 404
    thumb = session.drive(
        "POST", "/files/thumbnail", json={"fileUuid": second["uuid"], "type": "png"}
    )
    assert thumb.status_code == 201 and thumb.json()["fileUuid"] == second["uuid"]
