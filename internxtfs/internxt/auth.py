"""Logging in, staying logged in, logging out (protocol §2).

:class:`SessionManager` is what every Drive call asks for a token. It renews the token ahead of
expiry, renews once more on a 401, and falls back to a full login with stored credentials
(TOTP secret included) when the token can no longer be refreshed.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jwt
import trio

from . import crypto
from .errors import (
    AccountBlocked,
    AuthError,
    InternxtError,
    InvalidMnemonic,
    ProtocolError,
    SessionExpired,
    TwoFactorRequired,
    WrongCredentials,
    WrongTwoFactorCode,
)
from .http import Http, bearer, json_body
from .retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

Clock = Callable[[], float]
SessionCallback = Callable[["Session"], Awaitable[None] | None]

TWO_DAYS = 2 * 24 * 3600.0


@dataclass
class Credentials:
    """What a full re-login needs without asking anyone. Store it encrypted."""

    email: str
    password: str
    totp_secret: str | None = None


@dataclass
class Session:
    """A logged-in account: the Bearer token and what the network layer needs.

    ``mnemonic`` is the plain BIP39 phrase (the key to every file); whoever persists
    :meth:`to_dict` must keep it encrypted at rest.
    """

    token: str
    expires_at: float
    issued_at: float
    email: str
    user_uuid: str
    root_folder_uuid: str
    bucket: str
    bridge_user: str
    user_id: str
    mnemonic: str
    user: dict[str, Any] = field(default_factory=dict)

    @property
    def lifetime(self) -> float:
        return max(0.0, self.expires_at - self.issued_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "expires_at": self.expires_at,
            "issued_at": self.issued_at,
            "email": self.email,
            "user_uuid": self.user_uuid,
            "root_folder_uuid": self.root_folder_uuid,
            "bucket": self.bucket,
            "bridge_user": self.bridge_user,
            "user_id": self.user_id,
            "mnemonic": self.mnemonic,
            "user": self.user,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        return cls(
            token=str(data["token"]),
            expires_at=float(data["expires_at"]),
            # Older records lack it: assume the 3-day login lifetime.
            issued_at=float(data.get("issued_at", float(data["expires_at"]) - 3 * 86400)),
            email=str(data["email"]),
            user_uuid=str(data["user_uuid"]),
            root_folder_uuid=str(data["root_folder_uuid"]),
            bucket=str(data["bucket"]),
            bridge_user=str(data["bridge_user"]),
            user_id=str(data["user_id"]),
            mnemonic=str(data["mnemonic"]),
            user=dict(data.get("user") or {}),
        )


def token_times(token: str, now: float) -> tuple[float, float]:
    """``(iat, exp)`` of a JWT, read without verifying it (only the server can)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ProtocolError(f"token is not a JWT: {exc}") from exc
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise ProtocolError("token has no numeric 'exp'")
    iat = claims.get("iat")
    return (float(iat) if isinstance(iat, int | float) else now), float(exp)


def _require_str(user: dict[str, Any], key: str) -> str:
    value = user.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"user record lacks '{key}'")
    return value


def session_from_answer(answer: Any, mnemonic: str, now: float) -> Session:
    """Build a Session from a login-access or refresh answer (``newToken`` + ``user``)."""
    if not isinstance(answer, dict):
        raise ProtocolError("login answer is not an object")
    token = answer.get("newToken")
    user = answer.get("user")
    if not isinstance(token, str) or not isinstance(user, dict):
        raise ProtocolError("login answer lacks 'newToken' or 'user'")
    issued_at, expires_at = token_times(token, now)
    return Session(
        token=token,
        expires_at=expires_at,
        issued_at=issued_at,
        email=_require_str(user, "email"),
        user_uuid=_require_str(user, "uuid"),
        root_folder_uuid=_require_str(user, "rootFolderId"),
        bucket=_require_str(user, "bucket"),
        bridge_user=_require_str(user, "bridgeUser"),
        user_id=_require_str(user, "userId"),
        mnemonic=mnemonic,
        user=user,
    )


async def login(
    http: Http,
    email: str,
    password: str,
    *,
    code: str | None = None,
    totp_secret: str | None = None,
    retry: RetryPolicy | None = None,
    clock: Clock = time.time,
) -> Session:
    """Full login (protocol §2.4). ``code`` wins over ``totp_secret`` when both are given."""
    retry = retry or RetryPolicy()
    drive = http.drive_url

    async def pre_login() -> Any:
        resp = await http.send(
            "POST", f"{drive}/auth/login", json={"email": email}, expected=(200,)
        )
        return json_body(resp)

    details = await retry.run(pre_login, what="pre-login")
    if not isinstance(details, dict) or not isinstance(details.get("sKey"), str):
        raise ProtocolError("pre-login answer lacks 'sKey'")
    try:
        encrypted_password = crypto.login_password_field(password, details["sKey"])
    except (crypto.CryptoError, ValueError) as exc:
        raise ProtocolError(f"cannot decrypt sKey: {exc}") from exc

    body: dict[str, Any] = {"email": email, "password": encrypted_password}
    if details.get("tfa"):
        if code is None and totp_secret is None:
            raise TwoFactorRequired("this account has two-factor authentication on")
        body["tfa"] = code if code is not None else crypto.totp_code(str(totp_secret), clock())

    async def access() -> Any:
        resp = await http.send("POST", f"{drive}/auth/cli/login/access", json=body, expected=(200,))
        return json_body(resp)

    # Retrying access is safe: it has no side effect beyond issuing a token. A failed login
    # counts towards the lockout though, and that is a 401, which is never retried.
    answer = await retry.run(access, what="login")
    user = answer.get("user") if isinstance(answer, dict) else None
    encrypted_mnemonic = user.get("mnemonic") if isinstance(user, dict) else None
    if not isinstance(encrypted_mnemonic, str):
        raise ProtocolError("login answer lacks the user's mnemonic")
    try:
        mnemonic = crypto.decrypt_text(encrypted_mnemonic, password)
    except crypto.CryptoError as exc:
        raise InvalidMnemonic("the mnemonic does not decrypt with this password") from exc
    if not crypto.is_valid_mnemonic(mnemonic):
        raise InvalidMnemonic("the decrypted mnemonic is not a valid BIP39 phrase")
    session = session_from_answer(answer, mnemonic, clock())
    log.info("logged in as %s", session.email)
    return session


async def refresh(
    http: Http, session: Session, *, retry: RetryPolicy | None = None, clock: Clock = time.time
) -> Session:
    """A new token for the same session (``GET /users/cli/refresh``)."""
    retry = retry or RetryPolicy()

    async def call() -> Any:
        resp = await http.send(
            "GET",
            f"{http.drive_url}/users/cli/refresh",
            headers=bearer(session.token),
            expected=(200,),
        )
        return json_body(resp)

    answer = await retry.run(call, what="token refresh")
    # The refresh answer carries the mnemonic still encrypted; the plain one we hold is the same.
    return session_from_answer(answer, session.mnemonic, clock())


async def logout(http: Http, session: Session, *, retry: RetryPolicy | None = None) -> None:
    """Blacklist the token server-side. A token that is already dead counts as logged out."""
    retry = retry or RetryPolicy()

    async def call() -> None:
        await http.send(
            "GET", f"{http.drive_url}/auth/logout", headers=bearer(session.token), expected=(200,)
        )

    with contextlib.suppress(SessionExpired):
        await retry.run(call, what="logout")


class SessionManager:
    """Hands out a valid token; renews it before it runs out and after a 401.

    Shared state: ``_session``. Only :meth:`_renew` replaces it, under ``_lock``, so at most one
    refresh or login is in flight; callers that waited on the lock see the new token and do not
    renew again (they compare the token they failed with against the current one).
    """

    def __init__(
        self,
        http: Http,
        session: Session,
        credentials: Credentials | None = None,
        *,
        retry: RetryPolicy | None = None,
        on_session_change: SessionCallback | None = None,
        clock: Clock = time.time,
        refresh_fraction: float = 1 / 3,
        max_refresh_margin: float = TWO_DAYS,
    ) -> None:
        self._http = http
        self._session = session
        self.credentials = credentials
        self._retry = retry or RetryPolicy()
        self._on_change = on_session_change
        self._clock = clock
        self._fraction = refresh_fraction
        self._max_margin = max_refresh_margin
        self._lock = trio.Lock()
        self.refreshes = 0
        self.relogins = 0
        # Why the session cannot be renewed (None while it can): shown by ``status``.
        self.last_error: str | None = None
        # What fixes a session that cannot be renewed, named in logs and ``status``; the mount
        # sets it to the command for its own profile.
        self.login_command = "internxtfs login"
        # Credentials the server refused at a re-login. Never sent again: every failed login
        # counts towards Internxt's lockout (10 in a row block the account), and a mount
        # retries all day. New credentials (a new ``login``) are tried again.
        self._refused: Credentials | None = None

    @property
    def session(self) -> Session:
        return self._session

    async def use_new_login(self, session: Session, credentials: Credentials | None) -> None:
        """Adopt what a new ``internxtfs login`` stored (e.g. after a password change), while
        running: its session at once, its credentials for later re-logins."""
        async with self._lock:
            self.credentials = credentials
            self._session = session
            self.last_error = None
        log.info("using the session and credentials of a new login")

    def _margin(self) -> float:
        # Renew when less than a third of the lifetime is left, but never wait until the last
        # two days of a long token (the CLI's rule), so a mount idle over a weekend survives.
        return min(self._session.lifetime * self._fraction, self._max_margin)

    def needs_renewal(self) -> bool:
        return self._session.expires_at - self._clock() < self._margin()

    def expired(self) -> bool:
        return self._session.expires_at <= self._clock()

    async def token(self) -> str:
        """A token good for the next call, renewing first if it is getting old."""
        if self.needs_renewal():
            await self._renew(self._session.token, forced=False)
        return self._session.token

    async def authorized(self, fn: Callable[[str], Awaitable[T]]) -> T:
        """Run ``fn(token)``; on a 401 renew once and run it again."""
        token = await self.token()
        try:
            return await fn(token)
        except SessionExpired:
            log.info("token refused; renewing the session")
            await self._renew(token, forced=True)
        try:
            return await fn(self._session.token)
        except SessionExpired as exc:
            self._retry.count_failure(exc)  # refused right after a renewal: a real failure
            raise

    async def _renew(self, stale_token: str, *, forced: bool) -> None:
        async with self._lock:
            if self._session.token != stale_token:
                return  # someone renewed while we waited for the lock
            if not forced and not self.needs_renewal():
                return
            try:
                new = await self._refresh_or_login(forced=forced)
            except SessionExpired as exc:
                self._retry.count_failure(exc)  # nothing renewed it (other errors are counted
                raise  # where they happened)
            if new is None:
                return
            self._session = new
        await self._notify(new)

    async def _refresh_or_login(self, *, forced: bool) -> Session | None:
        try:
            new = await refresh(self._http, self._session, retry=self._retry, clock=self._clock)
            self.refreshes += 1
            log.info("session token refreshed")
            return new
        except (SessionExpired, AuthError) as exc:
            if isinstance(exc, AuthError) and not isinstance(exc, SessionExpired):
                # e.g. the plan lost CLI access: logging in again will not help.
                raise
            log.info("token refresh refused (%s); logging in again", exc)
        except InternxtError as exc:
            if not forced and not self.expired():
                # Transient trouble: the current token still works, try again next call.
                log.warning("token refresh failed (%s); keeping the current token", exc)
                return None
            raise
        return await self._relogin()

    def _cannot_renew(self, why: str) -> SessionExpired:
        """The session ran out and only a person can log in again: say so once, loudly."""
        error = SessionExpired(f"{why}: run `{self.login_command}`")
        message = f"SessionExpired: {error}"
        if self.last_error != message:
            self.last_error = message
            log.error(
                "%s; until then, changes stay in the cache and new files cannot be created",
                error,
            )
        return error

    async def _relogin(self) -> Session:
        creds = self.credentials
        if creds is None:
            raise self._cannot_renew("the session expired and no credentials are stored")
        if self._refused is not None and creds == self._refused:
            raise WrongCredentials(
                f"the stored credentials were refused ({self.last_error}); not trying them "
                f"again: run `{self.login_command}`"
            )
        try:
            new = await login(
                self._http,
                creds.email,
                creds.password,
                totp_secret=creds.totp_secret,
                retry=self._retry,
                clock=self._clock,
            )
        except TwoFactorRequired as exc:
            raise self._cannot_renew(
                "the session expired and the account needs a two-factor code to log in again "
                "(no TOTP secret is stored)"
            ) from exc
        except (WrongCredentials, WrongTwoFactorCode, AccountBlocked) as exc:
            self._refused = creds
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error(
                "the session expired and logging in again with the stored credentials was "
                "refused (%s); pending changes stay in the cache: run `%s`",
                self.last_error,
                self.login_command,
            )
            raise
        self.last_error = None
        self.relogins += 1
        log.info("logged in again with stored credentials")
        return new

    async def _notify(self, session: Session) -> None:
        if self._on_change is None:
            return
        try:
            result = self._on_change(session)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # Failing to persist the token must not fail the call that needed it.
            log.exception("on_session_change callback failed")

    async def logout(self) -> None:
        await logout(self._http, self._session, retry=self._retry)
