"""fs/giving_up.py: a wait that stops when its give-up condition comes first."""

from __future__ import annotations

import trio

from internxtfs.fs.giving_up import unless_given_up


async def test_work_that_finishes_first_is_reported_finished(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def work() -> None:
        await trio.sleep(1)

    async def give_up() -> None:
        await trio.sleep(5)

    assert await unless_given_up(work, give_up)
    assert await unless_given_up(work, None)
    assert trio.current_time() < 3


async def test_giving_up_first_cancels_the_work(autojump_clock: trio.abc.Clock) -> None:
    cancelled = []

    async def work() -> None:
        try:
            await trio.sleep(100)
        except trio.Cancelled:
            cancelled.append(trio.current_time())
            raise

    async def give_up() -> None:
        await trio.sleep(2)

    assert not await unless_given_up(work, give_up)
    assert cancelled == [2]
