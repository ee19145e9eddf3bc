"""The control socket of a running mount: ``internxtfs status | flush | umount MOUNTPOINT``.

Each mount listens on a Unix socket whose path is derived from its mountpoint (so the commands
need nothing but the mountpoint, or any path inside the mount), mode 0600, in a directory
that must be the user's alone (:func:`checked_runtime_dir`): only the user who mounted it can
talk to it, and nobody else can answer in its place.
Requests and answers are JSON lines: the client sends ``{"cmd": ...}``; ``status`` answers one
object; ``flush`` and ``umount`` send ``{"progress": ...}`` lines while they wait and end with
``{"done": true, ...}``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def canonical_mountpoint(mountpoint: str | Path) -> str:
    """Absolute path with symlinks resolved in the parents only: never touches the mountpoint
    itself, which may be a dead FUSE mount that answers every stat with ENOTCONN."""
    absolute = os.path.abspath(mountpoint)
    parent, name = os.path.split(absolute)
    return os.path.join(os.path.realpath(parent), name) if name else absolute


def runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/internxtfs")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return (
        Path(xdg) / "internxtfs"
        if xdg
        else Path(tempfile.gettempdir()) / f"internxtfs-{os.getuid()}"
    )


class UnsafeRuntimeDir(Exception):
    """The directory holding the control sockets is not this user's alone: whoever controls
    it could answer ``flush`` with "everything is stored"."""


def checked_runtime_dir(*, create: bool) -> Path:
    """:func:`runtime_dir`, once it is sure to be this user's alone: owned by the user, mode
    0700 or narrower, a real directory (not a symlink). Without ``XDG_RUNTIME_DIR`` it lies in
    the shared /tmp, where another user may have made it first. Raises UnsafeRuntimeDir;
    FileNotFoundError when it does not exist and ``create`` is false (no mount runs)."""
    directory = runtime_dir()
    if create:
        directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(
            f"{directory} is not a directory (a symlink or a file): the control sockets of "
            "internxtfs mounts cannot go there; remove it, or set XDG_RUNTIME_DIR"
        )
    if st.st_uid != os.geteuid():
        raise UnsafeRuntimeDir(
            f"{directory} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): another "
            "user could answer for your mounts there; remove it, or set XDG_RUNTIME_DIR"
        )
    if st.st_mode & 0o077:
        raise UnsafeRuntimeDir(
            f"{directory} has mode {stat.S_IMODE(st.st_mode):04o}, open to other users: "
            f"run 'chmod 700 {directory}', or set XDG_RUNTIME_DIR"
        )
    return directory


def _socket_name(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:20] + ".sock"


def socket_path(mountpoint: str | Path) -> Path:
    return runtime_dir() / _socket_name(canonical_mountpoint(mountpoint))


@contextlib.contextmanager
def _listening_socket(path: Path) -> Iterator[socket.socket]:
    if path.parent == runtime_dir():
        checked_runtime_dir(create=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left over from a mount that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(8)
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def serve(
    path: Path, handler: Handler, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    with _listening_socket(path) as raw:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
        task_status.started()

        async def session(stream: trio.SocketStream) -> None:
            async with stream:
                try:
                    request = json.loads(await _read_line(stream))

                    async def send(obj: dict[str, Any]) -> None:
                        await stream.send_all(json.dumps(obj, default=str).encode() + b"\n")

                    await handler(request, send)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the client went away (Ctrl-C on `internxtfs flush`)
                except Exception:
                    log.exception("control request failed")

        await trio.serve_listeners(session, [listener])


async def _read_line(stream: trio.SocketStream, limit: int = 65536) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("control request too long")
    return data.split(b"\n", 1)[0]


class NotMounted(Exception):
    pass


def mount_root(path: str | Path) -> str:
    """The mountpoint of the internxtfs mount that ``path`` lies in: ``path`` itself or the
    nearest parent that has a control socket (``status`` from inside a subdirectory).
    NotMounted when none has; UnsafeRuntimeDir when the sockets' directory is not safe."""
    try:
        directory = checked_runtime_dir(create=False)
    except FileNotFoundError:
        raise NotMounted(f"no internxtfs mount answers at {path}") from None
    current = canonical_mountpoint(path)
    while True:
        if (directory / _socket_name(current)).exists():
            return current
        parent = os.path.dirname(current)
        if parent == current:
            raise NotMounted(f"no internxtfs mount answers at {path}")
        current = parent


async def request(mountpoint: str | Path, cmd: str, **args: Any) -> AsyncIterator[dict[str, Any]]:
    """Send one command to the mount ``mountpoint`` lies in; yield every answer line."""
    root = mount_root(mountpoint)
    try:
        async for answer in request_at(socket_path(root), cmd, **args):
            yield answer
    except NotMounted:
        raise NotMounted(f"no internxtfs mount answers at {mountpoint}") from None


async def tell_every_mount(cmd: str, **args: Any) -> list[dict[str, Any]]:
    """Send a command to every mount of this user that answers (e.g. after a new login)."""
    answers: list[dict[str, Any]] = []
    try:
        directory = checked_runtime_dir(create=False)
    except (FileNotFoundError, UnsafeRuntimeDir) as exc:
        if isinstance(exc, UnsafeRuntimeDir):
            log.warning("not telling running mounts: %s", exc)
        return answers
    for path in sorted(directory.glob("*.sock")):
        with trio.move_on_after(10), contextlib.suppress(NotMounted, OSError, ValueError):
            async for answer in request_at(path, cmd, **args):
                answers.append(answer)
    return answers


async def request_at(path: Path, cmd: str, **args: Any) -> AsyncIterator[dict[str, Any]]:
    """Send one command to the control socket at ``path``; yield every answer line."""
    try:
        stream = await trio.open_unix_socket(str(path))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise NotMounted(f"nothing answers at {path}") from None
        raise
    async with stream:
        try:
            await stream.send_all(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        except trio.BrokenResourceError as exc:
            # A mount going away mid-request resets the socket; trio says so with its own
            # type, which callers that handle OSError (tell_every_mount) would not expect.
            raise ConnectionResetError(f"{path}: the mount closed the connection") from exc
        buffer = b""
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError as exc:
                raise ConnectionResetError(f"{path}: the mount closed the connection") from exc
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield json.loads(line)
