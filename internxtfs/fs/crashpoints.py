"""Named crash points for the durability tests (``tests/e2e/test_durability.py``).

With ``INTERNXTFS_TEST_CRASH_AT=<point>`` in the mount's environment, the process kills itself
with SIGKILL (exactly what ``kill -9`` does) the first time it reaches that point. It is the
only way to stop between two steps that follow each other without a network wait to hold
them apart, e.g. a drive create that was answered and the journal commit that records it.
The emulator's delays and faults cover the points that do wait on the network.

Points: ``after-create`` and ``after-replace`` (uploader: the drive entry now points at the new
object, the journal does not know yet); ``after-remote-delete`` (uploader: the
delete of an unlinked file sent, the journal not updated yet) and ``after-remote-move``
(operations: rename sent to Internxt, the journal not updated yet);
``after-target-aside`` and ``after-source-moved`` (replacement.py: a rename over an existing
entry with the target moved aside, and with the source moved onto the name);
``after-link-record`` (namespace.py: a symlink made offline has its journal record, its
target is not in the cache yet).

Unset, which is always the case outside tests, a crash point costs one comparison.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

ENV = "INTERNXTFS_TEST_CRASH_AT"
_POINT = os.environ.get(ENV) or None


def crash_point(name: str) -> None:
    if _POINT is not None and name == _POINT:
        log.critical("test crash point %r reached; killing this process (%s)", name, ENV)
        logging.shutdown()  # so the test sees the line above
        os.kill(os.getpid(), signal.SIGKILL)
