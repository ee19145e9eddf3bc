"""Where the Internxt APIs live and how this client introduces itself (protocol §1).

The two base URLs default to production and can be pointed elsewhere (the emulator, a proxy)
with ``INTERNXTFS_DRIVE_URL`` / ``INTERNXTFS_NETWORK_URL``. Nothing else in the package reads
the environment for URLs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_DRIVE_URL = "https://gateway.internxt.com/drive"
DEFAULT_NETWORK_URL = "https://gateway.internxt.com/network"

DRIVE_URL_ENV = "INTERNXTFS_DRIVE_URL"
NETWORK_URL_ENV = "INTERNXTFS_NETWORK_URL"

# We speak the CLI's dialect of the protocol, so we introduce ourselves as the CLI does: the
# server derives the "platform" of the session (and the plan check of §2.4) from
# ``internxt-client``, and ``internxt-cli`` maps to the CLI platform that third-party tools are
# granted. ``internxt-version`` is only logged by the server; we send the CLI release whose wire
# behaviour the protocol notes describe. The desktop header is a public constant the CLI sends
# and the edge gateway may look at (protocol §1.2, [uncertain]), so we send it too.
CLIENT_NAME = "internxt-cli"
CLIENT_VERSION = "1.6.6"
DESKTOP_HEADER = "3b68706a367fd567b929396290b1de40768bb768"
USER_AGENT = "internxtfs/0.1"


def drive_url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get(DRIVE_URL_ENV) or DEFAULT_DRIVE_URL).rstrip("/")


def network_url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get(NETWORK_URL_ENV) or DEFAULT_NETWORK_URL).rstrip("/")
