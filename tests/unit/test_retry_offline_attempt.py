"""The one attempt an interactive call makes while Internxt is known to be down (retry.py):
short against a server that hangs, and not cut off once Internxt answers again (issue 9)."""

from __future__ import annotations

import pytest
import trio

from internxtfs.internxt.errors import Unreachable
from internxtfs.internxt.retry import OFFLINE_ATTEMPT, RetryPolicy, interactive


async def _known_offline(policy: RetryPolicy) -> None:
    async def refused() -> None:
        raise Unreachable("connection refused")

    with pytest.raises(Unreachable):
        await policy.run(refused)
    assert policy.offline


async def test_a_hanging_attempt_while_known_offline_ends_within_the_offline_bound(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A server that takes the request and never answers: the call gives up after
    OFFLINE_ATTEMPT seconds, not its whole budget (a read the kernel asks twice would take
    two budgets)."""
    policy = RetryPolicy(attempts=2, random=lambda: 0.0)
    await _known_offline(policy)

    async def hangs() -> None:
        await trio.sleep_forever()

    start = trio.current_time()
    with interactive(5.0), pytest.raises(Unreachable):
        await policy.run(hangs)
    assert trio.current_time() - start == pytest.approx(OFFLINE_ATTEMPT)


async def test_an_attempt_that_meets_the_end_of_the_outage_is_not_cut_off(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The attempt's first request is answered (Internxt is back), then its body takes longer
    than the bound of an attempt while offline, even than the call's budget: it completes.
    (One attempt per call: a second one would hide the cut.)"""
    policy = RetryPolicy(attempts=1, random=lambda: 0.0)
    await _known_offline(policy)

    async def info() -> str:
        return "info"

    async def download() -> str:
        assert await policy.run(info) == "info"  # an answer: the outage is over
        await trio.sleep(6.0)  # a big block on a slow line
        return "data"

    with interactive(5.0):
        assert await policy.run(download) == "data"
    assert not policy.offline
