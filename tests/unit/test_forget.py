"""pyfuse3's contract for ``forget``: it never raises, not even FUSEError (an exception there
ends the mount). A failure while forgetting one inode is logged and the others still go."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from internxtfs.fs.inodes import ROOT_INODE
from tests.unit.test_replaced_while_open import Server, _lookup, _mount


async def test_forget_survives_a_failing_drop_and_forgets_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fs, _journal = _mount(tmp_path, Server(), [1000.0])
    ino = await _lookup(fs)
    node = fs.table.get(ino)
    assert node is not None
    node.unlinked = True  # as after an unlink while the kernel still knew the inode

    def disk_full(_node: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    fs.namespace.drop_local = disk_full  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        await fs.forget([(ino, node.lookups), (ROOT_INODE, 1), (987654, 1)])
    assert fs.table.get(ino) is None  # forgotten, though dropping its record failed
    assert "forget of inode" in caplog.text
