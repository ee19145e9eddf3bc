"""Through a real mount, against an emulator that reproduces the real Internxt's quirks
(issue 8): what the user writes is what the server keeps, under the user's name."""

from __future__ import annotations

import os
from typing import Any

from tests.harness import remote
from tests.harness.mounting import MountedFS, cli


def test_emptied_file_then_rewritten_keeps_its_name(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    """Internxt cannot replace a file's content with empty content (it keeps the old fileId
    and deletes the object). Emptying a file and writing it again must leave one entry, under
    its name, with the last content: no dangling fileId, no conflict copy."""
    m: MountedFS = mounted_factory(fs_user)
    path = m.mountpoint / "notes.txt"
    for content in (b"first version", b"", b"third version"):
        path.write_bytes(content)
        assert cli("flush", str(m.mountpoint), env=m.env).returncode == 0
        stored = remote.entries(m.emulator, fs_user)
        assert [(f.path, f.data) for f in stored] == [("notes.txt", content)]
        if not content:
            assert stored[0].file_id is None  # not the deleted object's id
    assert "conflict" not in m.log()
    m.remount(cold=True)
    assert path.read_bytes() == b"third version"


def test_df_counts_what_backups_use_of_the_quota(
    mounted_factory: Any, fs_user: dict[str, Any]
) -> None:
    """Internxt measures the quota against the usage ``total`` (drive + backups + ...): the
    free space df shows must leave out what backups take."""
    quota = fs_user["quota"]
    m: MountedFS = mounted_factory(fs_user)
    m.unmount()
    m.emulator.update_user(fs_user["email"], backup_usage=quota // 2)
    m.mount()
    st = os.statvfs(m.mountpoint)
    assert st.f_blocks * st.f_frsize <= quota
    assert st.f_bavail * st.f_frsize <= quota - quota // 2
