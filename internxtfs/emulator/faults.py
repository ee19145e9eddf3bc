"""Realism and fault injection: latency, 5xx, 429, bandwidth caps, mid-body resets, lost answers.

Knobs live in :class:`~.context.Knobs` and can change at run time; every random draw comes from
the emulator's seeded ``random.Random`` so a run is reproducible with ``--seed``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .context import Emulator, emulator_of
from .errors import reason

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ADMIN_PREFIX = "/_emulator"
API_PREFIXES = ("/drive/", "/network/")


def _eligible(emu: Emulator, request: web.Request, default: bool) -> bool:
    method = emu.knobs.fault_method
    if method and request.method != method.upper():
        return False
    pattern = emu.knobs.fault_path_regex
    if pattern:
        return re.search(pattern, request.path) is not None
    return default


def _draw(emu: Emulator, next_field: str, rate: float) -> bool:
    """One-shot counters first (deterministic tests), then the random rate."""
    remaining = getattr(emu.knobs, next_field)
    if remaining > 0:
        setattr(emu.knobs, next_field, remaining - 1)
        return True
    return rate > 0 and emu.rng.random() < rate


def _count(emu: Emulator, kind: str) -> None:
    emu.stats.faults_injected[kind] = emu.stats.faults_injected.get(kind, 0) + 1


def _fault_response(path: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    if path.startswith("/drive/"):
        body: dict[str, object] = {
            "statusCode": status,
            "message": reason(status),
            "error": reason(status),
        }
    else:
        body = {"error": reason(status)}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith(ADMIN_PREFIX):
        # The admin API answers only to its own literal prefix, never to a path that merely
        # normalises to it (e.g. ``/drive/../_emulator/...``).
        if not request.raw_path.startswith(ADMIN_PREFIX + "/"):
            raise web.HTTPNotFound()
        return await handler(request)
    emu = emulator_of(request)
    if emu.knobs.latency_ms > 0:
        await asyncio.sleep(emu.knobs.latency_ms / 1000)
    eligible = _eligible(emu, request, path.startswith(API_PREFIXES))
    if eligible:
        if _draw(emu, "fail_next", emu.knobs.fail_rate):
            status = emu.rng.choice((500, 503))
            _count(emu, str(status))
            log.info("injected %d on %s %s", status, request.method, path)
            if status > 500 and path.startswith("/network/"):
                # The bridge's error handler answers any status above 500 as 400 with the
                # error's message (bridge lib/server/middleware/error-handler.ts).
                return web.json_response({"error": reason(status)}, status=400)
            return _fault_response(path, status)
        if _draw(emu, "throttle_next", emu.knobs.throttle_rate):
            _count(emu, "429")
            log.info("injected 429 on %s %s", request.method, path)
            return _fault_response(path, 429, {"Retry-After": "1"})
    response = await handler(request)
    if eligible and response.status == 200 and _draw(emu, "empty_answer_next", 0.0):
        _count(emu, "empty_answer")
        log.info("carried out %s %s, then answered 200 with no body", request.method, path)
        return web.Response(status=200)
    # Only a request that succeeded changed anything worth hiding; an error answer passes.
    if (
        eligible
        and response.status < 400
        and _draw(emu, "lose_answer_next", emu.knobs.lose_answer_rate)
    ):
        _count(emu, "lost_answer")
        log.info("carried out %s %s, then lost its answer", request.method, path)
        abort_connection(request)  # aiohttp then drops the answer it cannot write
    return response


def should_reset(request: web.Request) -> bool:
    """Whether this object transfer gets its connection cut mid-body."""
    emu = emulator_of(request)
    if not _eligible(emu, request, True):
        return False
    if _draw(emu, "reset_next", emu.knobs.reset_rate):
        _count(emu, "reset")
        log.info("injecting connection reset on %s %s", request.method, request.path)
        return True
    return False


def abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


class Pacer:
    """Holds one transfer to ``bandwidth`` bytes/s (0 = unlimited), read once at its start."""

    def __init__(self, bandwidth: int) -> None:
        self.bandwidth = bandwidth
        self.started = time.monotonic()
        self.sent = 0

    @property
    def chunk_size(self) -> int:
        # Small chunks under a cap keep the rate smooth; 256 KiB otherwise.
        if self.bandwidth > 0:
            return max(1024, min(256 * 1024, self.bandwidth // 10))
        return 256 * 1024

    async def pace(self, nbytes: int) -> None:
        if self.bandwidth <= 0:
            return
        self.sent += nbytes
        due = self.started + self.sent / self.bandwidth
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
