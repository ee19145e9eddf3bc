"""Typed errors of the protocol client.

Every failure the client reports is one of these, never a raw httpx exception, so the filesystem
layer maps them to errno in one place. ``status`` and ``message`` keep what the server said.
"""

from __future__ import annotations


class InternxtError(Exception):
    """Base class. ``retryable`` says whether the retry policy may try the call again."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


# --- authentication -------------------------------------------------------------------------


class AuthError(InternxtError):
    """Logging in or staying logged in failed."""


class WrongCredentials(AuthError):
    """Unknown email or wrong password (401 ``Wrong login credentials``)."""


class TwoFactorRequired(AuthError):
    """The account has 2FA on and no code or TOTP secret was given."""


class WrongTwoFactorCode(AuthError):
    """The 2FA code was wrong or expired (401 ``Wrong 2-factor auth code``)."""


class AccountBlocked(AuthError):
    """Too many failed logins (403)."""


class PlanNotAllowed(AuthError):
    """The account's plan has no third-party (CLI/rclone) access (402)."""


class InvalidMnemonic(AuthError):
    """The decrypted mnemonic is not a valid BIP39 phrase (wrong password or damaged account)."""


class SessionExpired(AuthError):
    """A token was refused (401 ``Unauthorized``) and could not be renewed."""


# --- transport ------------------------------------------------------------------------------


class Unreachable(InternxtError):
    """The server could not be reached or the connection dropped."""

    retryable = True
    # False only when no attempt of the call ever left: no connection was made (refused),
    # so the server cannot have carried it out (a queued mkdir stays cancellable, pending.py).
    sent = True


class ServerError(InternxtError):
    """5xx, 408 or 429: the server is in trouble; worth retrying."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class ProtocolError(InternxtError):
    """The server answered something the protocol does not allow (bad JSON, missing field)."""


class IncompleteAnswer(ProtocolError):
    """A 200 without the body it must have: drive-server answers so when it swallows an
    internal error (file meta, docs/protocol.md). A server fault, so worth retrying."""

    retryable = True


class LegacyFileFormat(InternxtError):
    """The object is stored in the network's legacy version 1 format, which has no download
    links (the bridge's file info lists no ``shards``); Internxt's web app can still read it."""


class IntegrityError(InternxtError):
    """Downloaded content does not match its shard hash or size."""


# --- requests the server refused ------------------------------------------------------------


class RequestRejected(InternxtError):
    """Any 4xx not covered by a narrower class (400 validation errors among them)."""


class NotFound(RequestRejected):
    pass


class Conflict(RequestRejected):
    """409: a file or folder with that name exists, or the move was already done."""


class Unprocessable(RequestRejected):
    """422: the server would not act on the entry as it found it (e.g. a file move whose file
    or destination its read replica does not show yet: "can not be moved")."""


class InvalidName(RequestRejected):
    """A name Internxt refuses (empty, ``/`` or ``\\`` in a folder name, ...)."""


class QuotaExceeded(RequestRejected):
    """420 ``Max space used``: the account's storage is full."""


class FileTooLarge(RequestRejected):
    """402 ``FILE_UPLOAD_SIZE_EXCEEDED``: above the plan's per-file cap."""


class EmptyFilesLimit(RequestRejected):
    """The plan allows no (more) empty files."""


class Forbidden(RequestRejected):
    """403: not the owner."""


# --- local side -----------------------------------------------------------------------------


class SourceError(InternxtError):
    """The data to upload could not be read as declared (short read: the source changed)."""
