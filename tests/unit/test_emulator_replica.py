"""Emulator: reads Internxt serves from a read replica see the state of ``replica_lag_ms`` ago.

A lag of a minute makes every check deterministic: nothing written during the test is visible
to a lagged read, and everything written before the lag was switched on is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.harness.emulator import EmulatorProcess
from tests.harness.emulator_session import DriveSession

LONG_LAG = 60_000


@pytest.fixture
def session(
    emulator_factory: Callable[..., EmulatorProcess],
) -> Iterator[DriveSession]:
    emulator = emulator_factory(["--replica-lag-ms", "0"])
    user = emulator.add_user(email="lag@example.com", password="pw")
    drive = DriveSession(emulator, user)
    yield drive
    drive.close()


def _names(session: DriveSession, folder: str, kind: str) -> list[str]:
    body = session.drive("GET", f"/folders/content/{folder}/{kind}?limit=50&offset=0").json()
    return sorted(item["plainName"] for item in body[kind])


def _file_body(session: DriveSession, folder: str, name: str) -> dict[str, object]:
    return {"plainName": name, "type": "txt", "size": 0, "folderUuid": folder}


def test_a_new_folder_is_not_on_the_replica_yet(session: DriveSession) -> None:
    session.emulator.set_faults(replica_lag_ms=LONG_LAG)
    folder = session.mkdir("fresh")["uuid"]
    # create-file's folder check, create-folder's parent check, meta, listing, delete lookup
    created = session.drive("POST", "/files", json=_file_body(session, folder, "a"))
    assert created.status_code == 404 and created.json()["message"] == "Folder not found"
    child = session.drive("POST", "/folders", json={"plainName": "b", "parentFolderUuid": folder})
    assert child.status_code == 404
    assert session.drive("GET", f"/folders/{folder}/meta").status_code == 404
    assert "fresh" not in _names(session, session.root, "folders")
    assert session.drive("DELETE", f"/folders/{folder}").status_code == 404
    # The delete was refused, so the folder is still there once the replica catches up.
    session.emulator.set_faults(replica_lag_ms=0)
    assert "fresh" in _names(session, session.root, "folders")
    created = session.drive("POST", "/files", json=_file_body(session, folder, "a"))
    assert created.status_code == 201


def test_a_name_freed_a_moment_ago_still_conflicts_on_move(session: DriveSession) -> None:
    old = session.create_file("target", "txt", b"")
    moving = session.create_file("source", "txt", b"")
    session.emulator.set_faults(replica_lag_ms=LONG_LAG)
    renamed = session.drive("PUT", f"/files/{old['uuid']}/meta", json={"plainName": "aside"})
    assert renamed.status_code == 200  # writes see the current state
    move = {"destinationFolder": session.root, "name": "target", "type": "txt"}
    assert session.drive("PATCH", f"/files/{moving['uuid']}", json=move).status_code == 409
    # Listing and meta still show the old name.
    assert _names(session, session.root, "files") == ["source", "target"]
    meta = session.drive("GET", f"/files/{old['uuid']}/meta").json()
    assert meta["plainName"] == "target"
    session.emulator.set_faults(replica_lag_ms=0)
    assert session.drive("PATCH", f"/files/{moving['uuid']}", json=move).status_code == 200
    assert _names(session, session.root, "files") == ["aside", "target"]


def test_create_checks_names_on_the_replica_and_the_primary_index_refuses_the_rest(
    session: DriveSession,
) -> None:
    gone = session.mkdir("gone")
    session.emulator.set_faults(replica_lag_ms=LONG_LAG)
    folder = {"plainName": "twice", "parentFolderUuid": session.root}
    assert session.drive("POST", "/folders", json=folder).status_code == 201
    # The replica misses the new folder; the primary's unique index refuses the second one,
    # and drive-server's filter maps only the index's dropped predecessor to 409.
    again = session.drive("POST", "/folders", json=folder)
    assert again.status_code == 500 and again.json()["message"] == "Internal server error"
    session.create_file("twice", "txt", b"")
    again = session.drive("POST", "/files", json=_file_body(session, session.root, "twice"))
    assert again.status_code == 409
    # A name freed a moment ago is still taken on the replica.
    assert session.drive("DELETE", f"/folders/{gone['uuid']}").status_code == 204
    reuse = {"plainName": "gone", "parentFolderUuid": session.root}
    assert session.drive("POST", "/folders", json=reuse).status_code == 409
    session.emulator.set_faults(replica_lag_ms=0)
    assert session.drive("POST", "/folders", json=reuse).status_code == 201
    assert _names(session, session.root, "folders").count("twice") == 1


def test_entry_lookups_of_writes_read_the_replica(session: DriveSession) -> None:
    old_folder = session.mkdir("old")["uuid"]
    old_file = session.create_file("older", "txt", b"")["uuid"]
    session.emulator.set_faults(replica_lag_ms=LONG_LAG)
    fresh = session.create_file("fresh", "txt", b"")["uuid"]
    new_folder = session.mkdir("new")["uuid"]
    move = {"destinationFolder": old_folder, "name": "fresh", "type": "txt"}
    moved = session.drive("PATCH", f"/files/{fresh}", json=move)
    assert moved.status_code == 422 and "can not be moved" in moved.json()["message"]
    for method, path, body in (
        ("PUT", f"/files/{fresh}/meta", {"plainName": "renamed"}),
        ("DELETE", f"/files/{fresh}", None),
        ("PUT", f"/folders/{new_folder}/meta", {"plainName": "renamed"}),
        ("PATCH", f"/folders/{new_folder}", {"destinationFolder": old_folder}),
        ("PATCH", f"/folders/{old_folder}", {"destinationFolder": new_folder}),
    ):
        assert session.drive(method, path, json=body).status_code == 404, (method, path)
    # An old file into a new folder: the destination is not on the replica either.
    into_new = {"destinationFolder": new_folder, "name": "older", "type": "txt"}
    moved = session.drive("PATCH", f"/files/{old_file}", json=into_new)
    assert moved.status_code == 422 and "can not be moved to" in moved.json()["message"]
    # The trash skips a folder it does not see, and says nothing.
    items = {"items": [{"uuid": new_folder, "type": "folder"}]}
    assert session.drive("POST", "/storage/trash/add", json=items).status_code == 200
    session.emulator.set_faults(replica_lag_ms=0)
    assert "new" in _names(session, session.root, "folders")
    moved = session.drive("PATCH", f"/files/{fresh}", json=move)
    assert moved.status_code == 200


def test_the_lag_is_a_serve_option(emulator_factory: Callable[..., EmulatorProcess]) -> None:
    emulator = emulator_factory(["--replica-lag-ms", "1500"])
    assert emulator.set_faults()["replica_lag_ms"] == 1500
