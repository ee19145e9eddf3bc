"""The directory holding the control sockets must be the user's alone (issue 13, item 5).

Without ``XDG_RUNTIME_DIR`` it is ``/tmp/internxtfs-UID``, in the shared /tmp: another local
user who creates it first could answer ``internxtfs flush`` with "everything is stored".
These tests run the real functions against a temporary directory standing in for /tmp.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from internxtfs import control

OTHER_UID = 4242  # some other local user


@pytest.fixture
def shared_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ``runtime_dir()`` points without XDG_RUNTIME_DIR, moved under a test directory."""
    path = tmp_path / f"internxtfs-{os.getuid()}"
    monkeypatch.setattr(control, "runtime_dir", lambda: path)
    return path


def test_created_private_when_missing(shared_tmp: Path) -> None:
    assert control.checked_runtime_dir(create=True) == shared_tmp
    assert stat.S_IMODE(os.lstat(shared_tmp).st_mode) == 0o700


def test_refused_when_another_user_owns_it(shared_tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    shared_tmp.mkdir(mode=0o700)
    os.chown(shared_tmp, OTHER_UID, OTHER_UID)
    with pytest.raises(control.UnsafeRuntimeDir, match="belongs to uid 4242, not to you"):
        control.checked_runtime_dir(create=True)


def test_refused_when_its_mode_lets_others_in(shared_tmp: Path) -> None:
    shared_tmp.mkdir()
    os.chmod(shared_tmp, 0o777)
    with pytest.raises(control.UnsafeRuntimeDir, match="mode 0777"):
        control.checked_runtime_dir(create=True)
    os.chmod(shared_tmp, 0o750)
    with pytest.raises(control.UnsafeRuntimeDir, match="mode 0750"):
        control.checked_runtime_dir(create=False)


def test_refused_when_it_is_a_symlink(shared_tmp: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    shared_tmp.symlink_to(elsewhere)
    with pytest.raises(control.UnsafeRuntimeDir, match="not a directory"):
        control.checked_runtime_dir(create=True)


def test_a_client_never_talks_through_a_foreign_directory(shared_tmp: Path) -> None:
    """`flush` must refuse before connecting: the socket there may be anyone's."""
    shared_tmp.mkdir()
    os.chmod(shared_tmp, 0o777)
    (shared_tmp / control.socket_path("/mnt/x").name).touch()  # a planted "socket"

    async def ask() -> None:
        async for _ in control.request("/mnt/x", "flush"):
            pass

    with pytest.raises(control.UnsafeRuntimeDir):
        trio.run(ask)


def test_a_mount_refuses_to_listen_there(shared_tmp: Path) -> None:
    shared_tmp.mkdir()
    os.chmod(shared_tmp, 0o755)
    with (
        pytest.raises(control.UnsafeRuntimeDir),
        control._listening_socket(control.socket_path("/mnt/x")),
    ):
        pass


async def test_a_mount_resetting_the_control_socket_is_an_oserror(tmp_path: Path) -> None:
    """A mount going away mid-request resets the connection: callers that skip mounts which
    cannot answer (tell_every_mount, after `internxtfs login`) catch OSError, and trio's own
    BrokenResourceError slipped past them and failed the login."""
    import socket as pysocket
    import time

    import trio

    from internxtfs.control import request_at

    path = tmp_path / "m.sock"
    listener = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def accept_and_reset() -> None:
        conn, _ = listener.accept()
        # Closed with the request unread: the peer's next read is ECONNRESET, what the
        # connection of a mount that dies mid-request looks like.
        time.sleep(0.2)
        conn.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, accept_and_reset)
        with pytest.raises(OSError):
            async for _ in request_at(path, "status"):
                pass
    listener.close()
