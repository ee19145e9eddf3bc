"""Drive session tokens (protocol §2.5): HS256 JWTs with jti/sub/iat/exp and ``payload.uuid``."""

from __future__ import annotations

import time
import uuid as uuidlib
from typing import Any

import jwt
from aiohttp import web

from .context import Emulator, emulator_of
from .errors import unauthorized
from .store import Row


def issue(emu: Emulator, user: Row, *, refresh: bool, platform: str | None) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "uuid": user["uuid"],
        "email": user["email"],
        "name": user["name"],
        "lastname": user["lastname"],
        "username": user["email"],
        "sharedWorkspace": False,
        "networkCredentials": {"user": user["bridge_user"]},
        "tierId": "free_id",
        "workspaces": {"owners": []},
    }
    if platform:
        payload["platform"] = platform
    claims = {
        "jti": str(uuidlib.uuid4()),
        "sub": user["uuid"],
        "iat": now,
        "exp": now + emu.lifetime(refresh=refresh),
        "payload": payload,
    }
    return jwt.encode(claims, emu.jwt_secret, algorithm="HS256")


def issue_legacy(emu: Emulator, user: Row, *, refresh: bool) -> str:
    """The legacy ``token`` (email only); never accepted as a Bearer since it lacks payload.uuid."""
    now = int(time.time())
    claims = {"email": user["email"], "iat": now, "exp": now + emu.lifetime(refresh=refresh)}
    return jwt.encode(claims, emu.jwt_secret, algorithm="HS256")


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(request: web.Request) -> tuple[Row, dict[str, Any]]:
    """The user behind a valid, unexpired, non-blacklisted token; 401 otherwise."""
    emu = emulator_of(request)
    token = bearer(request)
    if token is None:
        raise unauthorized()
    try:
        claims = jwt.decode(
            token,
            emu.jwt_secret,
            algorithms=["HS256"],
            options={"require": ["exp", "jti"]},
            leeway=0,
        )
    except jwt.PyJWTError as exc:
        raise unauthorized() from exc
    payload = claims.get("payload")
    if not isinstance(payload, dict) or not payload.get("uuid"):
        raise unauthorized()
    if emu.store.scalar("SELECT 1 FROM blacklist WHERE jti = ?", claims["jti"]):
        raise unauthorized()
    user = emu.store.user_by_uuid(payload["uuid"])
    if user is None:
        raise unauthorized()
    return user, claims


def require_user(request: web.Request) -> Row:
    return authenticate(request)[0]
