"""Object bodies received and decrypted in worker threads (``internxt.objectio``).

Against a scripted HTTP server on a real socket: ranged answers decrypted at any aligned
offset, every way an answer can be wrong (short, long, Range ignored, an error status, a reset
mid-body), and a keep-alive connection the server closed while idle. Then, against the
emulator, the mount's fetch path: the body is received and decrypted off the trio thread,
and an expired download URL is fetched again.
"""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio

from internxtfs.internxt import crypto
from internxtfs.internxt.errors import (
    Forbidden,
    IntegrityError,
    NotFound,
    ProtocolError,
    ServerError,
    Unreachable,
)
from internxtfs.internxt.network import THREAD_PUT
from internxtfs.internxt.objectio import SCRATCH, Interrupt, ObjectIO
from tests.unit.test_client_emulator import Content, MiB, add_account, emu, logged_in

__all__ = ["emu"]  # the fixture, shared with the neighbouring client tests

KEY, IV = os.urandom(32), os.urandom(16)
PLAIN = os.urandom(3 * SCRATCH + 12345)  # several scratch buffers, and a ragged end
CIPHER = crypto.ctr_crypt(KEY, IV, PLAIN)

# How the scripted server answers the next request (popped per request; default "ok").
Script = list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as object stores do
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.headers.get("range"))
        mode = self.server.script.pop(0) if self.server.script else "ok"
        first, last = 0, len(CIPHER) - 1
        ranged = self.headers.get("range")
        if ranged:
            lo, hi = ranged.removeprefix("bytes=").split("-")
            first, last = int(lo), int(hi or last)
        body = CIPHER[first : last + 1]
        if mode in ("403", "404", "503"):
            error = b'{"error": "Request has expired"}'
            self.send_response(int(mode))
            self.send_header("content-length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        if mode == "ignore-range":
            body = CIPHER
        self.send_response(206 if ranged and mode != "ignore-range" else 200)
        if mode == "long":
            body += b"x"
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if mode == "cut":  # half the body, then the connection drops
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)
        if mode == "close-after":  # answered, then the idle connection is closed
            self.wfile.flush()
            self.close_connection = True

    def do_PUT(self) -> None:
        mode = self.server.script.pop(0) if self.server.script else "ok"
        self.server.peers.add(self.client_address)
        if mode == "stall":  # takes nothing of the body and never answers
            self.server.release.wait(30)
            self.close_connection = True
            return
        length = int(self.headers["content-length"])
        body = self.rfile.read(length)
        if mode in ("403", "503"):
            error = b'{"error": "Request has expired"}'
            self.send_response(int(mode))
            self.send_header("content-length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        self.server.bodies.append(body)
        self.send_response(200)
        self.send_header("etag", f'"etag-{len(self.server.bodies)}"')
        self.send_header("content-length", "0")
        self.end_headers()
        if mode == "close-after":
            self.wfile.flush()
            self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: Script = []
        self.requests: list[str | None] = []
        self.bodies: list[bytes] = []
        self.peers: set[tuple[str, int]] = set()  # client (address, port) of each PUT
        self.release = threading.Event()  # ends a "stall"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


def url(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/objects/abc?X-Signature=s"


def get(getter: ObjectIO, srv: _Server, first: int, last: int) -> memoryview:
    whole = first == 0 and last == len(CIPHER) - 1
    return getter.get_plain(url(srv), first, last, whole, KEY, IV)


def test_ranges_come_back_decrypted(server: _Server) -> None:
    getter = ObjectIO()
    try:
        assert get(getter, server, 0, len(PLAIN) - 1) == PLAIN
        assert server.requests[-1] is None  # the whole object: no Range header
        for first, last in [(0, 15), (16, SCRATCH + 17), (SCRATCH * 2, len(PLAIN) - 1)]:
            assert get(getter, server, first, last) == PLAIN[first : last + 1]
            assert server.requests[-1] == f"bytes={first}-{last}"
    finally:
        getter.close()


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("ignore-range", ProtocolError),
        ("403", Forbidden),
        ("404", NotFound),
        ("503", ServerError),
        ("cut", Unreachable),
    ],
)
def test_wrong_answers_raise_typed_errors(
    server: _Server, mode: str, error: type[Exception]
) -> None:
    getter = ObjectIO()
    try:
        server.script.append(mode)
        with pytest.raises(error):
            get(getter, server, 16, 1000)
        # The connection is not left in a broken state: the next GET works.
        assert get(getter, server, 16, 1000) == PLAIN[16:1001]
    finally:
        getter.close()


def test_more_bytes_than_asked_is_an_integrity_error(server: _Server) -> None:
    getter = ObjectIO()
    try:
        server.script.append("long")
        with pytest.raises(IntegrityError):
            get(getter, server, 0, 99)
    finally:
        getter.close()


def test_keep_alive_closed_by_the_server_is_replaced_at_once(server: _Server) -> None:
    getter = ObjectIO()
    try:
        assert get(getter, server, 0, 99) == PLAIN[:100]  # connection kept
        server.script.append("close-after")
        assert get(getter, server, 100, 199) == PLAIN[100:200]
        # The pooled connection may be the one the server closed: a fresh one, no error.
        assert get(getter, server, 200, 299) == PLAIN[200:300]
        assert len(server.requests) == 3
    finally:
        getter.close()


# --- PUTs ----------------------------------------------------------------------------------


def chunks(*sizes: int) -> tuple[bytes, Callable[[], bytes | None]]:
    """A body of random chunks and the ``pull`` that hands them out, then None."""
    parts = [os.urandom(n) for n in sizes]
    left = list(parts)
    return b"".join(parts), lambda: left.pop(0) if left else None


def test_put_sends_the_whole_body_and_keeps_the_connection(server: _Server) -> None:
    objects = ObjectIO()
    try:
        body, pull = chunks(SCRATCH, 7, SCRATCH + 3)
        assert objects.put(url(server), len(body), pull, Interrupt()) == "etag-1"
        again, pull = chunks(100)
        assert objects.put(url(server), len(again), pull, Interrupt()) == "etag-2"
        assert server.bodies == [body, again]
        assert len(server.peers) == 1  # the second PUT reused the first one's connection
    finally:
        objects.close()


@pytest.mark.parametrize(("mode", "error"), [("403", Forbidden), ("503", ServerError)])
def test_put_error_answers_raise_typed_errors(
    server: _Server, mode: str, error: type[Exception]
) -> None:
    objects = ObjectIO()
    try:
        server.script.append(mode)
        body, pull = chunks(1000)
        with pytest.raises(error):
            objects.put(url(server), len(body), pull, Interrupt())
        body, pull = chunks(1000)
        assert objects.put(url(server), len(body), pull, Interrupt()) == "etag-1"
        assert server.bodies == [body]
    finally:
        objects.close()


def test_put_never_starts_a_body_on_a_connection_the_server_closed(server: _Server) -> None:
    """A body cannot be sent twice once pulled: a kept connection the server closed while
    idle must be found out before the PUT, not half way through it."""
    objects = ObjectIO()
    try:
        server.script.append("close-after")
        first, pull = chunks(100)
        objects.put(url(server), len(first), pull, Interrupt())
        time.sleep(0.2)  # the server's close has arrived
        second, pull = chunks(SCRATCH)
        assert objects.put(url(server), len(second), pull, Interrupt()) == "etag-2"
        assert server.bodies == [first, second]
        assert len(server.peers) == 2
    finally:
        objects.close()


@pytest.mark.parametrize("announced", [200, 100])  # the body is 150 bytes
def test_put_refuses_a_body_of_another_length(server: _Server, announced: int) -> None:
    objects = ObjectIO()
    try:
        _, pull = chunks(100, 50)
        with pytest.raises((ProtocolError, Unreachable)):
            objects.put(url(server), announced, pull, Interrupt())
        assert server.bodies == []
    finally:
        objects.close()


def test_interrupt_ends_a_put_to_a_server_that_stopped_reading(server: _Server) -> None:
    """A send blocked on a full socket would wait for the socket timeout (a minute): the
    interrupt (a cancel on the trio side) ends it at once."""
    objects = ObjectIO()
    stop = Interrupt()
    try:
        server.script.append("stall")
        count = 1024  # 256 MiB: far more than the socket buffers hold
        pulled = [0]

        def pull() -> bytes | None:
            pulled[0] += 1
            return b"x" * SCRATCH if pulled[0] <= count else None

        threading.Timer(0.5, stop.interrupt).start()
        started = time.monotonic()
        with pytest.raises(Unreachable):
            objects.put(url(server), SCRATCH * count, pull, stop)
        assert time.monotonic() - started < 5
        assert pulled[0] < count  # it was blocked sending, not done
    finally:
        objects.close()


# --- through the network API against the emulator ----------------------------------------


async def test_object_bodies_are_received_and_decrypted_off_the_trio_thread(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trio thread also answers FUSE: receiving a body there (one h11 event per 16 KiB
    TLS record) saturated it during cold reads. The body must be read in a worker thread."""
    readers: list[bool] = []
    original: Callable[..., Any] = http.client.HTTPResponse.readinto

    def spy(self: http.client.HTTPResponse, b: Any) -> Any:
        readers.append(threading.current_thread() is threading.main_thread())
        return original(self, b)

    monkeypatch.setattr(http.client.HTTPResponse, "readinto", spy)
    account = add_account(emu)
    content = Content(5, 3 * MiB + 7)
    async with await logged_in(emu, account) as client:
        file_id = await client.network.upload(content.read, content.size)
        readers.clear()
        got = await client.network.fetch_range(file_id, MiB, 2 * MiB + 7)
        assert bytes(got) == content.bytes(MiB, 2 * MiB + 7)
        assert readers and not any(readers)  # received, and only in worker threads
        # Unaligned starts (CTR restarts on a 16-byte block) and the public bytes API.
        got = await client.network.download_range(file_id, 5, 100)
        assert isinstance(got, bytes) and got == content.bytes(5, 100)


async def test_expired_object_url_is_fetched_again(emu: Any) -> None:
    account = add_account(emu)
    content = Content(6, MiB)
    async with await logged_in(emu, account) as client:
        file_id = await client.network.upload(content.read, content.size)
        info = await client.network.info(file_id)
        # A presigned URL the object store no longer honours (it expired): 403 or 404.
        stale = info.url.replace(info.url.split("?")[0].rsplit("/", 1)[-1], "gone")
        client.network._info[file_id] = type(info)(
            info.file_id, info.index, info.size, info.hash, stale
        )
        got = await client.network.fetch_range(file_id, 0, MiB)
        assert bytes(got) == content.bytes(0, MiB)
        assert client.network._info[file_id].url == info.url


async def test_cancelled_fetch_does_not_wait_for_the_thread(emu: Any) -> None:
    """Unmounting cancels read-ahead fetches: it must not wait for a slow GET to end."""
    account = add_account(emu)
    content = Content(7, MiB)
    async with await logged_in(emu, account) as client:
        file_id = await client.network.upload(content.read, content.size)
        await client.network.info(file_id)
        emu.set_faults(latency_ms=3000)
        try:
            with trio.move_on_after(0.3) as scope:
                await client.network.fetch_range(file_id, 0, MiB)
            assert scope.cancelled_caught
        finally:
            emu.set_faults(latency_ms=0)


async def test_big_bodies_are_sent_off_the_trio_thread(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sending a body through httpx ran TLS and every send on the trio thread, which also
    answers FUSE; a body of THREAD_PUT bytes or more is sent from a worker thread, while a
    small one keeps httpx's pooled connection."""
    senders: list[bool] = []
    original: Callable[..., Any] = http.client.HTTPConnection.send

    def spy(self: http.client.HTTPConnection, data: Any) -> Any:
        senders.append(threading.current_thread() is threading.main_thread())
        return original(self, data)

    monkeypatch.setattr(http.client.HTTPConnection, "send", spy)
    account = add_account(emu)
    big, small = Content(8, THREAD_PUT + 12345), Content(9, THREAD_PUT - 1)
    async with await logged_in(emu, account) as client:
        file_id = await client.network.upload(big.read, big.size)
        assert senders and not any(senders)  # sent, and only from worker threads
        got = await client.network.fetch_range(file_id, 0, big.size)
        assert bytes(got) == big.bytes(0, big.size)  # the emulator also checked the hash
        senders.clear()
        file_id = await client.network.upload(small.read, small.size)
        assert senders == []
        got = await client.network.fetch_range(file_id, 0, small.size)
        assert bytes(got) == small.bytes(0, small.size)


async def test_cancelled_put_does_not_wait_for_a_server_that_stopped_reading(
    emu: Any, server: _Server
) -> None:
    """Unmounting (or an fsync giving up) cancels an upload: a PUT blocked on a server that
    takes nothing more must end at once, not when its socket times out."""
    account = add_account(emu)
    server.script.append("stall")
    produced: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(1024):  # 256 MiB, never taken whole
            produced.append(1)
            yield b"x" * SCRATCH

    async with await logged_in(emu, account) as client:
        started = trio.current_time()
        with trio.move_on_after(0.5) as scope:
            await client.network._put(url(server), body(), 1024 * SCRATCH)
        assert scope.cancelled_caught
        assert trio.current_time() - started < 3
        assert 0 < len(produced) < 1024


async def test_big_puts_survive_resets_5xx_and_429(emu: Any) -> None:
    """Connections cut mid-body, 5xx and 429 on the PUTs sent from worker threads: each is
    retried with the body made again, and what is stored is the content, whole."""
    account = add_account(emu)
    contents = [Content(10 + n, THREAD_PUT + n * 777_777) for n in range(4)]
    async with await logged_in(emu, account) as client:
        emu.set_faults(fail_rate=0.15, throttle_rate=0.05, reset_rate=0.3, seed=11)
        try:
            ids = [await client.network.upload(c.read, c.size) for c in contents]
            injected = emu.stats()["faults_injected"]
        finally:
            emu.set_faults(fail_rate=0, throttle_rate=0, reset_rate=0)
        assert injected.get("reset"), injected
        for file_id, content in zip(ids, contents, strict=True):
            got = await client.network.fetch_range(file_id, 0, content.size)
            assert bytes(got) == content.bytes(0, content.size)
