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


async def test_the_hash_stash_is_bounded_across_concurrent_uploads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HASH_STASH is the memory the multipart hash may keep ahead of its frontier; the
    uploader runs several big files at once (upload_concurrency - 1), each with parts in
    parallel whose later parts race ahead of the first: the chunks kept must stay within the
    bound for the mount, not per upload (network.py: "Memory stays bounded by chunk_size ×
    parallel whatever the file size")."""
    from internxtfs.internxt import network as network_mod
    from tests.unit.test_client_mock import BUCKET, MNEMONIC, FakeNetwork, Sleeps, make_http, policy

    monkeypatch.setattr(network_mod, "MULTIPART_THRESHOLD", 1000)
    monkeypatch.setattr(network_mod, "MIN_PART_SIZE", 100)
    monkeypatch.setattr(network_mod, "HASH_STASH", 4000)
    live: list[_OrderedHash] = []
    peak = [0]
    init, keep = _OrderedHash.__init__, _OrderedHash._keep

    def tracked_init(self: _OrderedHash, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        live.append(self)

    def tracked_keep(self: _OrderedHash, pos: int, data: bytes) -> None:
        keep(self, pos, data)
        peak[0] = max(peak[0], sum(o._ahead_bytes for o in live))

    monkeypatch.setattr(_OrderedHash, "__init__", tracked_init)
    monkeypatch.setattr(_OrderedHash, "_keep", tracked_keep)
    fake = FakeNetwork()
    net = NetworkAPI(
        make_http(fake), "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()), chunk_size=100
    )
    data = bytes((i * 7) % 251 for i in range(20_000))

    async def read(offset: int, n: int) -> bytes:
        await trio.lowlevel.checkpoint()
        if offset < 2000:  # the first part goes out slowly (a slow connection)
            await trio.sleep(0.002)
        return data[offset : offset + n]

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(lambda: net.upload(read, len(data), part_size=2000, parallel=4))
    assert peak[0] <= network_mod.HASH_STASH, peak[0]
    assert net._stash.used == 0  # let go of when the uploads ended


async def test_multipart_upload_fuzz_through_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """NetworkAPI.upload end to end against FakeNetwork (which checks the hash at finish):
    random part/chunk/stash sizes, parallelism, failed and cut PUTs, checkpoints in read."""
    from internxtfs.internxt import network as network_mod
    from tests.unit.test_client_mock import BUCKET, MNEMONIC, FakeNetwork, Sleeps, make_http, policy

    monkeypatch.setattr(network_mod, "MULTIPART_THRESHOLD", 500)
    monkeypatch.setattr(network_mod, "MIN_PART_SIZE", 50)
    for seed in range(200):
        rng = random.Random(seed)
        size = rng.randrange(500, 6000)
        part_size = rng.randrange(50, size // 2)
        chunk = rng.randrange(1, 400)
        monkeypatch.setattr(network_mod, "HASH_STASH", rng.choice([0, chunk, 5 * chunk, size]))
        data = rng.randbytes(size)
        fake = FakeNetwork()
        fake.fail_puts = rng.randrange(3)
        fake.cut_puts = rng.randrange(3)
        net = NetworkAPI(
            make_http(fake), "a@b.c", "uid", BUCKET, MNEMONIC, retry=policy(Sleeps()),
            chunk_size=chunk,
        )  # fmt: skip

        async def read(offset: int, n: int, data: bytes = data, rng: random.Random = rng) -> bytes:
            for _ in range(rng.randrange(3)):
                await trio.lowlevel.checkpoint()
            return data[offset : offset + n]

        with trio.fail_after(20):
            fid = await net.upload(read, size, part_size=part_size, parallel=rng.randrange(1, 5))
        assert b"".join([c async for c in net.download_stream(fid)]) == data, seed
        assert net._stash.used == 0
