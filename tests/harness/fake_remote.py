"""An in-memory Internxt behind the filesystem's one interface to it (``fs/remote.py``).

:class:`FakeRemote` keeps folders, file entries and network objects in dicts and answers as
Internxt does where the filesystem depends on it (docs/protocol.md): a name taken is Conflict,
a create in a folder that is gone is NotFound naming the folder, a replace deletes the old
object (no versions), a permanent delete takes the object with the entry while the trash keeps
it, ``file_meta`` answers for trashed and deleted entries too. It has no read replicas: every
read sees every write at once. Calls are logged in ``calls`` ("move_file f.txt", ...).

:class:`FailingRemote` wraps any :class:`~internxtfs.fs.remote.Remote` and makes chosen calls
fail, before they reach it (nothing happened) or after (it happened, the answer was lost).

Methods named ``*_elsewhere`` stand for another client changing the drive.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from internxtfs.fs.modes import DeleteMode
from internxtfs.fs.remote import Kind, Progress, Read, delete_entry
from internxtfs.internxt.consistency import DEFAULT_WINDOW
from internxtfs.internxt.drive import FileEntry, FolderEntry
from internxtfs.internxt.errors import Conflict, NotFound
from internxtfs.internxt.names import split_name

ROOT = "root-uuid"
EXISTS, TRASHED, DELETED = "EXISTS", "TRASHED", "DELETED"
START = 1_600_000_000.0


@dataclass
class _Folder:
    uuid: str
    id: int
    parent_uuid: str | None
    name: str
    created: float = START
    modified: float = START
    status: str = EXISTS

    def entry(self) -> FolderEntry:
        return FolderEntry(
            self.uuid, self.id, self.parent_uuid, self.name, self.created, self.modified,
            self.status,
        )  # fmt: skip


@dataclass
class _File:
    uuid: str
    id: int
    folder_uuid: str
    name: str
    size: int
    file_id: str | None
    created: float = START
    modified: float = START
    status: str = EXISTS

    def entry(self) -> FileEntry:
        plain, ext = split_name(self.name)
        return FileEntry(
            self.uuid, self.id, self.folder_uuid, plain, ext, self.size, self.file_id, "bucket",
            self.created, self.modified, self.status,
        )  # fmt: skip


class NoLag:
    """The read-replica and outage hints of a Remote that has neither (any in-memory fake)."""

    # The mount's default: its listing hints say no lag, but a name another client held
    # "for a moment" (as a lagging replica shows it) is still waited out as against Internxt.
    replica_window = DEFAULT_WINDOW

    def listing_lag(self, folder_uuid: str) -> float:
        return 0.0  # no read replicas

    def recently_written(self, uuid: str) -> bool:
        return False

    def recently_deleted(self, uuid: str) -> bool:
        return False

    def offline(self) -> bool:
        return False  # always answers


@dataclass
class FakeRemote(NoLag):
    delete_mode: DeleteMode = DeleteMode.PERMANENT
    quota: int = 1 << 40
    size_cap: int | None = None
    folders: dict[str, _Folder] = field(default_factory=dict)
    files: dict[str, _File] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    known_offline: bool = False

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.folders.setdefault(ROOT, _Folder(ROOT, 0, None, ""))

    # --- what the tests set up and look at -------------------------------------------------------

    def _next(self, prefix: str) -> tuple[str, int]:
        n = next(self._ids)
        return f"{prefix}-{n}", n

    def add_folder(self, parent: str, name: str) -> str:
        uuid, n = self._next("folder")
        self.folders[uuid] = _Folder(uuid, n, parent, name)
        return uuid

    def add_file(
        self, folder: str, name: str, data: bytes, *, uuid: str | None = None,
        file_id: str | None = None,
    ) -> str:  # fmt: skip
        """A file created elsewhere (or before the mount)."""
        new_uuid, n = self._next("file")
        uuid = uuid or new_uuid
        if data:
            file_id = file_id or self._next("obj")[0]
            self.objects[file_id] = data
        self.files[uuid] = _File(uuid, n, folder, name, len(data), file_id if data else None)
        return uuid

    def replace_elsewhere(self, uuid: str, data: bytes, file_id: str | None = None) -> None:
        """Another client points the entry at new content (the old object goes)."""
        entry = self.files[uuid]
        self.objects.pop(entry.file_id or "", None)
        entry.file_id = file_id or self._next("obj")[0]
        self.objects[entry.file_id] = data
        entry.size, entry.modified = len(data), entry.modified + 100

    def delete_elsewhere(self, uuid: str) -> None:
        entry = self.files[uuid]
        entry.status = DELETED
        self.objects.pop(entry.file_id or "", None)

    def file_at(self, folder: str, name: str) -> _File | None:
        for entry in self.files.values():
            if (entry.folder_uuid, entry.name, entry.status) == (folder, name, EXISTS):
                return entry
        return None

    def folder_at(self, parent: str, name: str) -> _Folder | None:
        for entry in self.folders.values():
            if (entry.parent_uuid, entry.name, entry.status) == (parent, name, EXISTS):
                return entry
        return None

    def content(self, folder: str, name: str) -> bytes | None:
        """What a fresh client reads at folder/name (None: no such file)."""
        entry = self.file_at(folder, name)
        if entry is None:
            return None
        return b"" if entry.file_id is None else self.objects[entry.file_id]

    def names(self, folder: str) -> list[str]:
        """What a fresh listing of the folder shows (files and folders)."""
        files = [
            f.name for f in self.files.values() if (f.folder_uuid, f.status) == (folder, EXISTS)
        ]
        folders = [
            d.name for d in self.folders.values() if (d.parent_uuid, d.status) == (folder, EXISTS)
        ]
        return sorted(files + folders)

    # --- Remote: reading the tree ----------------------------------------------------------------

    def _file(self, uuid: str) -> _File:
        entry = self.files.get(uuid)
        if entry is None:
            raise NotFound("File not found", status=404)
        return entry

    def _existing_file(self, uuid: str) -> _File:
        entry = self._file(uuid)
        if entry.status != EXISTS:
            raise NotFound("File not found", status=404)
        return entry

    def _existing_folder(self, uuid: str) -> _Folder:
        entry = self.folders.get(uuid)
        if entry is None or entry.status != EXISTS:
            raise NotFound("Folder not found", status=404)
        return entry

    async def list_folders(self, folder_uuid: str) -> list[FolderEntry]:
        self.calls.append("list_folders")
        self._existing_folder(folder_uuid)
        return [
            d.entry()
            for d in self.folders.values()
            if (d.parent_uuid, d.status) == (folder_uuid, EXISTS)
        ]

    async def list_files(self, folder_uuid: str) -> list[FileEntry]:
        self.calls.append("list_files")
        self._existing_folder(folder_uuid)
        return [
            f.entry()
            for f in self.files.values()
            if (f.folder_uuid, f.status) == (folder_uuid, EXISTS)
        ]

    async def file_meta(
        self, uuid: str, *, stale: Callable[[Any], bool] | None = None
    ) -> FileEntry:
        self.calls.append("file_meta")
        return self._file(uuid).entry()

    async def folder_meta(
        self, uuid: str, *, stale: Callable[[Any], bool] | None = None
    ) -> FolderEntry:
        self.calls.append("folder_meta")
        entry = self.folders.get(uuid)
        if entry is None:
            raise NotFound("Folder not found", status=404)
        return entry.entry()

    async def files_exist(
        self,
        folder_uuid: str,
        names: Iterable[str],
        *,
        stale: Callable[[list[FileEntry]], bool] | None = None,
    ) -> list[FileEntry]:
        self.calls.append("files_exist")  # no replicas here: ``stale`` never applies
        wanted = set(names)
        return [
            f.entry()
            for f in self.files.values()
            if (f.folder_uuid, f.status) == (folder_uuid, EXISTS) and f.name in wanted
        ]

    async def folders_exist(self, folder_uuid: str, names: Iterable[str]) -> list[FolderEntry]:
        self.calls.append("folders_exist")
        wanted = set(names)
        return [
            d.entry()
            for d in self.folders.values()
            if (d.parent_uuid, d.status) == (folder_uuid, EXISTS) and d.name in wanted
        ]

    def offline(self) -> bool:
        # Known to be unreachable (the retry policy's state); calls still answer, so a test
        # sets this to see how the filesystem behaves once an outage is known.
        return self.known_offline

    # --- Remote: changing the tree ---------------------------------------------------------------

    async def create_folder(
        self, parent_uuid: str, name: str, *, ctime: float | None = None, mtime: float | None = None
    ) -> FolderEntry:
        self.calls.append(f"create_folder {name}")
        self._existing_folder(parent_uuid)
        if self.folder_at(parent_uuid, name) is not None:
            raise Conflict("Folder with the same name already exists", status=409)
        uuid = self.add_folder(parent_uuid, name)
        folder = self.folders[uuid]
        folder.created, folder.modified = ctime or START, mtime or START
        return folder.entry()

    async def _move_folder(self, uuid: str, parent: str, name: str) -> FolderEntry:
        folder = self._existing_folder(uuid)
        taken = self.folder_at(parent, name)
        if taken is not None and taken is not folder:
            raise Conflict("A folder with this name already exists", status=409)
        folder.parent_uuid, folder.name = parent, name
        return folder.entry()

    async def rename_folder(self, uuid: str, new_name: str) -> FolderEntry:
        self.calls.append(f"rename_folder {new_name}")
        folder = self._existing_folder(uuid)
        assert folder.parent_uuid is not None
        return await self._move_folder(uuid, folder.parent_uuid, new_name)

    async def move_folder(
        self, uuid: str, dest_folder_uuid: str, new_name: str | None = None
    ) -> FolderEntry:
        self.calls.append(f"move_folder {new_name}")
        self._existing_folder(dest_folder_uuid)
        folder = self._existing_folder(uuid)
        return await self._move_folder(uuid, dest_folder_uuid, new_name or folder.name)

    async def move_file(self, uuid: str, dest_folder_uuid: str, new_name: str) -> FileEntry:
        self.calls.append(f"move_file {new_name}")
        entry = self._existing_file(uuid)
        self._existing_folder(dest_folder_uuid)
        taken = self.file_at(dest_folder_uuid, new_name)
        if taken is entry:
            # Internxt refuses a move to where the file already is (moveFile in
            # drive-server-wip src/modules/file/file.usecase.ts).
            raise Conflict(f"File {uuid} was already moved to that location", status=409)
        if taken is not None:
            raise Conflict("A file with this name already exists", status=409)
        entry.folder_uuid, entry.name = dest_folder_uuid, new_name
        return entry.entry()

    async def delete(self, kind: Kind, uuid: str, *, name: str | None = None) -> bool:
        self.calls.append(f"delete {kind} {name or uuid}")
        # The one delete rule of fs/remote.py, over this fake's trash/delete calls.
        return await delete_entry(self, self.delete_mode, kind, uuid, name=name)

    async def trash(self, items: Iterable[tuple[str, Kind]]) -> None:
        for uuid, kind in items:
            if kind == "file":
                self._existing_file(uuid).status = TRASHED  # the trash keeps the object
            else:
                self._existing_folder(uuid).status = TRASHED

    async def delete_file(self, uuid: str) -> None:
        entry = self._existing_file(uuid)
        entry.status = DELETED
        self.objects.pop(entry.file_id or "", None)

    async def delete_folder(self, uuid: str) -> None:
        folder = self._existing_folder(uuid)
        folder.status = DELETED
        for entry in list(self.files.values()):
            if entry.folder_uuid == uuid and entry.status == EXISTS:
                await self.delete_file(entry.uuid)
        for sub in list(self.folders.values()):
            if sub.parent_uuid == uuid and sub.status == EXISTS:
                await self.delete_folder(sub.uuid)

    # --- Remote: content -------------------------------------------------------------------------

    async def upload(self, read: Read, size: int, *, progress: Progress | None = None) -> str:
        assert size > 0, "zero-byte files are not uploaded to the network"
        self.calls.append(f"upload {size}")
        data = await read(0, size)
        assert len(data) == size
        if progress is not None:
            progress(0, size)
        file_id = self._next("obj")[0]
        self.objects[file_id] = data
        return file_id

    async def download_range(self, file_id: str, offset: int, length: int) -> bytes:
        data = self.objects.get(file_id)
        if data is None:
            raise NotFound("Bucket entry not found", status=404)
        return data[offset : offset + length]

    async def create_file(
        self,
        folder_uuid: str,
        name: str,
        size: int,
        file_id: str | None,
        *,
        ctime: float | None = None,
        mtime: float | None = None,
    ) -> FileEntry:
        self.calls.append(f"create_file {name}")
        assert (file_id is None) == (size == 0)
        self._existing_folder(folder_uuid)
        if self.file_at(folder_uuid, name) is not None:
            raise Conflict("File already exists", status=409)
        uuid, n = self._next("file")
        self.files[uuid] = _File(
            uuid, n, folder_uuid, name, size, file_id, ctime or START, mtime or START
        )
        return self.files[uuid].entry()

    async def replace_file(
        self, uuid: str, file_id: str, size: int, *, mtime: float | None = None
    ) -> FileEntry:
        self.calls.append(f"replace_file {uuid}")
        assert file_id is not None and size > 0, "Internxt cannot replace to empty content"
        entry = self._existing_file(uuid)
        if entry.file_id != file_id:
            self.objects.pop(entry.file_id or "", None)  # no versions: the old object goes
        entry.file_id, entry.size = file_id, size
        entry.modified = mtime if mtime is not None else entry.modified
        return entry.entry()

    async def delete_object(self, file_id: str) -> None:
        self.calls.append(f"delete_object {file_id}")
        self.objects.pop(file_id, None)

    async def object_exists(self, file_id: str) -> bool:
        return file_id in self.objects

    # --- Remote: space ---------------------------------------------------------------------------

    async def usage(self) -> int:
        return sum(len(data) for data in self.objects.values())

    async def limit(self) -> int:
        return self.quota

    async def file_limits(self) -> int | None:
        return self.size_cap


# Every call of the Remote interface that reaches the server (FailingRemote can fail them).
REMOTE_CALLS = (
    "list_folders", "list_files", "file_meta", "folder_meta", "files_exist", "folders_exist",
    "create_folder", "rename_folder", "move_folder", "move_file", "delete", "upload",
    "download_range", "create_file", "replace_file", "delete_object", "object_exists", "usage",
    "limit", "file_limits",
)  # fmt: skip


@dataclass
class _Fault:
    error: BaseException
    after: bool  # the call went through first (its answer is lost)
    times: int
    when: Callable[[tuple[Any, ...], dict[str, Any]], bool] | None


class FailingRemote:
    """Wraps a Remote; :meth:`fail` makes chosen calls raise (mountpoint-s3's failure client).

    ``remote.fail("move_file", ServerError(...))`` fails the next ``move_file`` before it is
    sent; ``after=True`` sends it first (it lands, the answer is lost); ``times`` how many
    calls in a row; ``when(args, kwargs)`` picks which calls count. Everything else is passed
    through to the wrapped remote."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._faults: dict[str, list[_Fault]] = {}
        self.failed: list[str] = []  # calls that were made to fail, in order

    def fail(
        self,
        call: str,
        error: BaseException,
        *,
        after: bool = False,
        times: int = 1,
        when: Callable[[tuple[Any, ...], dict[str, Any]], bool] | None = None,
    ) -> None:
        assert call in REMOTE_CALLS, call
        self._faults.setdefault(call, []).append(_Fault(error, after, times, when))

    def clear(self) -> None:
        self._faults.clear()

    def _fault(self, call: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Fault | None:
        for fault in self._faults.get(call, []):
            if fault.when is None or fault.when(args, kwargs):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults[call].remove(fault)
                self.failed.append(call)
                return fault
        return None

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name not in REMOTE_CALLS:
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            fault = self._fault(name, args, kwargs)
            if fault is not None and not fault.after:
                raise fault.error
            result = await target(*args, **kwargs)
            if fault is not None:
                raise fault.error
            return result

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("inner", "_faults", "failed"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)
