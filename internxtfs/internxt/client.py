"""``InternxtClient``: one object that wires the protocol layers together.

It owns the ``httpx.AsyncClient`` (use it as an async context manager) and shares one retry
policy — hence one set of retry statistics — between the Drive and network APIs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

import httpx

from . import endpoints
from .auth import Credentials, Session, SessionCallback, SessionManager, login
from .consistency import DEFAULT_WINDOW, ReadLag
from .drive import DriveAPI
from .http import DEFAULT_TIMEOUT, Http
from .network import NetworkAPI
from .objectget import ObjectGetter, proxies_configured
from .retry import RetryPolicy

log = logging.getLogger(__name__)


class InternxtClient:
    """Drive + network access for one account.

    Build it with a stored :class:`Session`, or without one and call :meth:`login` first.
    ``transport`` replaces httpx's network transport (tests); ``retry`` and ``clock`` make time
    and randomness injectable.
    """

    def __init__(
        self,
        session: Session | None = None,
        credentials: Credentials | None = None,
        *,
        drive_url: str | None = None,
        network_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        on_session_change: SessionCallback | None = None,
        clock: Callable[[], float] = time.time,
        max_connections: int = 32,
        replica_window: float = DEFAULT_WINDOW,
    ) -> None:
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=DEFAULT_TIMEOUT,
            limits=httpx.Limits(max_connections=max_connections),
            follow_redirects=False,
        )
        self.http = Http(
            self._client,
            drive_url=drive_url or endpoints.drive_url(),
            network_url=network_url or endpoints.network_url(),
        )
        # Object bodies are received in worker threads (objectget) unless a test transport or
        # a proxy must see every request: then they go through httpx like the rest.
        self._objects = ObjectGetter() if transport is None and not proxies_configured() else None
        self.retry = retry or RetryPolicy()
        self.credentials = credentials
        self._on_session_change = on_session_change
        self._clock = clock
        self._replica_window = replica_window
        self._sessions: SessionManager | None = None
        self._drive: DriveAPI | None = None
        self._network: NetworkAPI | None = None
        if session is not None:
            self._use(session)

    def _use(self, session: Session) -> None:
        self._sessions = SessionManager(
            self.http,
            session,
            self.credentials,
            retry=self.retry,
            on_session_change=self._on_session_change,
            clock=self._clock,
        )
        self._drive = DriveAPI(
            self.http,
            self._sessions,
            retry=self.retry,
            read_lag=ReadLag(self._replica_window),
        )
        # Network credentials, bucket and mnemonic never change for an account, so the
        # network layer keeps its own copy and survives token renewals untouched.
        self._network = NetworkAPI(
            self.http,
            session.bridge_user,
            session.user_id,
            session.bucket,
            session.mnemonic,
            retry=self.retry,
            object_getter=self._objects,
        )

    async def login(
        self,
        email: str,
        password: str,
        *,
        code: str | None = None,
        totp_secret: str | None = None,
        remember: bool = False,
    ) -> Session:
        """Log in and start using the new session. ``remember`` keeps the credentials (and
        TOTP secret) for silent re-login when the token can no longer be refreshed."""
        session = await login(
            self.http,
            email,
            password,
            code=code,
            totp_secret=totp_secret,
            retry=self.retry,
            clock=self._clock,
        )
        if remember:
            self.credentials = Credentials(email, password, totp_secret)
        self._use(session)
        return session

    async def logout(self) -> None:
        if self._sessions is not None:
            await self._sessions.logout()

    @property
    def session_manager(self) -> SessionManager:
        if self._sessions is None:
            raise RuntimeError("not logged in")
        return self._sessions

    @property
    def session(self) -> Session:
        return self.session_manager.session

    @property
    def drive(self) -> DriveAPI:
        if self._drive is None:
            raise RuntimeError("not logged in")
        return self._drive

    @property
    def network(self) -> NetworkAPI:
        if self._network is None:
            raise RuntimeError("not logged in")
        return self._network

    async def aclose(self) -> None:
        if self._objects is not None:
            self._objects.close()
        await self._client.aclose()

    async def __aenter__(self) -> InternxtClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
