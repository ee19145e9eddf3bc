"""Waiting for work that a condition may make pointless: an unmount's flush stops waiting
for uploads, or for the namespace replay, once Internxt is found unreachable
(service/pending.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio


async def unless_given_up(
    work: Callable[[], Awaitable[None]], give_up: Callable[[], Awaitable[None]] | None
) -> bool:
    """Run ``work`` until it returns, or until ``give_up`` returns first (then ``work`` is
    cancelled). True if ``work`` finished."""
    if give_up is None:
        await work()
        return True
    finished = False
    async with trio.open_nursery() as nursery:

        async def stop_waiting() -> None:
            await give_up()
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_waiting)
        await work()
        finished = True
        nursery.cancel_scope.cancel()
    return finished
