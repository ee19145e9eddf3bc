"""Object bodies received and decrypted in worker threads (``internxt.objectget``).

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
from collections.abc import Callable, Iterator
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
from internxtfs.internxt.objectget import SCRATCH, ObjectGetter
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


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: Script = []
        self.requests: list[str | None] = []


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def url(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/objects/abc?X-Signature=s"


def get(getter: ObjectGetter, srv: _Server, first: int, last: int) -> memoryview:
    whole = first == 0 and last == len(CIPHER) - 1
    return getter.get_plain(url(srv), first, last, whole, KEY, IV)


def test_ranges_come_back_decrypted(server: _Server) -> None:
    getter = ObjectGetter()
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
    getter = ObjectGetter()
    try:
        server.script.append(mode)
        with pytest.raises(error):
            get(getter, server, 16, 1000)
        # The connection is not left in a broken state: the next GET works.
        assert get(getter, server, 16, 1000) == PLAIN[16:1001]
    finally:
        getter.close()


def test_more_bytes_than_asked_is_an_integrity_error(server: _Server) -> None:
    getter = ObjectGetter()
    try:
        server.script.append("long")
        with pytest.raises(IntegrityError):
            get(getter, server, 0, 99)
    finally:
        getter.close()


def test_keep_alive_closed_by_the_server_is_replaced_at_once(server: _Server) -> None:
    getter = ObjectGetter()
    try:
        assert get(getter, server, 0, 99) == PLAIN[:100]  # connection kept
        server.script.append("close-after")
        assert get(getter, server, 100, 199) == PLAIN[100:200]
        # The pooled connection may be the one the server closed: a fresh one, no error.
        assert get(getter, server, 200, 299) == PLAIN[200:300]
        assert len(server.requests) == 3
    finally:
        getter.close()


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
