"""The profile's login while mounted.

The client renews its session by itself; :meth:`Login.persist` writes each renewed session
back to the profile (``on_session_change``), unless the profile was removed meanwhile. A new
``internxtfs login`` of the same profile (told through the control socket) or SIGHUP
(``systemctl reload``) reaches :meth:`Login.reload`, which takes up the new login without a
remount and retries the uploads that failed for want of one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from internxtfs.config import Profile, ProfileError, load_profile, profile_dir, save_profile
from internxtfs.internxt.auth import Session
from internxtfs.internxt.client import InternxtClient

log = logging.getLogger(__name__)


class Login:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.client: InternxtClient | None = None  # set once the client exists (attach)
        self.on_reload: Callable[[], None] = lambda: None

    def attach(self, client: InternxtClient, on_reload: Callable[[], None]) -> None:
        """The client whose session this is (it calls :meth:`persist`); ``on_reload`` runs
        after a new login is in use."""
        self.client = client
        self.on_reload = on_reload

    @property
    def profile_dir(self) -> str:
        """Names the profile in control requests: same name, another config root differs."""
        return str(profile_dir(self.profile.name))

    async def persist(self, session: Session) -> None:
        profile = self.profile
        profile.session = session
        if not (profile_dir(profile.name) / "profile.json").exists():
            # Logged out while mounted (`logout` refuses that, but the profile may have been
            # removed by other means): never write the secrets back, and stop re-logging in.
            if self.client is not None:
                self.client.session_manager.credentials = None
            profile.credentials = None
            log.error(
                "profile %r was removed (logged out) while mounted: its credentials are no "
                "longer used or stored; unmount, then 'internxtfs login --profile %s'",
                profile.name,
                profile.name,
            )
            return
        save_profile(profile)

    async def reload(self, name: object) -> dict[str, Any]:
        """A new ``internxtfs login`` of this profile: use it without a remount."""
        profile = self.profile
        if name != self.profile_dir:  # same name, another config root
            return {"ignored": True}
        try:
            fresh = await trio.to_thread.run_sync(
                lambda: load_profile(profile.name, key=profile.key)
            )
        except ProfileError as exc:
            log.error("cannot read the new login of profile %r: %s", profile.name, exc)
            return {"error": str(exc)}
        if fresh.session.user_uuid != profile.session.user_uuid:
            log.error("profile %r now holds another account; remount to use it", profile.name)
            return {"error": "the profile now holds another account; remount to use it"}
        profile.session, profile.credentials = fresh.session, fresh.credentials
        assert self.client is not None
        await self.client.session_manager.use_new_login(fresh.session, fresh.credentials)
        self.on_reload()
        return {"reloaded": True}
