"""The per-process state every handler reaches through ``request.app[EMULATOR]``."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from aiohttp import web

from .replica import ReplicaView
from .store import Store

LOGIN_LIFETIME = 3 * 24 * 3600  # §2.5
REFRESH_LIFETIME = 7 * 24 * 3600


@dataclasses.dataclass
class Knobs:
    """Realism and fault knobs; all can be changed while the server runs (admin API)."""

    latency_ms: float = 0.0
    bandwidth: int = 0  # bytes/s per object transfer; 0 = unlimited
    fail_rate: float = 0.0  # fraction of API requests answered 500/503
    throttle_rate: float = 0.0  # fraction of API requests answered 429
    reset_rate: float = 0.0  # fraction of object transfers cut mid-body
    # Fraction of API requests that are carried out in full and whose answer is then lost (the
    # connection is cut): the client cannot tell whether its create/move/delete happened.
    lose_answer_rate: float = 0.0
    token_lifetime: int | None = None  # seconds; None = Internxt's 3 days / 7 days
    # Reads that Internxt serves from a read replica answer from the state this many ms ago
    # (replica.py; the list is in docs/protocol.md). Writes always see the current state.
    replica_lag_ms: float = 0.0
    # Deterministic one-shot variants: the next N eligible requests get the fault.
    fail_next: int = 0
    throttle_next: int = 0
    reset_next: int = 0
    lose_answer_next: int = 0
    # The next N eligible requests are carried out and answered 200 with an empty body, as
    # drive-server's file meta does when it swallows an internal error (file.controller.ts).
    empty_answer_next: int = 0
    # Milliseconds per part that the answer of a finished upload takes (after it is done).
    finish_ms_per_part: float = 0.0
    # How many entries (one per mirror) the bridge's file info lists in ``shards``.
    info_mirrors: int = 1
    # Only paths matching this regex get faults (None = all API / object paths).
    fault_path_regex: str | None = None
    # ... and only requests with this HTTP method (None = any).
    fault_method: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Stats:
    """Request counters for tests: per route, and the peak number of requests in flight."""

    requests: dict[str, int] = dataclasses.field(default_factory=dict)
    in_flight: int = 0
    max_concurrent: int = 0
    in_flight_by_route: dict[str, int] = dataclasses.field(default_factory=dict)
    max_concurrent_by_route: dict[str, int] = dataclasses.field(default_factory=dict)
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    faults_injected: dict[str, int] = dataclasses.field(default_factory=dict)

    def reset(self) -> None:
        in_flight, by_route = self.in_flight, dict(self.in_flight_by_route)
        self.__init__()  # type: ignore[misc]
        # Requests still running (e.g. the reset call itself) keep being counted correctly.
        self.in_flight = in_flight
        self.in_flight_by_route = by_route

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "total": sum(self.requests.values()),
            "in_flight": self.in_flight,
            "max_concurrent": self.max_concurrent,
            "max_concurrent_by_route": dict(self.max_concurrent_by_route),
            "statuses": dict(self.statuses),
            "faults_injected": dict(self.faults_injected),
        }


@dataclasses.dataclass
class Emulator:
    store: Store
    knobs: Knobs
    rng: random.Random
    public_url: str | None = None
    stats: Stats = dataclasses.field(default_factory=Stats)
    jwt_secret: str = ""
    url_secret: str = ""
    replica: ReplicaView | None = None

    def lagged(self, table: str) -> str:
        """FROM-clause source for a read Internxt sends to a read replica (see replica.py)."""
        if self.replica is None:
            self.replica = ReplicaView(self.store)
        return self.replica.source(table, self.knobs.replica_lag_ms)

    def lifetime(self, *, refresh: bool) -> int:
        if self.knobs.token_lifetime is not None:
            return self.knobs.token_lifetime
        return REFRESH_LIFETIME if refresh else LOGIN_LIFETIME

    def base_url(self, request: web.Request) -> str:
        """Origin for presigned URLs: --public-url, else the origin the client used."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"{request.scheme}://{request.host}"


EMULATOR = web.AppKey("emulator", Emulator)


def emulator_of(request: web.Request) -> Emulator:
    return request.app[EMULATOR]
