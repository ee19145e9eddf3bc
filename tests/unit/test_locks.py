"""The keyed lock (fs/locks.py): one holder per key, keys independent, nothing left behind."""

from __future__ import annotations

import pytest
import trio

from internxtfs.fs.locks import KeyedLock


async def test_one_holder_per_key_in_the_order_asked(autojump_clock: trio.abc.Clock) -> None:
    locks = KeyedLock()
    order: list[str] = []

    async def hold(key: int, who: str, seconds: float) -> None:
        async with locks.hold(key):
            order.append(f"{who} in")
            await trio.sleep(seconds)
            order.append(f"{who} out")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, 1, "a", 1.0)
        await trio.sleep(0.1)
        nursery.start_soon(hold, 1, "b", 1.0)
        await trio.sleep(0.1)
        nursery.start_soon(hold, 1, "c", 1.0)
        nursery.start_soon(hold, 2, "other key", 0.5)
        await trio.sleep(0.1)
        assert locks.locked(1) and locks.locked(2) and len(locks) == 2
    assert order == [
        "a in", "other key in", "other key out", "a out", "b in", "b out", "c in", "c out",
    ]  # fmt: skip
    assert len(locks) == 0 and not locks.locked(1)


async def test_a_holder_that_fails_or_is_cancelled_leaves_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    locks = KeyedLock()
    with pytest.raises(RuntimeError):
        async with locks.hold("k"):
            raise RuntimeError("boom")

    async def give_up_waiting() -> None:
        with trio.move_on_after(1):
            async with locks.hold("k"):
                raise AssertionError("never reached: the key is held all along")

    async with locks.hold("k"), trio.open_nursery() as nursery:
        nursery.start_soon(give_up_waiting)  # a waiter cancelled while another holds the key
    assert len(locks) == 0
