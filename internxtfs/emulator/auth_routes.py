"""Login, 2FA, lockout, refresh and logout (protocol §2.4, §2.5), plus quota endpoints (§7.5)."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from internxtfs.internxt.crypto import (
    CRYPTO_SECRET,
    TOTP_STEP,
    CryptoError,
    decrypt_text,
    encrypt_text,
    totp_code,
)

from . import tokens
from .context import emulator_of
from .dto import user_dto
from .errors import ApiError, bad_request, drive_error, payment_required
from .store import Row
from .validation import json_body

log = logging.getLogger(__name__)

MAX_FAILED_LOGINS = 10
TOTP_WINDOW = 2  # steps of 30 s either side (§2.4)

WRONG_CREDENTIALS = "Wrong login credentials"
WRONG_TFA = "Wrong 2-factor auth code"
BLOCKED = "Your account has been blocked for security reasons. Please reach out to us"


def platform_of(request: web.Request) -> str:
    """``cli`` for Internxt's CLI, ``rclone`` for everything else, no header included (§2.4)."""
    client = request.headers.get("internxt-client", "")
    return "cli" if client in ("internxt-cli", "@internxt/cli") else "rclone"


def check_platform(user: Row, platform: str) -> None:
    if platform not in user["platforms"].split(","):
        raise payment_required(
            f"{platform} access not allowed for this user tier", "FEATURE_NOT_AVAILABLE"
        )


async def security_details(request: web.Request) -> web.Response:
    body = await json_body(request)
    email = body.get("email")
    if not isinstance(email, str) or not email.strip():
        raise bad_request(["email must be an email"])
    user = emulator_of(request).store.user_by_email(email.strip())
    if user is None:
        raise drive_error(401, WRONG_CREDENTIALS)
    return web.json_response(
        {
            "hasKeys": False,
            "sKey": encrypt_text(user["salt"], CRYPTO_SECRET),
            "tfa": bool(user["totp_secret"]),
            "hasKyberKeys": False,
            "hasEccKeys": False,
        }
    )


def _fail_login(request: web.Request, user: Row, message: str) -> ApiError:
    store = emulator_of(request).store
    with store.transaction() as conn:
        conn.execute(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?", (user["id"],)
        )
    log.info("failed login for %s (%d before this one)", user["email"], user["failed_logins"])
    return drive_error(401, message)


def _password_matches(user: Row, field: Any) -> bool:
    if not isinstance(field, str):
        return False
    try:
        return decrypt_text(field, CRYPTO_SECRET) == user["password_hash"]
    except CryptoError:
        return False


def _tfa_matches(user: Row, code: Any) -> bool:
    if not isinstance(code, str | int) or not str(code).strip():
        return False
    # As internxt/drive-server-wip src/modules/auth/two-factor-auth.service.ts checks codes
    # (speakeasy, window 2): any secret length, pyotp's 112-bit floor would refuse Internxt's own.
    now = time.time()
    given = str(code).strip()
    return any(
        totp_code(user["totp_secret"], now + step * TOTP_STEP) == given
        for step in range(-TOTP_WINDOW, TOTP_WINDOW + 1)
    )


async def _access(request: web.Request, *, cli: bool) -> web.Response:
    emu = emulator_of(request)
    body = await json_body(request)
    email = body.get("email")
    if not isinstance(email, str) or not email.strip():
        raise bad_request(["email must be an email"])
    user = emu.store.user_by_email(email.strip())
    if user is None:
        raise drive_error(401, WRONG_CREDENTIALS)
    if user["failed_logins"] >= MAX_FAILED_LOGINS:
        raise drive_error(403, BLOCKED)
    if not _password_matches(user, body.get("password")):
        raise _fail_login(request, user, WRONG_CREDENTIALS)
    if user["totp_secret"] and not _tfa_matches(user, body.get("tfa")):
        raise _fail_login(request, user, WRONG_TFA)
    platform = platform_of(request) if cli else None
    if platform is not None:
        check_platform(user, platform)
    if user["failed_logins"]:
        with emu.store.transaction() as conn:
            conn.execute("UPDATE users SET failed_logins = 0 WHERE id = ?", (user["id"],))
    # The emulator keeps no OpenPGP keys: user.keys stay null whatever the client sends.
    return web.json_response(
        {
            "user": user_dto(user),
            "token": tokens.issue_legacy(emu, user, refresh=False),
            "userTeam": None,
            "newToken": tokens.issue(emu, user, refresh=False, platform=platform),
        }
    )


async def cli_access(request: web.Request) -> web.Response:
    return await _access(request, cli=True)


async def web_access(request: web.Request) -> web.Response:
    return await _access(request, cli=False)


async def _refresh(request: web.Request, *, cli: bool) -> web.Response:
    emu = emulator_of(request)
    user = tokens.require_user(request)
    platform = platform_of(request) if cli else None
    if platform is not None:
        check_platform(user, platform)
    return web.json_response(
        {
            "oldToken": tokens.bearer(request),
            "token": tokens.issue_legacy(emu, user, refresh=True),
            "newToken": tokens.issue(emu, user, refresh=True, platform=platform),
            "user": user_dto(user),
        }
    )


async def cli_refresh(request: web.Request) -> web.Response:
    return await _refresh(request, cli=True)


async def web_refresh(request: web.Request) -> web.Response:
    return await _refresh(request, cli=False)


async def logout(request: web.Request) -> web.Response:
    _, claims = tokens.authenticate(request)
    store = emulator_of(request).store
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO blacklist (jti, exp) VALUES (?, ?)",
            (claims["jti"], int(claims["exp"])),
        )
    return web.json_response({"logout": True})


async def usage(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    drive = emulator_of(request).store.drive_usage(user["id"])
    # drive-server-wip src/modules/user/user.usecase.ts ``getUserUsage``: ``total`` is drive +
    # backup + mail, and it is what the quota is measured against.
    backup = int(user.get("backup_usage") or 0)
    return web.json_response({"drive": drive, "backup": backup, "mail": 0, "total": drive + backup})


async def limit(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    return web.json_response({"maxSpaceBytes": user["quota"]})


async def file_limits(request: web.Request) -> web.Response:
    user = tokens.require_user(request)
    return web.json_response(
        {
            "maxUploadFileSize": user["max_file_size"],
            "versioning": {
                "enabled": False,
                "maxFileSize": 0,
                "retentionDays": 0,
                "maxVersions": 0,
            },
        }
    )


def add_routes(add: Any) -> None:
    add("POST", "/auth/login", security_details)
    add("POST", "/auth/cli/login/access", cli_access)
    add("POST", "/auth/login/access", web_access)
    add("GET", "/auth/logout", logout)
    add("GET", "/users/cli/refresh", cli_refresh)
    add("GET", "/users/refresh", web_refresh)
    add("GET", "/users/usage", usage)
    add("GET", "/users/limit", limit)
    add("GET", "/files/limits", file_limits)
