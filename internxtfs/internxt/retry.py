"""The one retry policy every protocol call goes through.

Exponential backoff with full jitter (delay drawn uniformly from ``[0, min(cap, base·2^n))``),
so many clients hitting the same trouble spread out instead of retrying in lockstep. A
``Retry-After`` from the server (429/503) replaces the jittered delay: the server knows better.

Only errors marked ``retryable`` (``Unreachable``, ``ServerError``: dropped connections,
timeouts, 408, 429, 5xx) are retried; every other 4xx is final.

Calls that are not idempotent (creating a file or folder) pass a ``recover`` hook. A dropped
connection leaves us not knowing whether the first attempt landed, so before sending again the
policy asks the hook, which looks (e.g. an existence check by name) and returns the entry that
landed, or ``None`` to go ahead and resend.
"""

from __future__ import annotations

import logging
import math
import random as _random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

import httpx
import trio

from .errors import Conflict, InternxtError, ServerError, SessionExpired, Unreachable

log = logging.getLogger(__name__)

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
Random = Callable[[], float]
Recover = Callable[[], Awaitable[T | None]]


@dataclass
class RetryStats:
    """Counters for the ``status`` command; shared by every call using the policy."""

    calls: int = 0
    retries: int = 0
    recovered: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # wall-clock seconds
    last_success_at: float | None = None
    # Since when (wall clock) Internxt cannot be reached: set when a call fails for good on a
    # connection error, timeout or 5xx, cleared by the next call that gets an answer.
    offline_since: float | None = None
    offline_error: str | None = None  # what made us take it for unreachable

    def as_dict(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "retries": self.retries,
            "recovered": self.recovered,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
            "failing": self.failing,
            "offline_since": self.offline_since,
            "offline_error": self.offline_error,
        }

    @property
    def failing(self) -> bool:
        """The last error is still the news: no request has succeeded since."""
        return self.last_error_at is not None and (
            self.last_success_at is None or self.last_success_at < self.last_error_at
        )


# Calls made for a process waiting on the mount (a FUSE request, or a fetch or listing such a
# request waits for) are "interactive": they retry only within a short budget, and while
# Internxt is known to be unreachable they make a single attempt, bounded by the budget, so no
# filesystem call waits out the whole retry schedule (issue 9: `stat` must not hang). Keyed by
# trio task, not a context variable: trio copies context variables into tasks spawned from a
# request, and those (uploads, read-ahead) must keep the full schedule.
INTERACTIVE_BUDGET = 5.0
# While Internxt is known to be down, the one attempt of an interactive call waits this long at
# most: a server that accepts connections and never answers otherwise held every call for the
# whole budget, and a read the kernel asks twice (readahead, then the page) for twice that.
# Connections refused fail at once anyway; the background probe notices the server's return.
OFFLINE_ATTEMPT = 2.0
_interactive: dict[object, float] = {}


@contextmanager
def interactive(
    budget: float = INTERACTIVE_BUDGET, *, until: float | None = None
) -> Iterator[None]:
    """Mark the calls made by the current trio task (until the block ends) as interactive:
    for ``budget`` seconds from now, or until the trio time ``until`` (a task working for an
    interactive one passes its deadline: :func:`interactive_deadline`)."""
    try:
        task: object | None = trio.lowlevel.current_task()
    except RuntimeError:  # not in trio (sync tests)
        task = None
    if task is None:
        yield
        return
    previous = _interactive.get(task)
    deadline = trio.current_time() + budget if until is None else until
    _interactive[task] = deadline if previous is None else min(previous, deadline)
    try:
        yield
    finally:
        if previous is None:
            _interactive.pop(task, None)
        else:
            _interactive[task] = previous


def carry_interactive() -> Callable[[], AbstractContextManager[None]]:
    """Called in an interactive task, returns what makes a task it spawns interactive with
    the same deadline (``with carried(): ...`` in the child); a no-op from a background task."""
    deadline = interactive_deadline()

    def carried() -> AbstractContextManager[None]:
        return nullcontext() if deadline is None else interactive(until=deadline)

    return carried


def interactive_deadline() -> float | None:
    """The current task's interactive deadline (trio time), None for a background task."""
    try:
        return _interactive.get(trio.lowlevel.current_task())
    except RuntimeError:
        return None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, InternxtError):
        return exc.retryable
    # Streaming bodies can raise httpx errors outside the request wrapper.
    return isinstance(exc, httpx.TransportError)


def as_internxt_error(exc: BaseException) -> BaseException:
    if isinstance(exc, httpx.TransportError):
        err = Unreachable(f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err
    return exc


class RetryPolicy:
    def __init__(
        self,
        *,
        attempts: int = 6,
        base: float = 0.5,
        cap: float = 30.0,
        max_retry_after: float = 120.0,
        sleep: Sleep = trio.sleep,
        random: Random = _random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.attempts = attempts
        self.base = base
        self.cap = cap
        # A huge Retry-After would hang a filesystem call for that long; past this bound we
        # still wait, but only this much, and let the next answer tell us again.
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._random = random
        self._clock = clock
        self.stats = RetryStats()
        # Answers received so far (any status the server itself gave): a call that fails for
        # good while others got answers meanwhile met a bad patch, not an outage.
        self._answers = 0
        # The bounds of single attempts made while Internxt is known to be down (_bounded):
        # lifted when it answers again, so a download that began just as it came back is
        # not cut off as if it were still down.
        self._offline_bounds: set[trio.CancelScope] = set()

    def delay(self, retry_number: int, exc: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 = first retry)."""
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(exc, ServerError) and retry_after is not None:
            return min(max(0.0, float(retry_after)), self.max_retry_after)
        ceiling = min(self.cap, self.base * (2 ** (retry_number - 1)))
        return self._random() * ceiling

    def record_failure(self, exc: BaseException) -> None:
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.stats.last_error_at = self._clock()

    @property
    def offline(self) -> bool:
        return self.stats.offline_since is not None

    def _went_offline(self, exc: BaseException, answers_before: int) -> None:
        # No connection, a timeout, or a gateway with nothing behind it (502/503/504). A 500
        # or a 429 comes from the server itself: it answers, if badly (drive-server also says
        # 500 for some refusals); listings still fall back on the last one (metadata.py).
        exc = as_internxt_error(exc)
        unreachable = isinstance(exc, Unreachable) or (
            isinstance(exc, ServerError) and exc.status in (None, 502, 503, 504)
        )
        if not unreachable:
            return
        if self._answers != answers_before:
            # Other requests got answers while this one failed: a burst of 503s from a busy
            # gateway, not an outage. Taken for one, the state flipped on and off within a
            # second under such bursts, and calls meanwhile gave up after one attempt.
            return
        if self.stats.offline_since is None:
            self.stats.offline_since = self._clock()
            self.stats.offline_error = f"{type(exc).__name__}: {exc}"
            # One line for the whole outage (and one when it ends): not one per request.
            log.warning(
                "Internxt cannot be reached (%s); serving from the cache, changes wait in "
                "the journal",
                self.stats.offline_error,
            )

    def _answered(self) -> None:
        self.stats.last_success_at = self._clock()
        self._reachable()

    def _reachable(self) -> None:
        self._answers += 1
        if self.stats.offline_since is not None:
            for scope in self._offline_bounds:
                scope.deadline = math.inf
            log.warning(
                "Internxt answers again after %.0f s; back to fresh listings and uploads",
                self._clock() - self.stats.offline_since,
            )
            self.stats.offline_since = None
            self.stats.offline_error = None

    def answered(self) -> None:
        """A request got an answer outside :meth:`run` (e.g. a streamed download)."""
        self._answered()

    def count_failure(self, exc: BaseException) -> None:
        """A call that failed for good (what ``failures`` and ``last_error`` report)."""
        self.stats.failures += 1
        self.record_failure(exc)

    async def backoff(
        self, retry_number: int, exc: BaseException, what: str, wait: float | None = None
    ) -> None:
        """Account for one retry and wait before it; for callers that loop themselves."""
        if wait is None:
            wait = self.delay(retry_number, exc)
        self.stats.retries += 1
        self.record_failure(exc)
        log.log(
            logging.DEBUG if self.offline else logging.INFO,
            "%s failed (%s: %s); retry %d/%d in %.2fs",
            what,
            type(exc).__name__,
            exc,
            retry_number,
            self.attempts - 1,
            wait,
        )
        await self._sleep(wait)

    async def run(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        recover: Recover[T] | None = None,
        what: str = "request",
    ) -> T:
        """Call ``fn`` until it succeeds, fails for good, or attempts run out."""
        self.stats.calls += 1
        answers_before = self._answers
        deadline = interactive_deadline()
        ambiguous = False  # an earlier attempt may have reached the server
        left = False  # an attempt may have left (not refused before a connection was made)
        for attempt in range(1, self.attempts + 1):
            try:
                if ambiguous and recover is not None:
                    landed = await recover()
                    if landed is not None:
                        self.stats.recovered += 1
                        log.info("%s: earlier attempt had landed; adopting it", what)
                        return landed
                if deadline is not None and self.offline:
                    # Known to be down: one attempt, and not longer than OFFLINE_ATTEMPT
                    # within the budget (a server that swallows packets would hold it for the
                    # whole connect timeout), unless Internxt answers again meanwhile.
                    until = min(deadline, trio.current_time() + OFFLINE_ATTEMPT)
                    result = await self._bounded(fn, until, what)
                else:
                    result = await fn()
                self._answered()
                return result
            except Conflict:
                # A 409 after a lost answer usually means our own first attempt succeeded.
                if ambiguous and recover is not None:
                    landed = await recover()
                    if landed is not None:
                        self.stats.recovered += 1
                        return landed
                self._reachable()
                self.stats.failures += 1
                raise
            except SessionExpired:
                # A token past its time: the session manager renews it and calls again, which
                # is routine, not a failure. It counts the failure itself if renewing fails.
                raise
            except Exception as exc:
                if not is_retryable(exc):
                    if isinstance(exc, InternxtError) and exc.status is not None:
                        self._reachable()  # refused, but the server answered
                    self.stats.failures += 1
                    self.record_failure(exc)
                    raise
                wait = self.delay(attempt, exc)
                left = left or not (isinstance(exc, Unreachable) and not exc.sent)
                if attempt == self.attempts or self._out_of_budget(wait, exc, deadline):
                    self.stats.failures += 1
                    self.record_failure(exc)
                    self._went_offline(exc, answers_before)
                    final = as_internxt_error(exc)
                    if isinstance(final, Unreachable):
                        final.sent = left  # whether any attempt of the call may have left
                    if final is exc:
                        raise
                    raise final from exc
                ambiguous = True
                await self.backoff(attempt, exc, what, wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _out_of_budget(self, wait: float, exc: BaseException, deadline: float | None) -> bool:
        """An interactive call gives up rather than wait past its budget, or at once while
        Internxt is known to be down. Not when throttled: the server answers, and told us
        when to come back."""
        if deadline is None:
            return False
        if isinstance(exc, ServerError) and exc.status == 429:
            return False
        if self.offline:
            return True
        return trio.current_time() + wait > deadline

    async def _bounded(self, fn: Callable[[], Awaitable[T]], deadline: float, what: str) -> T:
        with trio.move_on_after(max(0.5, deadline - trio.current_time())) as scope:
            self._offline_bounds.add(scope)
            try:
                return await fn()
            finally:
                self._offline_bounds.discard(scope)
        raise Unreachable(f"{what}: no answer within the budget of a call waiting on the mount")
