"""LastWrites: the time of the last write, kept across runs of a mount on one cache."""

from __future__ import annotations

from pathlib import Path

import trio

from internxtfs.fs.journal import Journal
from internxtfs.internxt.consistency import ReadLag
from internxtfs.last_writes import LastWrites


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 50.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def _run(tmp_path: Path, clocks: Clocks) -> tuple[Journal, ReadLag, LastWrites]:
    journal = Journal(tmp_path / "state.db")
    lag = ReadLag(3.0, clock=lambda: clocks.mono)
    return journal, lag, LastWrites(journal, lag, wall=lambda: clocks.wall)


def test_a_new_cache_holds_nothing(tmp_path: Path) -> None:
    journal, _, last = _run(tmp_path, Clocks())
    assert last.restore() == 0.0
    journal.close()


def test_writes_of_the_last_run_hold_the_next_one_for_the_window(tmp_path: Path) -> None:
    clocks = Clocks()
    journal, lag, last = _run(tmp_path, clocks)
    lag.wrote(())  # the mount's own start: no write of this run
    assert last.restore() == 0.0
    lag.wrote(("folder",))
    saves = journal.get_meta(LastWrites.KEY)
    assert saves is not None and float(saves) == clocks.wall + LastWrites.AHEAD
    clocks.advance(LastWrites.AHEAD / 4)
    lag.wrote(("folder",))  # more than AHEAD / 2 before the saved time: not saved again
    assert journal.get_meta(LastWrites.KEY) == saves
    clocks.advance(0.2)
    last.close()  # a clean end: the exact time of the last write (0.2 s ago)
    assert float(journal.get_meta(LastWrites.KEY) or "nan") == clocks.wall - 0.2
    journal.close()

    clocks.advance(1.0)  # a remount 1 s later: 1.2 s after the write, the window is 3 s
    journal, lag, last = _run(tmp_path, clocks)
    assert abs(last.restore() - 1.8) < 1e-6
    # ... and a move's "already done" answer is checked only after those 1.8 s.
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    lag._sleep = sleep
    trio.run(lag.wait_settled, ["an entry the last run moved"])
    assert len(slept) == 1 and abs(slept[0] - 1.8) < 1e-6
    last.close()  # this run wrote nothing: the last run's time stands
    journal.close()
    clocks.advance(5.0)
    journal, lag, last = _run(tmp_path, clocks)
    assert last.restore() == 0.0
    journal.close()


def test_a_crash_leaves_a_time_no_write_is_later_than(tmp_path: Path) -> None:
    clocks = Clocks()
    journal, lag, last = _run(tmp_path, clocks)
    last.restore()
    for _ in range(30):  # writes for 3 s, then a kill -9 (no close)
        lag.wrote(("folder",))
        clocks.advance(0.1)
    kept = float(journal.get_meta(LastWrites.KEY) or "nan")
    assert clocks.wall - 0.1 <= kept <= clocks.wall + LastWrites.AHEAD
    journal.close()


def test_a_wall_clock_set_back_does_not_hold_the_next_run_for_the_skew(tmp_path: Path) -> None:
    """The kept time is wall-clock: if the clock was set back between runs (NTP, a cache
    copied from another machine), the next run must not take the skew for replica lag and
    hold its moves' "already moved" answers (ReadLag.wait_settled) for an hour."""
    clocks = Clocks()
    journal, lag, last = _run(tmp_path, clocks)
    last.restore()
    lag.wrote(["folder"])
    journal.close()
    clocks.wall -= 3600.0  # set back an hour
    journal, lag, last = _run(tmp_path, clocks)
    held = last.restore()
    assert held <= lag.window + LastWrites.AHEAD
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    lag._sleep = sleep
    trio.run(lag.wait_settled, ["moved-by-this-run"])
    assert sum(slept) <= lag.window + LastWrites.AHEAD
    journal.close()
