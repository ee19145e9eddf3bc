"""ReadLag: answers that read-replica lag can explain are asked again, within a bounded window."""

from __future__ import annotations

import trio

from internxtfs.internxt.consistency import ReadLag
from internxtfs.internxt.errors import Conflict, NotFound


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def _lag(window: float = 3.0) -> tuple[ReadLag, FakeTime]:
    t = FakeTime()
    return ReadLag(window, clock=t.clock, sleep=t.sleep), t


def test_without_a_recent_write_an_answer_counts_at_once() -> None:
    lag, t = _lag()
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise NotFound("Folder not found", status=404)

    async def main() -> None:
        try:
            await lag.settle(attempt, what="create")
        except NotFound:
            return
        raise AssertionError("NotFound expected")

    trio.run(main)
    assert calls == 1 and t.now == 100.0


def test_an_answer_that_lag_explains_is_asked_again_until_it_changes() -> None:
    lag, t = _lag()
    lag.wrote(["parent"])
    answers: list[object] = [NotFound("x", status=404), Conflict("y", status=409), "created"]

    async def attempt() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert trio.run(lambda: lag.settle(attempt, what="create")) == "created"
    assert t.now - 100.0 < 3.0


def test_a_lasting_answer_counts_once_it_held_past_the_window() -> None:
    lag, t = _lag(window=2.0)
    lag.wrote()
    asked: list[float] = []

    async def attempt() -> None:
        asked.append(t.now)
        raise Conflict("taken", status=409)

    async def main() -> None:
        try:
            await lag.settle(attempt, what="move")
        except Conflict:
            return
        raise AssertionError("Conflict expected")

    trio.run(main)
    assert asked[-1] >= asked[0] + 2.0  # the final answer was asked a window later
    assert asked[-1] - asked[0] < 2.0 + 0.6  # and not much later (bounded)
    assert len(asked) < 12


def test_a_stale_result_is_asked_again() -> None:
    lag, _ = _lag()
    lag.wrote()
    answers = ["old-object", "old-object", "our-object"]

    async def attempt() -> str:
        return answers.pop(0)

    got = trio.run(lambda: lag.settle(attempt, what="meta", stale=lambda a: a != "our-object"))
    assert got == "our-object"


def test_listing_lag_is_per_folder_and_unknown_parents_count_for_all() -> None:
    lag, t = _lag()
    lag.wrote(["a"])
    assert lag.listing_lag("a") == 3.0 and lag.listing_lag("b") == 0.0
    t.now += 1.0
    lag.wrote([None])  # e.g. a delete of an entry whose folder we never saw
    assert lag.listing_lag("b") == 3.0 and lag.listing_lag("a") == 3.0
    t.now += 3.0
    assert lag.listing_lag("a") == 0.0 and lag.listing_lag("b") == 0.0
    lag.seen("file-uuid", "folder-uuid")
    assert lag.parent_of("file-uuid") == "folder-uuid"


def test_wait_settled_waits_only_for_entries_we_wrote_within_the_window() -> None:
    lag, t = _lag()
    lag.wrote(["parent"], ["fresh"])
    t.now += 1.0
    trio.run(lag.wait_settled, ["unknown"])
    assert t.now == 101.0
    trio.run(lag.wait_settled, ["unknown", "fresh"])
    assert t.now == 103.0  # the write was at 100.0, the window is 3 s
    trio.run(lag.wait_settled, ["fresh"])
    assert t.now == 103.0


def test_wait_settled_after_a_remount_waits_for_the_last_runs_writes_to_any_entry() -> None:
    """The last run's moves are not known one by one: any entry may still lag."""
    lag, t = _lag()
    lag.earlier_run(1.5)  # internxtfs/last_writes.py: the last run wrote 1.5 s short of a window
    lag.wrote(["parent"], ["fresh"])
    t.now += 0.5
    trio.run(lag.wait_settled, ["unknown"])
    assert t.now == 101.5
    trio.run(lag.wait_settled, ["fresh"])  # this run's write is later: its window is longer
    assert t.now == 103.0
    trio.run(lag.wait_settled, ["unknown"])
    assert t.now == 103.0
    fresh_start, t2 = _lag()
    fresh_start.earlier_run(0.0)  # nothing kept, or written long ago
    trio.run(fresh_start.wait_settled, ["unknown"])
    assert t2.now == 100.0


def test_wait_settled_for_no_entries_does_not_wait() -> None:
    """DriveAPI.trash waits for the folders it trashes only: trashing files alone (no
    entries to wait for) must not sleep a window each time, nor after a remount."""
    lag, t = _lag()
    trio.run(lag.wait_settled, [])
    trio.run(lag.wait_settled, iter(()))
    assert t.now == 100.0
    lag.earlier_run(2.0)
    trio.run(lag.wait_settled, [])
    assert t.now == 100.0
