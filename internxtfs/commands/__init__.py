"""What every command shares: exit codes, usage errors, terminal detection.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 authentication failure (wrong
password, wrong 2FA code, blocked account, plan without access), 4 server unreachable.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("internxtfs")

EXIT_FAIL, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE = 1, 2, 3, 4


class UsageError(Exception):
    pass


def interactive() -> bool:
    return sys.stdin.isatty()
