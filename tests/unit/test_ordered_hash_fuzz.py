"""Fuzz of the multipart in-order shard hash (_OrderedHash with its stash, the part bodies of
NetworkAPI._body and the catch-up _hash_frontier): random part/chunk/stash sizes, parallel
parts, bodies cut short, cancelled anywhere (also inside offer, while a drain holds a chunk
it popped), retried, random checkpoints in read and in the hash thread's reserve. The hash
must be that of the whole ciphertext in order, nothing may hang, and the stash must stay
within its bound and never hold a chunk behind the frontier."""

from __future__ import annotations

import math
import random

import pytest
import trio

from internxtfs.internxt import crypto
from internxtfs.internxt.network import NetworkAPI, _OrderedHash
from internxtfs.internxt.threadhash import BackgroundHash

KEY = bytes(range(32))
IV = bytes(range(16))


class _JitterHash(BackgroundHash):
    """A BackgroundHash whose reserve yields at random (where a cancel may land)."""

    def __init__(self, rng: random.Random, ahead: int) -> None:
        super().__init__(ahead)
        self._rng = rng

    async def reserve(self) -> None:
        for _ in range(self._rng.randrange(3)):
            await trio.lowlevel.checkpoint()
        await super().reserve()


def _check(ordered: _OrderedHash, stash: int) -> None:
    ahead = ordered._ahead
    assert ordered._ahead_bytes == sum(len(v) for v in ahead.values())
    assert ordered._ahead_bytes <= stash
    assert all(p > ordered.pos for p in ahead), (ordered.pos, sorted(ahead))


async def _one(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randrange(1, 3000)
    part_size = rng.randrange(1, size + 1)
    chunk = rng.randrange(1, max(2, part_size + 3))
    stash = rng.choice([0, chunk, 2 * chunk, rng.randrange(0, size + 1), size * 2])
    parallel = rng.randrange(1, 5)
    data = bytes(rng.randrange(256) for _ in range(size))
    expected = crypto.shard_hash(crypto.ctr_crypt(KEY, IV, data))
    kind = rng.randrange(3)
    hasher: crypto.ShardHasher | BackgroundHash
    if kind == 0:
        hasher = crypto.ShardHasher()
    elif kind == 1:
        hasher = BackgroundHash(rng.randrange(1, 3))
    else:
        hasher = _JitterHash(rng, rng.randrange(1, 3))
    ordered = _OrderedHash(size, part_size, chunk, hasher, stash=stash)
    net = NetworkAPI.__new__(NetworkAPI)
    net.chunk_size = chunk
    count = math.ceil(size / part_size)

    async def read(offset: int, n: int) -> bytes:
        for _ in range(rng.randrange(3)):
            await trio.lowlevel.checkpoint()
        _check(ordered, stash)
        return data[offset : offset + n]

    async def attempt(number: int) -> bool:
        """One PUT of part ``number``: True if the whole body went out."""
        offset = (number - 1) * part_size
        length = min(part_size, size - offset)
        body = net._body(read, KEY, IV, offset, length, ordered=ordered)
        got = b""
        fate = rng.random()
        try:
            with trio.CancelScope() as scope:
                if fate < 0.15:  # cancelled from outside at a random moment (a deadline)

                    async def cancel_soon() -> None:
                        for _ in range(rng.randrange(12)):
                            await trio.lowlevel.checkpoint()
                        scope.cancel()

                    async with trio.open_nursery() as n:
                        n.start_soon(cancel_soon)
                        async for out in body:
                            got += out
                            await trio.lowlevel.checkpoint()
                        n.cancel_scope.cancel()
                    return len(got) == length and not scope.cancelled_caught
                cut = rng.randrange(length + 1) if fate < 0.35 else None
                async for out in body:
                    got += out
                    if rng.random() < 0.5:
                        await trio.lowlevel.checkpoint()
                    if cut is not None and len(got) >= cut:
                        break  # the connection stopped pulling
            if scope.cancelled_caught:
                return False
            if cut is not None:
                return False
            assert got == crypto.ctr_crypt(KEY, IV, data[offset : offset + length], offset)
            return True
        finally:
            await body.aclose()

    next_part = 0

    async def worker() -> None:
        nonlocal next_part
        while next_part < count:
            next_part += 1
            number = next_part
            for _ in range(20):
                if await attempt(number):
                    break
            else:  # give it a clean last try
                while not await attempt(number):
                    pass

    async def hash_all() -> None:
        await net._hash_frontier(read, KEY, IV, ordered)

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hash_all)
                for _ in range(min(parallel, count)):
                    nursery.start_soon(worker)
            _check(ordered, stash)
            assert ordered.pos == size and not ordered._ahead
            got = await ordered.hexdigest()
    finally:
        if isinstance(hasher, BackgroundHash):
            hasher.close()
    assert got == expected, seed


@pytest.mark.parametrize("block", range(4))
async def test_ordered_hash_fuzz(block: int) -> None:
    for seed in range(block * 150, (block + 1) * 150):
        await _one(seed)
