"""The retry policy during an outage: calls a process waits on give up within their budget
(one attempt once the outage is known), background calls keep the whole schedule, and the
first answer ends the outage (issue 9)."""

from __future__ import annotations

import pytest
import trio

from internxtfs.internxt.errors import NotFound, ServerError, Unreachable
from internxtfs.internxt.retry import RetryPolicy, carry_interactive, interactive


class Server:
    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    async def call(self) -> str:
        self.calls += 1
        if not self.up:
            raise Unreachable("connection refused")
        return "ok"


async def _fails(policy: RetryPolicy, server: Server) -> bool:
    try:
        await policy.run(server.call)
    except Unreachable:
        return True
    return False


async def test_interactive_calls_give_up_within_the_budget_then_try_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    policy = RetryPolicy(attempts=6, base=0.5, cap=30.0, random=lambda: 1.0)
    server = Server()
    start = trio.current_time()
    with interactive(5.0):
        assert await _fails(policy, server)
    # 0.5 + 1 + 2 s of backoff fit in 5 s; the next (4 s) would not.
    assert server.calls == 4
    assert trio.current_time() - start <= 5.0
    assert policy.offline and policy.stats.offline_since is not None
    server.calls = 0
    with interactive(5.0):
        assert await _fails(policy, server)
    assert server.calls == 1  # the outage is known: one attempt


async def test_background_calls_keep_the_whole_schedule(autojump_clock: trio.abc.Clock) -> None:
    policy = RetryPolicy(attempts=6, base=0.5, cap=30.0, random=lambda: 1.0)
    server = Server()
    assert await _fails(policy, server)
    assert server.calls == 6
    server.calls = 0
    assert await _fails(policy, server)  # offline: still every attempt in the background
    assert server.calls == 6


async def test_tasks_spawned_by_an_interactive_call_share_its_budget(
    autojump_clock: trio.abc.Clock,
) -> None:
    policy = RetryPolicy(attempts=6, base=0.5, cap=30.0, random=lambda: 1.0)
    server = Server()
    results: list[bool] = []
    with interactive(5.0):
        carried = carry_interactive()

        async def child() -> None:
            with carried():
                results.append(await _fails(policy, server))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
    assert results == [True] and server.calls == 4


async def test_an_answer_ends_the_outage(autojump_clock: trio.abc.Clock) -> None:
    policy = RetryPolicy(attempts=2, random=lambda: 0.0)
    server = Server()
    assert await _fails(policy, server)
    assert policy.offline
    server.up = True
    assert await policy.run(server.call) == "ok"
    assert not policy.offline and policy.stats.offline_since is None

    async def refused() -> None:
        raise NotFound("gone", status=404)

    assert await _fails(policy, Server())
    with pytest.raises(NotFound):
        await policy.run(refused)
    assert not policy.offline  # a refusal is an answer too


async def test_a_burst_of_503_while_other_calls_get_answers_is_not_an_outage(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A call that runs out of retries on 503s while other calls are answered meanwhile met
    a busy gateway: the mount stays online (it flipped offline and back within a second)."""
    policy = RetryPolicy(attempts=3, base=0.5, cap=30.0, random=lambda: 1.0)
    up = Server()
    up.up = True

    async def busy() -> str:
        raise ServerError("Service Unavailable", status=503)

    async def answered_meanwhile() -> None:
        await trio.sleep(0.25)  # during the failing call's first backoff
        assert await policy.run(up.call) == "ok"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answered_meanwhile)
        with pytest.raises(ServerError):
            await policy.run(busy)
    assert not policy.offline
    # Nothing answered during the next one: that is an outage.
    with pytest.raises(ServerError):
        await policy.run(busy)
    assert policy.offline
