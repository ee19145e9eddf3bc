"""Request parsing with NestJS-style 400 answers (class-validator messages, §7.2)."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .errors import bad_request

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
HEX24 = re.compile(r"^[0-9a-f]{24}$", re.I)
HEX64 = re.compile(r"^[0-9a-f]{64}$", re.I)


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and bool(_UUID.match(value))


def destination_folder(body: dict[str, Any]) -> str:
    """The ``destinationFolder`` of a move body, validated like the server's DTO."""
    destination = body.get("destinationFolder")
    if not is_uuid(destination):
        raise bad_request(["destinationFolder must be a UUID"])
    return str(destination).lower()


def path_uuid(request: web.Request, name: str = "uuid") -> str:
    value = request.match_info[name]
    if not is_uuid(value):
        # What NestJS' ParseUUIDPipe answers.
        raise bad_request("Validation failed (uuid is expected)")
    return value.lower()


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("Unexpected token in JSON body") from exc
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object")
    return body


def _number(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def limit_offset(
    request: web.Request, *, required: bool = True, max_limit: int = 50
) -> tuple[int, int]:
    """``limit`` 1..max and ``offset`` ≥ 0, with the messages class-validator produces."""
    errors: list[str] = []
    raw_limit = request.query.get("limit")
    raw_offset = request.query.get("offset")
    if not required:
        raw_limit = raw_limit if raw_limit is not None else str(max_limit)
        raw_offset = raw_offset if raw_offset is not None else "0"
    limit, offset = _number(raw_limit), _number(raw_offset)
    if limit is None or limit > max_limit:
        errors.append(f"limit must not be greater than {max_limit}")
    if limit is None or limit < 1:
        errors.append("limit must not be less than 1")
    if limit is None or not limit.is_integer():
        errors.append("limit must be an integer number")
    if offset is None or offset < 0:
        errors.append("offset must not be less than 0")
    if offset is None or not offset.is_integer():
        errors.append("offset must be an integer number")
    if errors:
        raise bad_request(errors)
    assert limit is not None and offset is not None
    return int(limit), int(offset)


def sort_order(request: web.Request, allowed: tuple[str, ...]) -> tuple[str, str] | None:
    """(column, direction) when both ``sort`` and ``order`` are given; otherwise None (§7.2)."""
    sort, order = request.query.get("sort"), request.query.get("order")
    errors = []
    if sort is not None and sort not in allowed:
        errors.append(f"sort must be one of the following values: {', '.join(allowed)}")
    if order is not None and order not in ("ASC", "DESC"):
        errors.append("order must be one of the following values: ASC, DESC")
    if errors:
        raise bad_request(errors)
    if sort is None or order is None:
        return None
    return sort, order


SORT_COLUMNS = {
    "updatedAt": "updated_at",
    "id": "id",
    "plainName": "plain_name",
    "uuid": "uuid",
    "size": "size",
}


def order_clause(sorting: tuple[str, str] | None) -> str:
    """The ORDER BY of a listing page.

    Internxt orders by the one requested column and nothing else (drive-server-wip:
    ``src/modules/file/file.repository.ts`` ``findAllCursor``, ``order: appliedOrder``), and
    PostgreSQL returns rows that tie on it in whatever order the plan yields, which can differ
    from one page request to the next. ``plainName`` is not unique (``report.pdf`` and
    ``report.docx`` share it), so ties are ordered at random here, anew on every request: a
    client that pages on it with LIMIT/OFFSET skips and repeats entries, as it would there.
    ``id`` and ``uuid`` are unique, so their order is total."""
    if sorting is None:
        return "ORDER BY id ASC"
    column = SORT_COLUMNS[sorting[0]]
    return f"ORDER BY {column} {sorting[1]}, random()"
