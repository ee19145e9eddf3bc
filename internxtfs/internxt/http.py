"""A thin layer over ``httpx.AsyncClient``: headers, timeouts, and HTTP → typed errors.

One attempt per call; retrying is :mod:`.retry`'s job. Three kinds of endpoint (protocol §1):

* ``drive``   — JSON, ``Authorization: Bearer <newToken>``, NestJS error bodies;
* ``network`` — JSON, ``Authorization: Basic ...``, bridge error bodies ``{"error": ...}``;
* ``object``  — presigned storage URLs: raw bytes, **no** auth header.

Every response status is checked against the exact set the caller expects (protocol §9.1):
an unexpected 2xx is a :class:`ProtocolError`, not a silent success.
"""

from __future__ import annotations

import email.utils
import json as _json
import logging
import time
from collections.abc import AsyncIterable, Collection, Mapping
from typing import Any, Literal

import httpcore
import httpx
import trio

from .endpoints import CLIENT_NAME, CLIENT_VERSION, DESKTOP_HEADER, USER_AGENT
from .errors import (
    AccountBlocked,
    AuthError,
    Conflict,
    EmptyFilesLimit,
    FileTooLarge,
    Forbidden,
    InternxtError,
    InvalidName,
    NotFound,
    PlanNotAllowed,
    ProtocolError,
    QuotaExceeded,
    RequestRejected,
    ServerError,
    SessionExpired,
    Unprocessable,
    Unreachable,
    WrongCredentials,
    WrongTwoFactorCode,
)
from .retry import interactive_deadline

log = logging.getLogger(__name__)

Kind = Literal["drive", "network", "object"]

# No call may wait forever: a stalled connect or a stalled read both end in Unreachable, which
# the retry policy then handles like a dropped connection.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)
# A process waits on an interactive call (retry.py): its connect, its wait for a free
# connection and each wait for the next bytes of the answer end with its budget, not after a
# minute. A server that accepts connections and never answers (a hung proxy or server) gave
# no error before the read timeout, so an `ls` of a folder never listed hung for 60 s
# (issue 9: no call longer than 10 s). Bytes that keep coming (a slow download) are not cut:
# the read timeout is the wait for the next bytes. Never below this floor, so a request made
# late in a call that legitimately takes longer (a listing of many pages) still gets time.
INTERACTIVE_TIMEOUT_FLOOR = 3.0

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

# httpcore receives a response body in socket reads of at most 64 KiB, each one a round trip
# through trio and h11 in the trio thread: downloading 1 GiB cost ~2.5 s of its CPU, the
# largest share of a cold read; with 1 MiB reads, ~1.4 s (ranged GETs of 8 MiB from the
# emulator on loopback). A read returns what the socket holds, so small responses are
# unaffected. (A class attribute of httpcore's HTTP/1.1 connection; no per-client setting.)
RECEIVE_BYTES = 1024 * 1024
if getattr(httpcore.AsyncHTTP11Connection, "READ_NUM_BYTES", RECEIVE_BYTES) < RECEIVE_BYTES:
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = RECEIVE_BYTES


def base_headers() -> dict[str, str]:
    return {
        "internxt-client": CLIENT_NAME,
        "internxt-version": CLIENT_VERSION,
        "x-internxt-desktop-header": DESKTOP_HEADER,
        "user-agent": USER_AGENT,
    }


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: integer seconds or an HTTP-date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _message(body: object, fallback: str) -> str:
    if isinstance(body, Mapping):
        msg = body.get("message")
        if isinstance(msg, list):
            return "; ".join(str(m) for m in msg)
        if isinstance(msg, str) and msg:
            return msg
        err = body.get("error")
        if isinstance(err, str) and err:
            return err
    if isinstance(body, str) and body:
        return body[:200]
    return fallback


# What the bridge's 400s say when they are really its 5xx: its error handler
# (bridge lib/server/middleware/error-handler.ts) answers every error whose code is above 500
# as 400 with the error's message: ServiceUnavailableError ("Service Unavailable", "Timed out
# waiting for pointers", lib/server/error-types.ts, routes/buckets.js), NotImplementedError,
# and database errors that carry a numeric code (MongoDB's network and election errors). A 400
# with any other message is a refusal and fails at once.
_BRIDGE_SERVER_FAULTS = (
    "service unavailable",
    "timed out",
    "timeout",
    "internal error",
    "not primary",
    "node is recovering",
    "connection",
    "socket",
    "econn",
    "topology",
    "server selection",
    "interrupted",
    "shutdown",
)


def _bridge_server_fault(message: str) -> bool:
    return any(mark in message for mark in _BRIDGE_SERVER_FAULTS)


def error_for(response: httpx.Response, kind: Kind = "drive") -> InternxtError:
    """Map a non-success response to the narrowest typed error (protocol §8)."""
    status = response.status_code
    try:
        body: object = response.json()
    except (ValueError, UnicodeDecodeError):
        body = response.text if response.content else None
    msg = _message(body, f"HTTP {status}")
    code = body.get("error") if isinstance(body, Mapping) else None
    low = msg.lower()

    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return ServerError(msg, status=status, body=body, retry_after=retry_after)
    if status == 401:
        if "wrong login credentials" in low:
            return WrongCredentials(msg, status=status, body=body)
        if "2-factor" in low or "two-factor" in low or "2fa" in low:
            return WrongTwoFactorCode(msg, status=status, body=body)
        if kind == "network":
            # Basic credentials derive from the account and never expire; a refusal here is
            # not fixed by refreshing the drive token.
            return AuthError(f"network credentials refused: {msg}", status=status, body=body)
        return SessionExpired(msg, status=status, body=body)
    if status == 402:
        if code == "FILE_UPLOAD_SIZE_EXCEEDED" or "exceeds the maximum" in low:
            return FileTooLarge(msg, status=status, body=body)
        if "empty files" in low:
            return EmptyFilesLimit(msg, status=status, body=body)
        if "access not allowed" in low:
            return PlanNotAllowed(msg, status=status, body=body)
        return RequestRejected(msg, status=status, body=body)
    if status == 403:
        if "blocked" in low:
            return AccountBlocked(msg, status=status, body=body)
        return Forbidden(msg, status=status, body=body)
    if status == 404:
        return NotFound(msg, status=status, body=body)
    if status == 409:
        return Conflict(msg, status=status, body=body)
    if status == 422:
        return Unprocessable(msg, status=status, body=body)
    if status == 420 or "max space used" in low:
        return QuotaExceeded(msg, status=status, body=body)
    if status == 400 and kind == "network" and _bridge_server_fault(low):
        # The bridge answers its own 5xx (above 500) as 400 (docs/protocol.md).
        return ServerError(msg, status=status, body=body)
    if status == 400:
        if "empty files" in low:
            return EmptyFilesLimit(msg, status=status, body=body)
        if "name" in low and ("invalid" in low or "not valid" in low or "empty" in low):
            return InvalidName(msg, status=status, body=body)
    return RequestRejected(msg, status=status, body=body)


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(
            f"{response.request.method} {response.request.url.path}: answer is not JSON",
            status=response.status_code,
        ) from exc


def _interactive_timeouts() -> httpx.Timeout | None:
    """The timeouts of a request made for a process waiting on the mount: the rest of its
    budget (at least INTERACTIVE_TIMEOUT_FLOOR), never more than the default ones. None for
    a background task."""
    deadline = interactive_deadline()
    if deadline is None:
        return None
    left = max(INTERACTIVE_TIMEOUT_FLOOR, deadline - trio.current_time())
    d = DEFAULT_TIMEOUT
    assert d.connect is not None and d.read is not None and d.pool is not None
    return httpx.Timeout(
        connect=min(d.connect, left), read=min(d.read, left), write=d.write, pool=min(d.pool, left)
    )


class Http:
    """Sends one request and returns the response, or raises a typed error."""

    def __init__(self, client: httpx.AsyncClient, *, drive_url: str, network_url: str) -> None:
        self.client = client
        self.drive_url = drive_url.rstrip("/")
        self.network_url = network_url.rstrip("/")

    async def send(
        self,
        method: str,
        url: str,
        *,
        expected: Collection[int],
        kind: Kind = "drive",
        json: object = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        stream: bool = False,
        timeouts: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """One attempt. With ``stream=True`` the body is left unread; the caller closes it."""
        hdrs: dict[str, str] = base_headers()
        if kind == "object":
            # Presigned URLs get no auth and no client headers; identity encoding keeps Range
            # offsets about the stored bytes.
            hdrs = {"user-agent": USER_AGENT, "accept-encoding": "identity"}
        body: bytes | AsyncIterable[bytes] | None = content
        if json is not None:
            body = _json.dumps(json, separators=(",", ":")).encode()
            hdrs["content-type"] = JSON_CONTENT_TYPE
        if headers:
            hdrs.update(headers)
        request = self.client.build_request(
            method,
            url,
            content=body,
            headers=hdrs,
            params=params,
            timeout=timeouts or _interactive_timeouts() or DEFAULT_TIMEOUT,
        )
        try:
            response = await self.client.send(request, stream=stream)
        except httpx.TransportError as exc:
            error = Unreachable(
                f"{method} {request.url.copy_with(query=None)}: {type(exc).__name__}: {exc}"
            )
            error.sent = not isinstance(exc, httpx.ConnectError)  # no connection, not sent
            raise error from exc
        if response.status_code in expected:
            return response
        try:
            if stream:
                await response.aread()
        except httpx.TransportError as exc:
            raise Unreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        finally:
            if stream:
                await response.aclose()
        if 200 <= response.status_code < 300:
            raise ProtocolError(
                f"{method} {request.url.path}: unexpected status {response.status_code}",
                status=response.status_code,
            )
        err = error_for(response, kind)
        log.debug("%s %s -> %d %s", method, request.url.path, response.status_code, err.message)
        raise err
