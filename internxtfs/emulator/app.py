"""aiohttp application: middlewares and the route table of both APIs on one origin."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import (
    admin_routes,
    auth_routes,
    file_routes,
    folder_routes,
    network_routes,
    objects,
    trash_routes,
)
from .context import EMULATOR, Emulator, Knobs
from .errors import ApiError, reason
from .faults import ADMIN_PREFIX, faults_middleware
from .replica import ReplicaView
from .store import Store

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DRIVE = "/drive"
NETWORK = "/network"


def _route_key(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return f"{request.method} (unmatched)"
    return f"{request.method} {resource.canonical.rstrip('/') or '/'}"


@web.middleware
async def stats_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(ADMIN_PREFIX):
        return await handler(request)
    stats = request.app[EMULATOR].stats
    key = _route_key(request)
    stats.requests[key] = stats.requests.get(key, 0) + 1
    stats.in_flight += 1
    stats.max_concurrent = max(stats.max_concurrent, stats.in_flight)
    route_now = stats.in_flight_by_route.get(key, 0) + 1
    stats.in_flight_by_route[key] = route_now
    stats.max_concurrent_by_route[key] = max(stats.max_concurrent_by_route.get(key, 0), route_now)
    status = "error"
    try:
        response = await handler(request)
        status = str(response.status)
        return response
    finally:
        stats.in_flight -= 1
        stats.in_flight_by_route[key] -= 1
        stats.statuses[status] = stats.statuses.get(status, 0) + 1


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    if request.path.startswith(DRIVE + "/"):
        message = f"Cannot {request.method} {request.path}" if status in (404, 405) else exc.reason
        body: dict[str, object] = {
            "statusCode": status,
            "message": message,
            "error": reason(status),
        }
        # NestJS answers an unknown method on a known path with 404 as well.
        status = 404 if status == 405 else status
        body["statusCode"] = status
        body["error"] = reason(status)
    else:
        body = {"error": exc.reason}
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith(ADMIN_PREFIX):
            raise
        return _http_error(request, exc)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if request.path.startswith(DRIVE + "/"):
            body: dict[str, object] = {"statusCode": 500, "message": "Internal server error"}
        else:
            body = {"error": "Internal Server Error"}
        return web.json_response(body, status=500)


def _adder(app: web.Application, prefix: str) -> Callable[[str, str, Handler], None]:
    def add(method: str, path: str, handler: Handler) -> None:
        # Clients sometimes put a slash before the query (``.../files/?offset=``): accept both.
        app.router.add_route(method, prefix + path, handler)
        app.router.add_route(method, prefix + path + "/", handler)

    return add


def build_app(
    store: Store,
    knobs: Knobs | None = None,
    seed: int | None = None,
    public_url: str | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[stats_middleware, errors_middleware, faults_middleware],
        client_max_size=1024**2 * 16,  # JSON bodies only; objects are streamed
    )
    app[EMULATOR] = Emulator(
        store=store,
        knobs=knobs or Knobs(),
        rng=random.Random(seed),
        public_url=public_url,
        jwt_secret=store.meta_secret("jwt_secret"),
        url_secret=store.meta_secret("url_secret"),
        replica=ReplicaView(store),
    )
    app[EMULATOR].lagged("folders")  # a lag given at start counts from here
    # Static paths before parametrised ones (e.g. /files/limits before /files/{uuid}).
    drive = _adder(app, DRIVE)
    auth_routes.add_routes(drive)
    trash_routes.add_routes(drive)
    folder_routes.add_routes(drive)
    file_routes.add_routes(drive)
    network_routes.add_routes(_adder(app, NETWORK))
    objects.add_routes(app)
    admin_routes.add_routes(app)
    return app
