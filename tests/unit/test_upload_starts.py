"""Single-part upload starts sent together (internxt/upload_starts.py): one request in flight,
the starts arriving meanwhile in the next; a batch's failure is no upload's answer."""

from __future__ import annotations

from typing import Any

import trio

from internxtfs.internxt.errors import QuotaExceeded, ServerError, Unreachable
from internxtfs.internxt.retry import interactive
from internxtfs.internxt.upload_starts import MAX_BATCH, UploadStarts
from tests.unit.test_client_emulator import Content, add_account, emu, logged_in  # noqa: F401


class Server:
    """``send`` as the bridge answers it: a slot per size, after ``delay``; ``refuse`` makes a
    request carrying more than that many bytes fail as a whole (the quota on the sum)."""

    def __init__(self, delay: float = 0.03, refuse: int | None = None) -> None:
        self.delay = delay
        self.refuse = refuse
        self.down = False  # every request fails as after its retries against an outage
        self.requests: list[list[int]] = []

    def starts(self) -> UploadStarts:
        return UploadStarts(self.send, offline=lambda: self.down)

    async def send(self, sizes: list[int]) -> list[dict[str, Any]]:
        self.requests.append(list(sizes))
        await trio.sleep(self.delay)
        if self.down:
            raise Unreachable("ConnectError: connection refused")
        if self.refuse is not None and sum(sizes) > self.refuse:
            raise QuotaExceeded("Max space used", status=420)
        return [{"size": size} for size in sizes]


async def run_starts(starts: UploadStarts, sizes: list[int]) -> dict[int, Any]:
    got: dict[int, Any] = {}

    async def one(size: int) -> None:
        try:
            got[size] = await starts.start(size)
        except (QuotaExceeded, Unreachable) as exc:
            got[size] = exc

    async with trio.open_nursery() as nursery:
        for size in sizes:
            nursery.start_soon(one, size)
            await trio.sleep(0.001)  # they arrive while the first is in flight
    return got


async def test_starts_arriving_meanwhile_go_in_one_request(autojump_clock: Any) -> None:
    server = Server()
    got = await run_starts(server.starts(), list(range(1, 31)))
    assert got == {size: {"size": size} for size in range(1, 31)}
    # The first alone, at once; the 29 that came while it was in flight in two requests.
    assert server.requests == [[1], list(range(2, 2 + MAX_BATCH)), list(range(2 + MAX_BATCH, 31))]


async def test_a_batch_refused_as_a_whole_is_sent_again_one_by_one(autojump_clock: Any) -> None:
    server = Server(refuse=10)  # the sum of the batch is over the quota, each alone is not
    got = await run_starts(server.starts(), [1, 4, 5, 6, 11])
    assert got[1] == {"size": 1} and got[4] == {"size": 4} and got[6] == {"size": 6}
    assert isinstance(got[11], QuotaExceeded)  # refused alone too: its own answer
    assert server.requests[0] == [1] and server.requests[1] == [4, 5, 6, 11]
    assert sorted(server.requests[2:]) == [[4], [5], [6], [11]]


async def test_a_batch_that_met_an_outage_fails_each_start_with_its_error(
    autojump_clock: Any,
) -> None:
    """Its retries are spent and Internxt is known to be down: sending each again alone would
    only wait them out again."""
    server = Server()
    server.down = True
    got = await run_starts(server.starts(), [1, 2, 3, 4])
    assert all(isinstance(got[size], Unreachable) for size in (1, 2, 3, 4))
    assert len({id(error) for error in got.values()}) == 4  # each its own instance
    assert server.requests == [[1], [2, 3, 4]]


async def test_a_batch_failed_by_one_of_its_uploads_is_sent_again_one_by_one(
    autojump_clock: Any,
) -> None:
    """The bridge fails a whole request when one of its uploads fails (a storage node down):
    with Internxt still answering, each start is sent again alone."""
    server = Server()

    async def send(sizes: list[int]) -> list[dict[str, Any]]:
        if 3 in sizes and len(sizes) > 1:
            server.requests.append(list(sizes))
            raise ServerError("Internal Server Error", status=500)
        return await server.send(sizes)

    got = await run_starts(UploadStarts(send, offline=lambda: False), [1, 2, 3, 4])
    assert got == {size: {"size": size} for size in (1, 2, 3, 4)}
    assert server.requests[:2] == [[1], [2, 3, 4]]
    assert sorted(server.requests[2:]) == [[2], [3], [4]]


async def test_a_cancelled_sender_leaves_the_others_to_send_their_own(
    autojump_clock: Any,
) -> None:
    server = Server(delay=1.0)
    starts = server.starts()
    got: dict[int, Any] = {}
    leader = trio.CancelScope()

    async def follow(size: int) -> None:
        got[size] = await starts.start(size)

    async def lead(size: int) -> None:
        with leader:
            got[size] = await starts.start(size)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow, 10)  # alone, in flight from 0 to 1.0
        await trio.sleep(0.1)
        nursery.start_soon(lead, 20)  # first in line: sends [20, 30] at 1.0
        await trio.sleep(0.01)
        nursery.start_soon(follow, 30)
        await trio.sleep(1.5)
        leader.cancel()  # mid-request: 30 must not hang, nor fail with 20's cancel
    assert 20 not in got
    assert got[10] == {"size": 10} and got[30] == {"size": 30}
    assert server.requests == [[10], [20, 30], [30]]


async def test_a_start_a_process_waits_on_is_not_batched(autojump_clock: Any) -> None:
    server = Server()
    starts = server.starts()

    async def interactive_start(size: int) -> None:
        with interactive():
            await starts.start(size)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(starts.start, 1)
        await trio.sleep(0.001)
        for size in (2, 3):
            nursery.start_soon(interactive_start, size)
    assert sorted(server.requests) == [[1], [2], [3]]


async def test_concurrent_small_uploads_share_start_requests(emu: Any) -> None:  # noqa: F811
    """Against the emulator: 16 small files uploaded at once take fewer start requests than
    files, and each is stored with its own content."""
    account = add_account(emu)
    async with await logged_in(emu, account) as client:
        contents = [Content(100 + i, 4096 + i) for i in range(16)]
        ids: dict[int, str] = {}
        emu.reset_stats()

        async def upload(i: int) -> None:
            ids[i] = await client.network.upload(contents[i].read, contents[i].size)

        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(upload, i)
        starts = emu.stats()["requests"]["POST /network/v2/buckets/{bucket}/files/start"]
        assert starts < 16
        for i, file_id in ids.items():
            got = await client.network.download_range(file_id, 0, contents[i].size)
            assert got == contents[i].bytes(0, contents[i].size)
        assert len(set(ids.values())) == 16
