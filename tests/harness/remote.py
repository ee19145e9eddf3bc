"""What an account holds remotely, read with the protocol client, independently of any mount.

Durability tests compare what was written through a mount with what Internxt (the emulator)
stores, without trusting the mount's cache: :func:`snapshot` logs in with the project's own
protocol client, walks the folder tree and downloads (and decrypts, and hash-checks) every file.
:class:`RemoteWatcher` does that in a background thread while a test runs, to catch a file that
is ever visible under its real name with incomplete or foreign content.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from internxtfs.internxt.client import InternxtClient

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteFile:
    path: str  # "dir/sub/name", relative to the root folder
    uuid: str
    size: int  # the size the drive entry claims
    file_id: str | None
    modified: float  # modificationTime, seconds
    data: bytes | None  # None when not downloaded


async def _login(emulator: Any, user: dict[str, Any]) -> InternxtClient:
    client = InternxtClient(drive_url=emulator.drive_url, network_url=emulator.network_url)
    await client.login(user["email"], user["password"], totp_secret=user.get("totp_secret"))
    return client


def as_other_client(
    emulator: Any, user: dict[str, Any], act: Callable[[InternxtClient], Awaitable[T]]
) -> T:
    """Run ``act`` as another client of the account: the protocol client, logged in afresh,
    straight to the emulator (what another device would do meanwhile)."""

    async def run() -> T:
        client = await _login(emulator, user)
        async with client:
            return await act(client)

    return trio.run(run)


def uuid_of(emulator: Any, user: dict[str, Any], path: str) -> str:
    """The uuid of the one file entry at ``path`` (once replicas have caught up)."""
    [entry] = [e for e in entries(emulator, user, download=False) if e.path == path]
    return entry.uuid


async def _walk(client: InternxtClient, download: bool) -> list[RemoteFile]:
    found: list[RemoteFile] = []
    pending = [(client.session.root_folder_uuid, "")]
    while pending:
        folder, prefix = pending.pop()
        for sub in await client.drive.list_folders(folder):
            pending.append((sub.uuid, f"{prefix}{sub.name}/"))
        for entry in await client.drive.list_files(folder):
            data: bytes | None = None
            if download:
                chunks = []
                if entry.file_id is not None:
                    async for chunk in client.network.download_stream(entry.file_id):
                        chunks.append(chunk)
                data = b"".join(chunks)
            found.append(
                RemoteFile(
                    f"{prefix}{entry.name}",
                    entry.uuid,
                    entry.size,
                    entry.file_id,
                    entry.modified,
                    data,
                )
            )
    return found


def entries(emulator: Any, user: dict[str, Any], download: bool = True) -> list[RemoteFile]:
    """Every file entry of the account (duplicates included), with content by default."""
    emulator.wait_for_replicas()
    return as_other_client(emulator, user, lambda client: _walk(client, download))


def snapshot(emulator: Any, user: dict[str, Any]) -> dict[str, bytes]:
    """path -> content; fails if two entries share a path (a duplicated create)."""
    files = entries(emulator, user)
    paths = [f.path for f in files]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    assert not duplicates, f"several remote entries with the same name: {duplicates}"
    out = {}
    for f in files:
        assert f.data is not None
        assert len(f.data) == f.size, (
            f"{f.path}: entry says {f.size} bytes, object holds {len(f.data)}"
        )
        out[f.path] = f.data
    return out


def usage(emulator: Any, user: dict[str, Any]) -> int:
    """Bytes the account is charged for (``/users/usage``)."""
    emulator.wait_for_replicas()
    return as_other_client(emulator, user, lambda client: client.drive.usage())


def limit(emulator: Any, user: dict[str, Any]) -> int:
    """The account's quota in bytes (``/users/limit``)."""
    return as_other_client(emulator, user, lambda client: client.drive.limit())


def folders(emulator: Any, user: dict[str, Any]) -> list[str]:
    """Every folder path of the account ("a/b/c"), once replicas have caught up."""
    emulator.wait_for_replicas()

    async def walk(client: InternxtClient) -> list[str]:
        found: list[str] = []
        pending = [(client.session.root_folder_uuid, "")]
        while pending:
            folder, prefix = pending.pop()
            for sub in await client.drive.list_folders(folder):
                found.append(f"{prefix}{sub.name}")
                pending.append((sub.uuid, f"{prefix}{sub.name}/"))
        return sorted(found)

    return as_other_client(emulator, user, walk)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RemoteWatcher:
    """Polls the remote tree in a thread; every visible file must have an allowed content.

    ``allowed(path)`` returns the set of sha256 digests that ``path`` may hold (the complete
    old or new content), or None for "any content" (a path the test does not judge). Anything
    else seen, a truncated object above all, is recorded in ``violations``. Use as a context
    manager; ``polls`` counts complete walks, so a test can insist the watcher really looked.
    """

    def __init__(
        self,
        emulator: Any,
        user: dict[str, Any],
        allowed: Callable[[str], set[str] | None],
        interval: float = 0.1,
    ) -> None:
        self.emulator = emulator
        self.user = user
        self.allowed = allowed
        self.interval = interval
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._looked = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RemoteWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # At least one complete walk, also when the block was quicker than the first one
        # (a remount that no longer waits for the replicas): the last state is judged too.
        self._looked.wait(timeout=60)
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        trio.run(self._loop)

    async def _loop(self) -> None:
        client: InternxtClient | None = None
        try:
            while not self._stop.is_set():
                try:
                    if client is None:
                        client = await _login(self.emulator, self.user)
                    self._judge(await _walk(client, download=True))
                    self.polls += 1
                    self._looked.set()
                except Exception as exc:  # the emulator may be down or failing on purpose
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    if client is not None:
                        await client.aclose()
                    client = None
                await trio.sleep(self.interval)
        finally:
            if client is not None:
                await client.aclose()

    def _judge(self, files: list[RemoteFile]) -> None:
        for f in files:
            assert f.data is not None
            if len(f.data) != f.size:
                self.violations.append(f"{f.path}: entry {f.size} bytes, object {len(f.data)}")
                continue
            allowed = self.allowed(f.path)
            if allowed is not None and digest(f.data) not in allowed:
                self.violations.append(f"{f.path}: unexpected content ({f.size} bytes)")
