"""What the README and docs promise about unmounting matches what the commands do."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_no_doc_says_fusermount_waits_for_uploads() -> None:
    # fusermount3 -u returns as soon as the kernel detaches the mount; the process stores what
    # is pending afterwards (tests/e2e/test_durability.py::
    # test_unmount_right_after_write_loses_nothing). Only `internxtfs umount` waits.
    for doc in (ROOT / "README.md", *(ROOT / "docs").glob("*.md")):
        for line in doc.read_text().splitlines():
            if "fusermount3 -u" in line:
                claim = re.split(r"[:;.)|]", line.split("fusermount3 -u", 1)[1])[0]
                assert not re.search(r"\b(waits|also flushes)\b", claim), f"{doc.name}: {line}"
