"""Single-part upload starts sent together: ``files/start`` takes a list of uploads.

Small files are uploaded many at once (the uploader's ``small_concurrency``), and each costs
four requests, the start among them. The bridge starts every upload of the list it is given,
one slot each, and checks the quota against their sum (``startUpload`` in
``lib/core/buckets/usecase.ts`` of internxt/bridge). So the starts go in the manner of a group
commit: one start request is in flight at a time, and the starts that arrive meanwhile go
together in the next one, at most :data:`MAX_BATCH` of them. A start that finds none in flight
goes at once, as before; nothing waits on a timer.

A batch that failed as a whole is not the answer of each upload in it: the quota may refuse
the sum and not each, and the bridge fails the request if one of its uploads fails (one
storage node down), which with 20 uploads in it is most requests. So every one of them is
then sent by itself, and gets its own answer; except while Internxt is known to be
unreachable (internxt/retry.py), when each fails with the batch's error, as it would have
alone, instead of waiting out the retries again. A call that a process waits on (an
interactive deadline) is not batched: its budget would not bound the requests of a
background task that sends the batch.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from .retry import interactive_deadline, is_retryable

# Kept well inside what one request can carry: the bridge starts the slots of a list
# concurrently, each asking a storage node for its URL.
MAX_BATCH = 20

Send = Callable[[list[int]], Awaitable[list[dict[str, Any]]]]


@dataclass(eq=False)
class _Waiting:
    size: int
    answer: dict[str, Any] | None = None
    error: Exception | None = None  # its batch failed while Internxt cannot be reached
    alone: bool = False  # its batch failed: it sends a request of its own


class UploadStarts:
    """``await start(size)``: the start answer of one single-part upload of ``size`` bytes.
    ``send(sizes)`` makes one ``files/start`` request (under the retry policy) and returns
    the answers in the order of ``sizes``; ``offline()``: whether Internxt is known to be
    unreachable."""

    def __init__(self, send: Send, offline: Callable[[], bool]) -> None:
        self._send = send
        self._offline = offline
        self._queue: list[_Waiting] = []
        self._turn = trio.Lock()  # one start request in flight at a time

    async def start(self, size: int) -> dict[str, Any]:
        if interactive_deadline() is not None:
            return (await self._send([size]))[0]
        me = _Waiting(size)
        self._queue.append(me)
        try:
            async with self._turn:
                if me.answer is None and me.error is None and not me.alone:
                    await self._send_batch(me)
        finally:
            if me in self._queue:  # cancelled while it waited
                self._queue.remove(me)
        if me.answer is not None:
            return me.answer
        if me.error is not None:
            error = copy.copy(me.error)  # each task raises its own instance
            raise error from me.error
        return (await self._send([size]))[0]

    async def _send_batch(self, me: _Waiting) -> None:
        """Send ``me`` and the starts waiting behind it; each gets its answer, the batch's
        error, or is told to send its own (``alone``). Raises only when ``me`` was alone."""
        others = [w for w in self._queue if w is not me]
        batch = [me, *others[: MAX_BATCH - 1]]
        for waiting in batch:
            self._queue.remove(waiting)
        try:
            answers = await self._send([w.size for w in batch])
        except Exception as exc:
            if len(batch) == 1:
                raise
            down = is_retryable(exc) and self._offline()
            for waiting in batch:
                if down:
                    waiting.error = exc
                else:
                    waiting.alone = True
            return
        except BaseException:  # this task's cancel: the others go on without it
            for waiting in batch[1:]:
                waiting.alone = True
            raise
        for waiting, answer in zip(batch, answers, strict=True):
            waiting.answer = answer
