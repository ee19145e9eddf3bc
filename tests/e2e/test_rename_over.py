"""rename(2) over an existing entry: the name holds the old entry or the new one, never nothing.

Internxt cannot move onto a taken name, so the mount moves the target aside, moves the source
in, then deletes the target (internxtfs/fs/replacement.py). Each test breaks one step (5xx on a
move, lost answers, kill -9 between steps) and then checks what the server holds, read with
the protocol client or a fresh mount on an empty cache, not through the mount that did it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_durability import check_remote
from tests.harness import remote
from tests.harness.durability import (
    bounded,
    flush_ok,
    remount_after_crash,
    status,
    wait_for_death,
    write_file,
)
from tests.harness.mounting import MountedFS

NO_FAULTS: dict[str, Any] = {
    "fail_rate": 0.0,
    "fail_next": 0,
    "lose_answer_next": 0,
    "fault_method": "",
    "fault_path_regex": "",
}


def _uuid(m: MountedFS, path: str) -> str:
    for entry in remote.entries(m.emulator, m.user, download=False):
        if entry.path == path:
            return entry.uuid
    raise AssertionError(f"{path} is not stored")


def _stored_pair(m: MountedFS) -> tuple[str, str]:
    (m.mountpoint / "rn").mkdir()
    write_file(m.mountpoint / "rn/target.txt", b"precious")
    write_file(m.mountpoint / "rn/source.txt", b"new")
    flush_ok(m)
    return _uuid(m, "rn/target.txt"), _uuid(m, "rn/source.txt")


def _rename_fails_with_eio(m: MountedFS) -> None:
    """rn/source.txt onto rn/target.txt, while the injected faults last: EIO, within bounds."""
    with pytest.raises(OSError) as failed:
        bounded(
            lambda: os.rename(m.mountpoint / "rn/source.txt", m.mountpoint / "rn/target.txt"),
            timeout=120,
            what="the failing rename",
        )
    assert failed.value.errno == errno.EIO


@pytest.mark.parametrize("failing", ["target-aside", "source-move", "every-file-move"])
def test_a_failed_rename_over_a_file_keeps_the_target(new_mount: Any, failing: str) -> None:
    """The issue's reproduction: every file move fails (5xx after the retries) for a while.
    The rename fails with EIO and both files are as they were, locally and remotely."""
    m: MountedFS = new_mount("--delete-mode", "permanent")
    target, source = _stored_pair(m)
    regex = {
        "target-aside": f"^/drive/files/{target}$",
        "source-move": f"^/drive/files/{source}$",  # the target was aside: it is put back
        "every-file-move": "^/drive/files/",
    }[failing]
    m.emulator.set_faults(fail_rate=1.0, fault_method="PATCH", fault_path_regex=regex)
    try:
        _rename_fails_with_eio(m)
        assert (m.mountpoint / "rn/target.txt").read_bytes() == b"precious"
        assert (m.mountpoint / "rn/source.txt").read_bytes() == b"new"
    finally:
        m.emulator.set_faults(**NO_FAULTS)
    flush_ok(m)
    check_remote(m, {"rn/target.txt": b"precious", "rn/source.txt": b"new"})
    assert status(m)["uploads"]["renames_unsettled"] == 0
    # Listings after a refresh agree (no hidden name shows, nothing vanished).
    assert sorted(os.listdir(m.mountpoint / "rn")) == ["source.txt", "target.txt"]
    # Once the server answers again, the same rename goes through.
    os.rename(m.mountpoint / "rn/source.txt", m.mountpoint / "rn/target.txt")
    flush_ok(m)
    check_remote(m, {"rn/target.txt": b"new"})


def test_a_rename_over_a_name_whose_earlier_rename_is_unsettled(new_mount: Any) -> None:
    """A rename over target.txt fails, and so does putting the old target.txt back (it stays
    aside, its restore journaled). Retried at once, the rename over the same name settles
    the first one and then goes through: no EEXIST ("already moved to that location" when
    the target was moved aside a second time), and no old content kept as "restored"."""
    m: MountedFS = new_mount("--delete-mode", "permanent")
    target, source = _stored_pair(m)
    # The source's move fails, then the read of where the target is, which putting it back
    # starts with: the target stays aside (moving it aside, PATCH /files/{target}, works).
    m.emulator.set_faults(
        fail_rate=1.0, fault_path_regex=f"^/drive/files/({source}|{target}/meta)$"
    )
    try:
        _rename_fails_with_eio(m)
        assert status(m)["uploads"]["renames_unsettled"] == 1
        assert (m.mountpoint / "rn/target.txt").read_bytes() == b"precious"  # shown while aside
    finally:
        m.emulator.set_faults(**NO_FAULTS)
    os.rename(m.mountpoint / "rn/source.txt", m.mountpoint / "rn/target.txt")
    assert (m.mountpoint / "rn/target.txt").read_bytes() == b"new"
    flush_ok(m)
    check_remote(m, {"rn/target.txt": b"new"})
    assert status(m)["uploads"]["renames_unsettled"] == 0


def test_lost_answers_to_both_moves_of_a_rename_over(new_mount: Any) -> None:
    """The server carries out the move aside and the move in, and both answers are lost: the
    rename succeeds once, with no hidden entry left behind."""
    m: MountedFS = new_mount()
    _stored_pair(m)
    m.emulator.set_faults(lose_answer_next=2, fault_method="PATCH", fault_path_regex="^/drive/")
    try:
        os.rename(m.mountpoint / "rn/source.txt", m.mountpoint / "rn/target.txt")
    finally:
        m.emulator.set_faults(**NO_FAULTS)
    assert (m.mountpoint / "rn/target.txt").read_bytes() == b"new"
    flush_ok(m)
    check_remote(m, {"rn/target.txt": b"new"})


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        # Killed with the target aside and the source not moved: the rename never happened.
        ("after-target-aside", {"rn/target.txt": b"precious", "rn/source.txt": b"new"}),
        # Killed with the source moved in, before the journal knew: the rename completes.
        ("after-source-moved", {"rn/target.txt": b"new"}),
    ],
)
def test_kill_between_the_steps_of_a_rename_over(
    new_mount: Any, point: str, expected: dict[str, bytes]
) -> None:
    m: MountedFS = new_mount(crash_at=point)
    _stored_pair(m)
    with contextlib.suppress(OSError):  # the mount dies while answering
        os.rename(m.mountpoint / "rn/source.txt", m.mountpoint / "rn/target.txt")
    wait_for_death(m)
    remount_after_crash(m)
    assert {p.name: p.read_bytes() for p in (m.mountpoint / "rn").iterdir()} == {
        Path(k).name: v for k, v in expected.items()
    }
    flush_ok(m)
    check_remote(m, expected)
    assert status(m)["uploads"]["renames_unsettled"] == 0


def test_a_failed_rename_over_an_empty_directory_keeps_it(new_mount: Any) -> None:
    m: MountedFS = new_mount()
    mnt = m.mountpoint
    (mnt / "x/a").mkdir(parents=True)
    write_file(mnt / "x/a/f.txt", b"inside")
    (mnt / "b").mkdir()
    flush_ok(m)
    # The source folder's move (PATCH /folders/{uuid}) fails; moving b aside is a rename
    # (PUT /folders/{uuid}/meta) and goes through, so b must be put back.
    m.emulator.set_faults(
        fail_rate=1.0, fault_method="PATCH", fault_path_regex="^/drive/folders/[^/]+$"
    )
    try:
        with pytest.raises(OSError) as failed:
            bounded(lambda: os.rename(mnt / "x/a", mnt / "b"), timeout=120, what="the rename")
        assert failed.value.errno == errno.EIO
    finally:
        m.emulator.set_faults(**NO_FAULTS)
    flush_ok(m)
    fresh: MountedFS = new_mount(user=m.user, name="fresh")
    assert sorted(os.listdir(fresh.mountpoint)) == ["b", "x"]
    assert os.listdir(fresh.mountpoint / "b") == []
    assert (fresh.mountpoint / "x/a/f.txt").read_bytes() == b"inside"
    # And when it works, the directory is replaced.
    os.rename(mnt / "x/a", mnt / "b")
    assert (mnt / "b/f.txt").read_bytes() == b"inside"
    flush_ok(m)
    check_remote(m, {"b/f.txt": b"inside"})
