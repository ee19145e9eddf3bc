"""The emulator's own control API under ``/_emulator`` (not part of Internxt's protocol).

Only reachable at the origin's root: nothing under ``/drive`` or ``/network`` maps here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
from typing import Any

from aiohttp import web

from .context import Knobs, emulator_of
from .users import UserError, create_user, describe_user, update_user

log = logging.getLogger(__name__)

PREFIX = "/_emulator"


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise web.HTTPBadRequest(text="invalid JSON") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="JSON object expected")
    return body


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


_FIELD_TYPES = {field.name: field.type for field in dataclasses.fields(Knobs)}


def apply_knobs(knobs: Knobs, changes: dict[str, Any]) -> None:
    """Validate everything first so a bad request changes nothing."""
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        name = key.replace("-", "_")
        if name == "seed":
            continue
        if name not in _FIELD_TYPES:
            raise ValueError(f"unknown knob {key}")
        if name in ("fault_path_regex", "fault_method"):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string or null")
            if name == "fault_path_regex" and value:
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"fault_path_regex: {exc}") from None
            clean[name] = value or None
            continue
        if name == "token_lifetime" and value is None:
            clean[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key} must be a non-negative number")
        if name.endswith("_rate") and value > 1:
            raise ValueError(f"{key} must be between 0 and 1")
        integral = name in ("bandwidth", "token_lifetime", "info_mirrors") or name.endswith("_next")
        clean[name] = int(value) if integral else float(value)
    for name, value in clean.items():
        setattr(knobs, name, value)


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(emulator_of(request).knobs.as_dict())


async def set_faults(request: web.Request) -> web.Response:
    emu = emulator_of(request)
    body = await _body(request)
    try:
        apply_knobs(emu.knobs, body)
        # Start (or stop) recording row versions now: a lag switched on counts from here.
        emu.lagged("folders")
    except ValueError as exc:
        return _bad(str(exc))
    if "seed" in body:
        emu.rng = random.Random(body["seed"])
    log.info("knobs now %s", emu.knobs.as_dict())
    return web.json_response(emu.knobs.as_dict())


async def add_user(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        user = create_user(
            emulator_of(request).store,
            email=str(body.get("email", "")),
            password=str(body.get("password", "")),
            mnemonic=body.get("mnemonic"),
            totp_secret=body.get("totp_secret") or body.get("totpSecret"),
            quota=body.get("quota"),
        )
    except UserError as exc:
        return _bad(str(exc))
    return web.json_response(user, status=201)


async def get_user(request: web.Request) -> web.Response:
    store = emulator_of(request).store
    user = store.user_by_email(request.match_info["email"])
    if user is None:
        return web.json_response({"error": "no such user"}, status=404)
    # Both ledgers: the drive's files and the bridge's objects (orphans show as a difference).
    usage = {
        "driveUsage": store.drive_usage(user["id"]),
        "networkUsage": store.network_usage(user["id"]),
    }
    return web.json_response(describe_user(user) | usage)


async def patch_user(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        user = update_user(emulator_of(request).store, request.match_info["email"], body)
    except LookupError:
        return web.json_response({"error": "no such user"}, status=404)
    except UserError as exc:
        return _bad(str(exc))
    return web.json_response(user)


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(emulator_of(request).stats.as_dict())


async def reset_stats(request: web.Request) -> web.Response:
    emulator_of(request).stats.reset()
    return web.json_response({"reset": True})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(f"{PREFIX}/health", health)
    router.add_get(f"{PREFIX}/faults", get_faults)
    router.add_post(f"{PREFIX}/faults", set_faults)
    router.add_post(f"{PREFIX}/users", add_user)
    router.add_get(f"{PREFIX}/users/{{email}}", get_user)
    router.add_patch(f"{PREFIX}/users/{{email}}", patch_user)
    router.add_get(f"{PREFIX}/stats", get_stats)
    router.add_post(f"{PREFIX}/stats/reset", reset_stats)
