"""Error responses in the two dialects the emulator speaks (protocol §8).

The drive API is NestJS: ``{"statusCode", "message", "error"}``; the network API (bridge) answers
``{"error": "..."}``. Handlers raise :class:`ApiError`; a middleware turns it into the response.
"""

from __future__ import annotations

import http
from typing import Any

from aiohttp import web


class ApiError(Exception):
    """An error response; ``body`` is sent as JSON exactly as given."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, headers=self.headers)


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def drive_error(status: int, message: str | list[str]) -> ApiError:
    """A NestJS HttpException body."""
    return ApiError(status, {"statusCode": status, "message": message, "error": reason(status)})


def bad_request(message: str | list[str]) -> ApiError:
    return drive_error(400, message)


def not_found(message: str) -> ApiError:
    return drive_error(404, message)


def conflict(message: str) -> ApiError:
    return drive_error(409, message)


def unauthorized() -> ApiError:
    # NestJS' bare UnauthorizedException() has no "error" key (§2.5).
    return ApiError(401, {"message": "Unauthorized", "statusCode": 401})


def payment_required(message: str, error: str) -> ApiError:
    # The drive's 402 bodies carry no statusCode (§8).
    return ApiError(402, {"message": message, "error": error})


def network_error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error": message})
