"""Everything the filesystem (``fs/``) may ask of Internxt, as one typed interface.

:class:`Remote` is the whole contract between the filesystem and the server: the handlers,
the uploader, the rename-over steps, the listings, the conflict policy, the block cache's
fetches and the orphan sweeper reach Internxt only through it. :class:`InternxtRemote`
implements it over the protocol client (``DriveAPI`` for entries and quota, ``NetworkAPI`` for
encrypted objects); the tests implement it in memory (``tests/harness/fake_remote.py``, with a
wrapper that injects faults into any call).

Contracts every implementation keeps (what callers rely on):

* Errors are the typed ones of ``internxt/errors.py``: ``NotFound`` (the entry, its folder or
  the object is not there), ``Conflict`` (the name is taken), ``QuotaExceeded``,
  ``FileTooLarge``, ``RequestRejected`` (a definite refusal), ``AuthError``; anything else
  (``Unreachable``, ``ServerError``, a cancellation) leaves the outcome unknown. Retryable
  errors have been retried already.
* Reads that a lagging read replica may answer wrongly take ``stale``: an answer for which it
  returns True is asked again while the lag can explain it (``internxt/consistency.py``).
* :meth:`Remote.delete` applies the mount's ``--delete-mode`` (permanent or trash) and counts
  an entry already gone as done: it never raises ``NotFound`` for the entry itself. This is
  the one place that rule is written.
* Names are full names (``a.tar.gz``); the client splits them as Internxt stores them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from internxtfs.fs.modes import DeleteMode
from internxtfs.internxt.errors import NotFound

if TYPE_CHECKING:  # the client modules pull in httpx, which fs/ never imports
    from internxtfs.internxt.drive import DriveAPI, FileEntry, FolderEntry
    from internxtfs.internxt.network import NetworkAPI

log = logging.getLogger(__name__)

Kind = Literal["file", "folder"]
Read = Callable[[int, int], Awaitable[bytes | bytearray]]  # read(offset, n) -> exactly n bytes
Progress = Callable[[int, int], None]  # progress(body offset, bytes of it sent)


class Remote(Protocol):
    """What ``fs/`` may ask of Internxt (see the module docstring for the shared contracts)."""

    #: What :meth:`delete` does (``--delete-mode``).
    delete_mode: DeleteMode
    #: Seconds Internxt's read replicas may trail a write (``--replica-window``; 0: none).
    replica_window: float

    # --- reading the tree ---------------------------------------------------------------------

    async def list_folders(self, folder_uuid: str) -> list[FolderEntry]:
        """Every sub-folder of ``folder_uuid``."""
        ...

    async def list_files(self, folder_uuid: str) -> list[FileEntry]:
        """Every file in ``folder_uuid`` (existing ones only)."""
        ...

    async def file_meta(
        self, uuid: str, *, stale: Callable[[Any], bool] | None = None
    ) -> FileEntry:
        """A file's entry whatever its status (trashed, deleted); ``NotFound`` if unknown."""
        ...

    async def folder_meta(
        self, uuid: str, *, stale: Callable[[Any], bool] | None = None
    ) -> FolderEntry:
        """A folder's entry whatever its status; ``NotFound`` if unknown."""
        ...

    async def files_exist(
        self,
        folder_uuid: str,
        names: Iterable[str],
        *,
        stale: Callable[[list[FileEntry]], bool] | None = None,
    ) -> list[FileEntry]:
        """The existing files of ``folder_uuid`` whose full name is one of ``names``."""
        ...

    async def folders_exist(self, folder_uuid: str, names: Iterable[str]) -> list[FolderEntry]:
        """The existing sub-folders of ``folder_uuid`` named one of ``names``."""
        ...

    # Read-replica hints for merging listings (see fs/metadata.py).
    def listing_lag(self, folder_uuid: str) -> float:
        """Seconds during which a listing of the folder may miss our own writes in it."""
        ...

    def recently_written(self, uuid: str) -> bool:
        """Whether a listing may still show this entry as it was before our last write."""
        ...

    def recently_deleted(self, uuid: str) -> bool:
        """Whether a listing may still show this entry although we deleted it."""
        ...

    def offline(self) -> bool:
        """Whether Internxt is known to be unreachable (internxt/retry.py): listings are then
        served from the last one at once (fs/metadata.py)."""
        ...

    # --- changing the tree --------------------------------------------------------------------

    async def create_folder(
        self, parent_uuid: str, name: str, *, ctime: float | None = None, mtime: float | None = None
    ) -> FolderEntry:
        """A new folder; ``Conflict`` when a folder of that name exists."""
        ...

    async def rename_folder(self, uuid: str, new_name: str) -> FolderEntry:
        """Rename a folder in place; ``Conflict`` when the name is taken."""
        ...

    async def move_folder(
        self, uuid: str, dest_folder_uuid: str, new_name: str | None = None
    ) -> FolderEntry:
        """Move (and rename) a folder; ``Conflict`` when the name is taken there."""
        ...

    async def move_file(self, uuid: str, dest_folder_uuid: str, new_name: str) -> FileEntry:
        """Move and/or rename a file entry; ``Conflict`` when a file holds the name there."""
        ...

    async def delete(self, kind: Kind, uuid: str, *, name: str | None = None) -> bool:
        """Delete a file or folder entry as ``delete_mode`` says (a folder with all it holds).
        Already gone counts as done: returns False then, True when it was deleted now.
        ``name`` is only for the log."""
        ...

    # --- content ------------------------------------------------------------------------------

    async def upload(self, read: Read, size: int, *, progress: Progress | None = None) -> str:
        """Encrypt and store ``size`` (> 0) bytes as a new network object; its id. Nothing
        points at it until :meth:`create_file` or :meth:`replace_file` publishes it."""
        ...

    async def download_range(self, file_id: str, offset: int, length: int) -> bytes | memoryview:
        """``length`` bytes of an object from ``offset`` (fewer past its end); ``NotFound``
        once it is gone. Possibly the buffer they were received and decrypted into, not a
        copy (the block cache writes it out as is); a caller that keeps it takes ``bytes()``."""
        ...

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
        """Publish a new entry (``file_id`` None exactly when ``size`` is 0); ``Conflict``
        when a file holds the name, ``NotFound`` when the folder is gone."""
        ...

    async def replace_file(
        self, uuid: str, file_id: str, size: int, *, mtime: float | None = None
    ) -> FileEntry:
        """Point an entry at new, non-empty content (the old object goes, on Internxt)."""
        ...

    async def delete_object(self, file_id: str) -> None:
        """Delete a network object nothing points at (an orphan); already gone is done."""
        ...

    async def object_exists(self, file_id: str) -> bool:
        """Whether the network still holds the object."""
        ...

    # --- space --------------------------------------------------------------------------------

    async def usage(self) -> int:
        """Bytes counted against the quota."""
        ...

    async def limit(self) -> int:
        """The account's quota in bytes."""
        ...

    async def file_limits(self) -> int | None:
        """The plan's per-file cap in bytes, None when there is none."""
        ...


class InternxtRemote:
    """:class:`Remote` over the protocol client: entries and quota from the Drive API,
    objects from the network API. Adds only the delete policy; the client already retries,
    recovers lost answers and asks lagging replicas again."""

    def __init__(
        self,
        drive: DriveAPI,
        network: NetworkAPI,
        *,
        delete_mode: DeleteMode = DeleteMode.PERMANENT,
    ) -> None:
        self.drive = drive
        self.network = network
        self.delete_mode = delete_mode

    @property
    def replica_window(self) -> float:
        return self.drive.read_lag.window

    async def list_folders(self, folder_uuid: str) -> list[FolderEntry]:
        return await self.drive.list_folders(folder_uuid)

    async def list_files(self, folder_uuid: str) -> list[FileEntry]:
        return await self.drive.list_files(folder_uuid)

    async def file_meta(
        self, uuid: str, *, stale: Callable[[Any], bool] | None = None
    ) -> FileEntry:
        return await self.drive.file_meta(uuid, stale=stale)

    async def folder_meta(
        self, uuid: str, *, stale: Callable[[Any], bool] | None = None
    ) -> FolderEntry:
        return await self.drive.folder_meta(uuid, stale=stale)

    async def files_exist(
        self,
        folder_uuid: str,
        names: Iterable[str],
        *,
        stale: Callable[[list[FileEntry]], bool] | None = None,
    ) -> list[FileEntry]:
        return await self.drive.files_exist(folder_uuid, names, stale=stale)

    async def folders_exist(self, folder_uuid: str, names: Iterable[str]) -> list[FolderEntry]:
        return await self.drive.folders_exist(folder_uuid, names)

    def listing_lag(self, folder_uuid: str) -> float:
        return self.drive.listing_lag(folder_uuid)

    def recently_written(self, uuid: str) -> bool:
        return self.drive.recently_written(uuid)

    def recently_deleted(self, uuid: str) -> bool:
        return self.drive.recently_deleted(uuid)

    def offline(self) -> bool:
        return self.drive.offline()

    async def create_folder(
        self, parent_uuid: str, name: str, *, ctime: float | None = None, mtime: float | None = None
    ) -> FolderEntry:
        return await self.drive.create_folder(parent_uuid, name, ctime=ctime, mtime=mtime)

    async def rename_folder(self, uuid: str, new_name: str) -> FolderEntry:
        return await self.drive.rename_folder(uuid, new_name)

    async def move_folder(
        self, uuid: str, dest_folder_uuid: str, new_name: str | None = None
    ) -> FolderEntry:
        return await self.drive.move_folder(uuid, dest_folder_uuid, new_name)

    async def move_file(self, uuid: str, dest_folder_uuid: str, new_name: str) -> FileEntry:
        return await self.drive.move_file(uuid, dest_folder_uuid, new_name)

    async def delete(self, kind: Kind, uuid: str, *, name: str | None = None) -> bool:
        return await delete_entry(self.drive, self.delete_mode, kind, uuid, name=name)

    async def upload(self, read: Read, size: int, *, progress: Progress | None = None) -> str:
        return await self.network.upload(read, size, progress=progress)

    async def download_range(self, file_id: str, offset: int, length: int) -> bytes | memoryview:
        # fetch_range: no copy of what the object getter received (cold reads, issue 12).
        return await self.network.fetch_range(file_id, offset, length)

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
        return await self.drive.create_file(
            folder_uuid, name, size, file_id, ctime=ctime, mtime=mtime
        )

    async def replace_file(
        self, uuid: str, file_id: str, size: int, *, mtime: float | None = None
    ) -> FileEntry:
        return await self.drive.replace_file(uuid, file_id, size, mtime=mtime)

    async def delete_object(self, file_id: str) -> None:
        await self.network.delete(file_id)

    async def object_exists(self, file_id: str) -> bool:
        try:
            await self.network.info(file_id)
        except NotFound:
            return False
        return True

    async def usage(self) -> int:
        return await self.drive.usage()

    async def limit(self) -> int:
        return await self.drive.limit()

    async def file_limits(self) -> int | None:
        return await self.drive.file_limits()


class _EntryDeletes(Protocol):
    async def trash(self, items: Iterable[tuple[str, Kind]]) -> None: ...
    async def delete_file(self, uuid: str) -> None: ...
    async def delete_folder(self, uuid: str) -> None: ...


async def delete_entry(
    drive: _EntryDeletes,
    delete_mode: DeleteMode,
    kind: Kind,
    uuid: str,
    *,
    name: str | None = None,
) -> bool:
    """The delete rule, for every implementation of :meth:`Remote.delete`: to the trash or
    gone for good as ``delete_mode`` says; an entry already gone (deleted elsewhere, or by an
    earlier attempt whose answer was lost) is done, not an error."""
    try:
        if delete_mode is DeleteMode.TRASH:
            await drive.trash([(uuid, kind)])
        elif kind == "file":
            await drive.delete_file(uuid)
        else:
            await drive.delete_folder(uuid)
    except NotFound:
        log.info("%s %s was already gone remotely", kind, repr(name) if name else uuid)
        return False
    return True
