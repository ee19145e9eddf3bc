"""Ranged GETs of presigned object URLs, received and decrypted in a worker thread.

Why not httpx for these bodies: httpx receives a body through httpcore and h11 in the trio
thread, one event per socket read. Over TLS a socket read returns one TLS record, at most
16 KiB, so a 512 MiB cold read is ~33,000 trips through h11, httpcore, httpx and trio's
scheduler, all holding the GIL on the one thread that also answers FUSE. Profiled during a cold
read (bench/RESULTS.md, 2026-12-07), receiving bodies took about half of that thread's time
and the thread was saturated. Here the stdlib's ``http.client`` reads the body with
``readinto`` into one buffer (a C loop over the socket that releases the GIL while it waits)
and the AES-CTR pass runs in the same worker thread, so the trio thread only starts the fetch
and gets the plaintext back.

Only object bodies go this way: one GET, no auth header (the URL is presigned), errors mapped
exactly as :meth:`.http.Http.send` maps them (:func:`.http.error_for`), connection failures
raised as :class:`Unreachable` for the retry policy. The same trust settings as httpx's
(``httpx.create_ssl_context``: ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else certifi). A client
behind a proxy, or built with a test transport, keeps using httpx (see ``InternxtClient``).
"""

from __future__ import annotations

import http.client
import mmap
import ssl
import threading
from urllib.parse import urlsplit

import httpx

from . import crypto
from .endpoints import USER_AGENT
from .errors import IntegrityError, InternxtError, ProtocolError, Unreachable
from .http import DEFAULT_TIMEOUT, error_for

MAX_IDLE = 8  # idle keep-alive connections kept per origin
_ERROR_BODY_LIMIT = 64 * 1024  # an error answer is read this far, for its message

_Connection = http.client.HTTPConnection  # HTTPSConnection is a subclass


class ObjectGetter:
    """Blocking ranged GETs with a small keep-alive pool; call :meth:`get_plain` from a
    worker thread (``trio.to_thread.run_sync``). Thread-safe."""

    def __init__(self, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self._connect_timeout = timeout.connect or 10.0
        self._read_timeout = timeout.read or 60.0
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str], list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    # --- connections ----------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _take(self, origin: tuple[str, str]) -> _Connection | None:
        with self._lock:
            idle = self._idle.get(origin)
            return idle.pop() if idle else None

    def _give_back(self, origin: tuple[str, str], conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, scheme: str, netloc: str) -> _Connection:
        conn: _Connection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                netloc, timeout=self._connect_timeout, context=self._context()
            )
        elif scheme == "http":
            conn = http.client.HTTPConnection(netloc, timeout=self._connect_timeout)
        else:
            raise ProtocolError(f"object URL with scheme {scheme!r}")
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self._read_timeout)
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    # --- one GET --------------------------------------------------------------------------

    def get_plain(
        self, url: str, first: int, last: int, whole: bool, key: bytes, iv: bytes
    ) -> memoryview:
        """Plaintext of ciphertext bytes ``first..last`` (inclusive; ``first`` a multiple of
        16, CTR's block) of the object at ``url``, without a Range header when ``whole``.
        Raises typed errors like ``Http.send``."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"user-agent": USER_AGENT, "accept-encoding": "identity"}
        if not whole:
            headers["range"] = f"bytes={first}-{last}"
        what = f"GET {parts.scheme}://{parts.netloc}{parts.path}"
        while True:
            conn = self._take(origin)
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._connect(parts.scheme, parts.netloc)
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                if reused and isinstance(
                    exc, (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError)
                ):
                    continue  # the server closed the idle connection: a fresh one, at once
                raise Unreachable(f"{what}: {type(exc).__name__}: {exc}") from exc
            try:
                ctr = crypto.CtrStream(key, iv, first)
                plain = self._body(resp, what, first, last, whole, ctr)
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
            else:
                self._give_back(origin, conn)
            return plain

    def _body(
        self,
        resp: http.client.HTTPResponse,
        what: str,
        first: int,
        last: int,
        whole: bool,
        ctr: crypto.CtrStream,
    ) -> memoryview:
        """The body, decrypted piece by piece as it arrives into the one buffer returned:
        a fetch holds its size in memory once, not ciphertext and plaintext side by side."""
        status = resp.status
        if status not in (200, 206):
            raise self._error(resp, what)
        if not whole and status != 206:
            # A server that ignores Range would make us decrypt the wrong bytes.
            raise ProtocolError(f"object GET ignored Range (status {status})")
        expected = last - first + 1
        if resp.length is not None and resp.length != expected:
            raise IntegrityError(f"{what} bytes {first}-{last}: answer of {resp.length} bytes")
        out = _buffer(expected)
        scratch = _scratch()
        got = 0
        try:
            while got < expected:
                n = resp.readinto(scratch[: min(len(scratch), expected - got)])
                if not n:
                    if resp.length is None:  # no Content-Length: the body was just short
                        raise IntegrityError(f"{what} bytes {first}-{last}: got {got} bytes")
                    raise Unreachable(f"{what}: body ended at {got} of {expected} bytes")
                if got + n + _SPARE <= expected:
                    ctr.update_into(scratch[:n], out[got : got + n + _SPARE])
                else:  # the cipher API wants 15 spare bytes past what it writes; not at the end
                    out[got : got + n] = ctr.update(scratch[:n])
                got += n
            if resp.length is None and resp.read(1):
                raise IntegrityError(f"{what} bytes {first}-{last}: more than {expected} bytes")
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"{what}: {type(exc).__name__}: {exc}") from exc
        return out

    @staticmethod
    def _error(resp: http.client.HTTPResponse, what: str) -> InternxtError:
        try:
            body = resp.read(_ERROR_BODY_LIMIT)
        except (OSError, http.client.HTTPException) as exc:
            return Unreachable(f"{what}: {type(exc).__name__}: {exc}")
        if 200 <= resp.status < 300:
            return ProtocolError(f"{what}: unexpected status {resp.status}", status=resp.status)
        answer = httpx.Response(resp.status, headers=resp.getheaders(), content=body)
        return error_for(answer, "object")


_SPARE = 15  # what update_into wants past the bytes it writes (the cipher API's rule)
# Fetch buffers at least this large are mappings of their own, unmapped when the cache is done
# with them: from malloc, freed buffers stayed resident (one heap arena per worker thread, and
# freed chunks inside a heap are not given back), and the mount's RSS reached 150-170 MiB in a
# 512 MiB cold read that holds ~40 MiB of buffers at a time (bench/RESULTS.md, 2026-12-07).
# The price: a fresh mapping must be faulted in, ~0.2 s of CPU per 512 MiB with a shared
# mapping page by page (mmap's default). A private one, populated in one go when it is
# made, costs less than half of that (bench/RESULTS.md, "cold read, round two"). (Asking
# for transparent huge pages made it slower on a VM that had none to give, and may stall
# in compaction.)
MAP_BUFFER = 1024 * 1024
_MAP_FLAGS = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0) | getattr(mmap, "MAP_POPULATE", 0)


def _buffer(size: int) -> memoryview:
    if size < MAP_BUFFER:
        return memoryview(bytearray(size))
    return memoryview(mmap.mmap(-1, size, flags=_MAP_FLAGS))


SCRATCH = 256 * 1024  # ciphertext received per step, in a buffer each worker thread keeps
_local = threading.local()


def _scratch() -> memoryview:
    view: memoryview | None = getattr(_local, "scratch", None)
    if view is None:
        view = _local.scratch = memoryview(bytearray(SCRATCH))
    return view


def proxies_configured() -> bool:
    """Whether the environment names an HTTP proxy (httpx would use it; http.client would
    not, so object GETs then stay on httpx)."""
    import urllib.request

    return any(k in ("http", "https", "all") for k in urllib.request.getproxies())
