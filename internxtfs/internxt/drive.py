"""The Drive API: folders, file entries, quota (protocol §5.3, §5.5, §7).

Every call goes through the shared retry policy and the session manager (Bearer token, renewal
on 401). Calls that are not idempotent carry a ``recover`` hook that looks for the result of an
earlier attempt whose answer was lost, so a retry never creates a second entry.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import trio

from .auth import SessionManager
from .consistency import ReadLag
from .crypto import ENCRYPT_VERSION
from .errors import (
    Conflict,
    IncompleteAnswer,
    NotFound,
    ProtocolError,
    RequestRejected,
    Unprocessable,
)
from .http import Http, bearer, json_body
from .names import check_name, join_name, split_name
from .retry import Recover, RetryPolicy, carry_interactive

log = logging.getLogger(__name__)

E = TypeVar("E", "FolderEntry", "FileEntry")

PAGE_SIZE = 50  # the server's maximum (protocol §7.2)
# Pages are cut with LIMIT/OFFSET from a query ordered by this column alone, so it must be
# unique: rows tying on it (``plainName``: ``report.pdf`` and ``report.docx``) may come back in
# a different order for every page request, and an entry is then skipped (docs/protocol.md,
# "Listings"). ``id`` is unique, accepted by both listing DTOs, and grows with every insert, so
# an entry created while we page lands after the pages already fetched instead of shifting them.
LIST_SORT = "id"
EXISTENCE_BATCH = 200  # the existence DTOs accept 1..200 criteria
TRASH_BATCH = 50  # move-items-to-trash.dto.ts: @ArrayMaxSize(50) (docs/protocol.md)
EXISTS = "EXISTS"

__all__ = [
    "DriveAPI",
    "FileEntry",
    "FolderEntry",
    "join_name",
    "parse_time",
    "split_name",
]


def parse_time(value: object) -> float:
    """ISO-8601 (``...Z``) → epoch seconds; 0.0 when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def format_time(epoch: float) -> str:
    """Epoch seconds → the ISO form the server sends (milliseconds, ``Z``)."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _int(value: object, what: str) -> int:
    # File sizes arrive as decimal strings (protocol §7.1); numbers are tolerated.
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{what} is not an integer: {value!r}") from exc


@dataclass(frozen=True)
class FolderEntry:
    uuid: str
    id: int
    parent_uuid: str | None
    name: str
    created: float
    modified: float
    status: str

    @classmethod
    def from_dto(cls, dto: dict[str, Any]) -> FolderEntry:
        try:
            status = dto.get("status")
            if not isinstance(status, str):
                status = (
                    "DELETED"
                    if dto.get("removed")
                    else ("TRASHED" if dto.get("deleted") else EXISTS)
                )
            return cls(
                uuid=str(dto["uuid"]),
                id=_int(dto.get("id", 0), "folder id"),
                parent_uuid=dto.get("parentUuid") or dto.get("parent_uuid"),
                name=str(dto.get("plainName") or dto.get("plain_name") or ""),
                created=parse_time(dto.get("creationTime") or dto.get("createdAt")),
                modified=parse_time(dto.get("modificationTime") or dto.get("updatedAt")),
                status=status,
            )
        except KeyError as exc:
            raise ProtocolError(f"folder record lacks {exc}") from exc


@dataclass(frozen=True)
class FileEntry:
    uuid: str
    id: int
    folder_uuid: str
    plain_name: str
    type: str
    size: int
    file_id: str | None
    bucket: str | None
    created: float
    modified: float
    status: str

    @property
    def name(self) -> str:
        return join_name(self.plain_name, self.type)

    @classmethod
    def from_dto(cls, dto: dict[str, Any]) -> FileEntry:
        try:
            return cls(
                uuid=str(dto["uuid"]),
                id=_int(dto.get("id", 0), "file id"),
                folder_uuid=str(dto.get("folderUuid") or ""),
                plain_name=str(dto.get("plainName") or ""),
                type=str(dto.get("type") or ""),
                size=_int(dto.get("size", 0), "file size"),
                file_id=dto.get("fileId") or None,
                bucket=dto.get("bucket") or None,
                created=parse_time(dto.get("creationTime") or dto.get("createdAt")),
                modified=parse_time(dto.get("modificationTime") or dto.get("updatedAt")),
                status=str(dto.get("status") or EXISTS),
            )
        except KeyError as exc:
            raise ProtocolError(f"file record lacks {exc}") from exc


def _dedupe(entries: Iterable[E]) -> list[E]:
    seen: set[str] = set()
    out: list[E] = []
    for entry in entries:
        if entry.uuid not in seen:
            seen.add(entry.uuid)
            out.append(entry)
    return out


class DriveAPI:
    def __init__(
        self,
        http: Http,
        sessions: SessionManager,
        *,
        retry: RetryPolicy | None = None,
        list_window: int = 16,
        read_lag: ReadLag | None = None,
    ) -> None:
        self._http = http
        self._sessions = sessions
        self._retry = retry or RetryPolicy()
        self._window = max(1, list_window)
        # Our last write, and how long a read may not show it (consistency.py): the NotFound
        # and Conflict answers below that lag can explain are asked again before they count.
        self.read_lag = read_lag or ReadLag()

    def offline(self) -> bool:
        """Internxt is known to be unreachable: a call failed on it and none answered since."""
        return self._retry.offline

    # --- plumbing ---------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        expected: tuple[int, ...] = (200,),
        json: object = None,
        params: dict[str, str | int] | None = None,
        recover: Callable[[bool], Awaitable[Any]] | None = None,
        what: str | None = None,
        record: bool = False,
        touches: Iterable[str | None] = (None,),
        entry: str | None = None,
    ) -> Any:
        """One drive call under the retry policy. ``record``: the answer must be a JSON object
        (a record); a 200 without one is retried (:class:`IncompleteAnswer`). ``touches``: for a
        write, the folders whose children it changes (None: unknown); ``entry``: the file or
        folder it changes."""
        entries = () if entry is None else (entry,)
        url = f"{self._http.drive_url}{path}"

        async def with_token(token: str) -> Any:
            resp = await self._http.send(
                method, url, json=json, params=params, headers=bearer(token), expected=expected
            )
            if resp.status_code == 204 or not resp.content:
                if record:
                    # drive-server's file meta answers 200 with no body when it swallowed an
                    # internal error (docs/protocol.md, "Empty answers").
                    raise IncompleteAnswer(f"{method} {path}: {resp.status_code} with no body")
                return None
            body = json_body(resp)
            if record and not isinstance(body, dict):
                raise IncompleteAnswer(f"{method} {path}: the answer is not a record")
            return body

        read_only = method == "GET" or path.endswith("/existence")

        async def attempt() -> Any:
            if not read_only:
                self.read_lag.sending()
            return await self._sessions.authorized(with_token)

        if read_only:
            return await self._retry.run(attempt, what=what or f"{method} {path}")
        checked: Recover[Any] | None = None
        if recover is not None:
            inner = recover
            checks = 0

            async def checked() -> Any:
                # An attempt whose answer was lost may have landed a moment ago, and a lagging
                # replica may not show it yet. The first check before a resend is one plain
                # read: a resend of a write that had landed is refused by the server's unique
                # indexes (docs/protocol.md, "Unique names"), and a refusal (or another
                # failure) makes every later check wait out the replica window. Waiting at the
                # first check would cost the whole window for every failed request, which
                # almost never landed.
                nonlocal checks
                checks += 1
                self.read_lag.wrote(touches, entries)
                return await inner(checks > 1)

        try:
            result = await self._retry.run(
                attempt, recover=checked, what=what or f"{method} {path}"
            )
        except RequestRejected:
            raise  # refused: nothing was written
        except BaseException:
            self.read_lag.wrote(touches, entries)  # it may have landed
            raise
        self.read_lag.wrote(touches, entries)
        if isinstance(result, dict) and isinstance(result.get("uuid"), str):
            self.read_lag.wrote((), (result["uuid"],))  # a create: its new entry
        return result

    async def _move(
        self,
        uuid: str,
        send: Callable[[], Awaitable[Any]],
        recover: Callable[[bool], Awaitable[Any]],
    ) -> Any:
        """``send()`` a move of ``uuid``; a 409 "was already moved to that location" ends it as
        done if the entry is there. The same move sent by an earlier call that gave up (its
        answer lost, its budget spent, the user running ``mv`` again) gets that answer;
        without this, the new call ended in EEXIST for a rename that had been done. The answer
        comes from a replica's name lookup, which may still show the entry where we moved it
        from a moment ago (a move back): it is believed only once a read after the replicas
        show our last write to the entry finds the entry there; else the move is sent again."""
        try:
            return await send()
        except Conflict as exc:
            if "already moved" not in exc.message.lower():
                raise
            await self.read_lag.wait_settled([uuid])
            landed = await recover(False)
            if landed is None:
                log.info("%s: not so once the replicas caught up; sending it again", exc.message)
                return await send()
            log.info("%s: it had been done already", exc.message)
            return landed

    def _seen(self, entry: E) -> E:
        parent = entry.folder_uuid if isinstance(entry, FileEntry) else entry.parent_uuid
        self.read_lag.seen(entry.uuid, parent)
        return entry

    def _parent(self, uuid: str) -> str | None:
        return self.read_lag.parent_of(uuid)

    # --- listing ----------------------------------------------------------------------------

    async def _list_all(
        self, path: str, key: str, parse: Callable[[dict[str, Any]], Any]
    ) -> list[Any]:
        async def page(offset: int) -> list[Any]:
            params: dict[str, str | int] = {
                "limit": PAGE_SIZE,
                "offset": offset,
                "sort": LIST_SORT,
                "order": "ASC",
            }
            body = await self._call("GET", path, params=params, what=f"list {path}@{offset}")
            items = body.get(key) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise ProtocolError(f"listing answer lacks '{key}'")
            return [parse(item) for item in items]

        first = await page(0)
        if len(first) < PAGE_SIZE:
            return _dedupe(first)

        # Big folder: keep a window of page requests in flight. Workers take the next offset
        # until some page comes back short; pages past the end are just empty. Shared state
        # (next_offset, end, pages) is only touched between awaits, so no lock is needed.
        pages: dict[int, list[Any]] = {0: first}
        next_offset = PAGE_SIZE
        end: int | None = None

        carried = carry_interactive()  # pages of an interactive listing are interactive

        async def worker() -> None:
            with carried():
                await pages_until_the_end()

        async def pages_until_the_end() -> None:
            nonlocal next_offset, end
            while end is None or next_offset <= end:
                offset = next_offset
                next_offset += PAGE_SIZE
                items = await page(offset)
                pages[offset] = items
                if len(items) < PAGE_SIZE and (end is None or offset < end):
                    end = offset

        async with trio.open_nursery() as nursery:
            for _ in range(self._window):
                nursery.start_soon(worker)
        # Concurrent changes can shift entries between pages: de-duplicate by uuid.
        return _dedupe(item for offset in sorted(pages) for item in pages[offset])

    def recently_written(self, uuid: str) -> bool:
        """Whether a listing may still show this entry as it was before our last write to it."""
        return self.read_lag.recently_written(uuid)

    def recently_deleted(self, uuid: str) -> bool:
        """Whether a listing may still show this entry although we deleted it."""
        return self.read_lag.recently_deleted(uuid)

    def listing_lag(self, folder_uuid: str) -> float:
        """Seconds during which a listing of the folder may miss our own writes in it."""
        return self.read_lag.listing_lag(folder_uuid)

    async def list_folders(self, folder_uuid: str) -> list[FolderEntry]:
        """Every sub-folder of ``folder_uuid`` (all pages)."""
        found = await self._list_all(
            f"/folders/content/{folder_uuid}/folders", "folders", FolderEntry.from_dto
        )
        return [self._seen(entry) for entry in found]

    async def list_files(self, folder_uuid: str) -> list[FileEntry]:
        """Every file in ``folder_uuid`` (all pages, status EXISTS)."""
        found = await self._list_all(
            f"/folders/content/{folder_uuid}/files", "files", FileEntry.from_dto
        )
        return [self._seen(entry) for entry in found]

    # --- metadata and existence -------------------------------------------------------------

    async def file_meta(
        self, uuid: str, *, stale: Callable[[FileEntry], bool] | None = None, patient: bool = True
    ) -> FileEntry:
        """A file's record, whatever its status (check ``.status == "EXISTS"``). ``stale``:
        an answer that contradicts what we wrote, asked again while a read replica may lag
        (``patient=False``: asked once)."""

        async def attempt() -> FileEntry:
            return FileEntry.from_dto(await self._call("GET", f"/files/{uuid}/meta", record=True))

        entry = await self.read_lag.settle(
            attempt, what=f"meta of file {uuid}", errors=(NotFound,), stale=stale, patient=patient
        )
        return self._seen(entry)

    async def folder_meta(
        self,
        uuid: str,
        *,
        stale: Callable[[FolderEntry], bool] | None = None,
        patient: bool = True,
    ) -> FolderEntry:
        """A folder's record; ``stale`` as for :meth:`file_meta`."""

        async def attempt() -> FolderEntry:
            return FolderEntry.from_dto(
                await self._call("GET", f"/folders/{uuid}/meta", record=True)
            )

        entry = await self.read_lag.settle(
            attempt,
            what=f"meta of folder {uuid}",
            errors=(NotFound,),
            stale=stale,
            patient=patient,
        )
        return self._seen(entry)

    async def files_exist(
        self,
        folder_uuid: str,
        names: Iterable[str],
        *,
        stale: Callable[[list[FileEntry]], bool] | None = None,
    ) -> list[FileEntry]:
        """The files of ``folder_uuid`` whose full name is one of ``names``. ``stale``: an
        answer that may predate our own write (e.g. empty right after our create), asked again
        while a read replica may lag, as for :meth:`file_meta`."""
        wanted = list(names)

        async def attempt() -> list[FileEntry]:
            return await self._existing(
                f"/folders/content/{folder_uuid}/files/existence",
                wanted,
                lambda batch: {
                    "files": [
                        dict(zip(("plainName", "type"), split_name(n), strict=True)) for n in batch
                    ]
                },
                "existentFiles",
                FileEntry.from_dto,
            )

        if stale is None:
            return await attempt()
        return await self.read_lag.settle(
            attempt, what=f"existence of {', '.join(map(repr, wanted))}", stale=stale
        )

    async def folders_exist(self, folder_uuid: str, names: Iterable[str]) -> list[FolderEntry]:
        """The sub-folders of ``folder_uuid`` named one of ``names``."""
        return await self._existing(
            f"/folders/content/{folder_uuid}/folders/existence",
            names,
            lambda batch: {"plainNames": batch},
            "existentFolders",
            FolderEntry.from_dto,
        )

    async def _existing(
        self,
        path: str,
        names: Iterable[str],
        body_for: Callable[[list[str]], dict[str, Any]],
        answer_key: str,
        parse: Callable[[dict[str, Any]], E],
    ) -> list[E]:
        """Existence checks in batches the server accepts, filtered by exact full name: for
        files an empty type matches any extension server-side."""
        wanted = list(dict.fromkeys(names))
        found: list[E] = []
        for start in range(0, len(wanted), EXISTENCE_BATCH):
            batch = wanted[start : start + EXISTENCE_BATCH]
            try:
                body = await self._call("POST", path, json=body_for(batch), expected=(200, 201))
            except RequestRejected as exc:
                # The folder itself is looked up first, on a read replica: one we created a
                # moment ago is 404 for files and 400 "Parent folder not valid" for folders
                # (docs/protocol.md, "Read replicas"). Either way the folder is not there (yet).
                if exc.status == 400 and "parent folder not valid" in str(exc).lower():
                    raise NotFound(str(exc), status=404, body=exc.body) from exc
                raise
            items = body.get(answer_key) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise ProtocolError(f"existence answer lacks {answer_key!r}")
            names_set = set(batch)
            found.extend(e for e in map(parse, items) if e.name in names_set and e.status == EXISTS)
        return _dedupe(found)

    # --- folders ----------------------------------------------------------------------------

    async def create_folder(
        self,
        parent_uuid: str,
        name: str,
        *,
        ctime: float | None = None,
        mtime: float | None = None,
    ) -> FolderEntry:
        """``POST /folders``; 409 → :class:`Conflict` (a folder of that name exists)."""
        check_name(name, folder=True)
        body: dict[str, Any] = {"plainName": name, "parentFolderUuid": parent_uuid}
        if ctime is not None:
            body["creationTime"] = format_time(ctime)
        if mtime is not None:
            body["modificationTime"] = format_time(mtime)

        async def recover(patient: bool) -> FolderEntry | None:
            # Did our attempt land? "No" may be a replica that has not seen it yet.
            hits = await self.read_lag.settle(
                lambda: self.folders_exist(parent_uuid, [name]),
                what=f"existence of folder {name!r}",
                stale=lambda found: not found,
                patient=patient,
            )
            return hits[0] if hits else None

        # NotFound: a parent created a moment ago; Conflict: a name freed a moment ago.
        dto = await self.read_lag.settle(
            lambda: self._call(
                "POST",
                "/folders",
                json=body,
                expected=(200, 201),
                recover=recover,
                what=f"create folder {name!r}",
                touches=(parent_uuid,),
            ),
            what=f"create folder {name!r}",
        )
        return self._seen(dto if isinstance(dto, FolderEntry) else FolderEntry.from_dto(dto))

    async def rename_folder(self, uuid: str, new_name: str) -> FolderEntry:
        check_name(new_name, folder=True)

        async def recover(patient: bool) -> FolderEntry | None:
            meta = await self.folder_meta(uuid, stale=lambda m: m.name != new_name, patient=patient)
            return meta if meta.name == new_name else None

        dto = await self.read_lag.settle(
            lambda: self._call(
                "PUT",
                f"/folders/{uuid}/meta",
                json={"plainName": new_name},
                recover=recover,
                touches=(self._parent(uuid),),
                entry=uuid,
            ),
            what=f"rename folder {uuid}",
        )
        return self._seen(dto if isinstance(dto, FolderEntry) else FolderEntry.from_dto(dto))

    async def move_folder(
        self, uuid: str, dest_folder_uuid: str, new_name: str | None = None
    ) -> FolderEntry:
        """Move (and optionally rename) a folder: ``PATCH /folders/{uuid}``."""
        body: dict[str, Any] = {"destinationFolder": dest_folder_uuid}
        if new_name is not None:
            check_name(new_name, folder=True)
            body["name"] = new_name

        def landed(meta: FolderEntry) -> bool:
            where_ok = meta.parent_uuid == dest_folder_uuid and new_name in (None, meta.name)
            return where_ok and meta.status == EXISTS  # a trashed folder was not moved there

        async def recover(patient: bool) -> FolderEntry | None:
            meta = await self.folder_meta(uuid, stale=lambda m: not landed(m), patient=patient)
            return meta if landed(meta) else None

        dto = await self.read_lag.settle(
            lambda: self._move(
                uuid,
                lambda: self._call(
                    "PATCH",
                    f"/folders/{uuid}",
                    json=body,
                    recover=recover,
                    touches=(self._parent(uuid), dest_folder_uuid),
                    entry=uuid,
                ),
                recover,
            ),
            what=f"move folder {uuid}",
        )
        return self._seen(dto if isinstance(dto, FolderEntry) else FolderEntry.from_dto(dto))

    async def delete_folder(self, uuid: str) -> None:
        """Permanent delete of a folder and everything under it (``204``)."""

        async def recover(patient: bool) -> bool | None:
            # "Still there" is taken as it comes: a delete sent again after it had landed is
            # a 404, which the retries below take for "done" once it holds past the window.
            # "Not found" may be a replica behind the entry's creation, and is asked again.
            try:
                meta = await self.folder_meta(uuid)
            except NotFound:
                return True
            return True if meta.status != EXISTS else None

        # NotFound for a folder created a moment ago: the folder would stay.
        await self.read_lag.settle(
            lambda: self._call(
                "DELETE",
                f"/folders/{uuid}",
                expected=(204,),
                recover=recover,
                touches=(self._parent(uuid),),
                entry=uuid,
            ),
            what=f"delete folder {uuid}",
            errors=(NotFound,),
        )
        self.read_lag.deleted((uuid,))

    # --- files ------------------------------------------------------------------------------

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
        """Publish a file entry (``POST /files``, 201). ``file_id`` is None iff ``size`` is 0."""
        check_name(name, folder=False)
        if (file_id is None) != (size == 0):
            raise ValueError("file_id must be given exactly when size > 0")
        plain, ext = split_name(name)
        body: dict[str, Any] = {
            "plainName": plain,
            "type": ext,
            "size": size,
            "bucket": self._sessions.session.bucket,
            "folderUuid": folder_uuid,
            "encryptVersion": ENCRYPT_VERSION,
        }
        if file_id is not None:
            body["fileId"] = file_id
        if ctime is not None:
            body["creationTime"] = format_time(ctime)
            body["date"] = format_time(ctime)
        if mtime is not None:
            body["modificationTime"] = format_time(mtime)

        def ours(found: list[FileEntry]) -> FileEntry | None:
            # Adopt only the entry our own attempt made: same name, same network object.
            for entry in found:
                if entry.file_id == file_id and entry.size == size:
                    return entry
            return None

        async def recover(patient: bool) -> FileEntry | None:
            found = await self.read_lag.settle(
                lambda: self.files_exist(folder_uuid, [name]),
                what=f"existence of file {name!r}",
                stale=lambda found: ours(found) is None,
                patient=patient,
            )
            return ours(found)

        # NotFound: a folder created a moment ago (the uploader would move the file to the
        # recovery folder); Conflict: a name freed a moment ago (it would keep both).
        dto = await self.read_lag.settle(
            lambda: self._call(
                "POST",
                "/files",
                json=body,
                expected=(200, 201),
                recover=recover,
                what=f"create file {name!r}",
                touches=(folder_uuid,),
            ),
            what=f"create file {name!r}",
        )
        return self._seen(dto if isinstance(dto, FileEntry) else FileEntry.from_dto(dto))

    async def replace_file(
        self, uuid: str, file_id: str, size: int, *, mtime: float | None = None
    ) -> FileEntry:
        """Point an existing entry at new, non-empty content (``PUT /files/{uuid}``).

        Never to empty content: Internxt then keeps the entry's old fileId and deletes its
        object (docs/protocol.md, "Replace to empty"), so a later meta shows an id that looks
        like someone else's change. Callers delete the entry and create an empty one instead."""
        if file_id is None or size <= 0:
            raise ValueError("the server cannot replace a file's content with empty content")
        body: dict[str, Any] = {"size": size, "fileId": file_id}
        if mtime is not None:
            body["modificationTime"] = format_time(mtime)

        def landed(meta: FileEntry) -> bool:
            return meta.file_id == file_id and meta.size == size

        async def recover(patient: bool) -> FileEntry | None:
            meta = await self.file_meta(uuid, stale=lambda m: not landed(m), patient=patient)
            return meta if landed(meta) else None

        try:
            dto = await self.read_lag.settle(
                lambda: self._call(
                    "PUT",
                    f"/files/{uuid}",
                    json=body,
                    recover=recover,
                    touches=(self._parent(uuid),),
                    entry=uuid,
                ),
                what=f"replace file {uuid}",
                errors=(NotFound,),
            )
        except RequestRejected as exc:
            # 400 "DELETED (or TRASHED) files can not be replaced" (replaceFile in
            # file.usecase.ts): the entry went elsewhere, as with a 404. A lagging replica
            # may have shown it as existing a moment before.
            if exc.status == 400 and "can not be replaced" in str(exc):
                raise NotFound(str(exc), status=404, body=exc.body) from exc
            raise
        return self._seen(dto if isinstance(dto, FileEntry) else FileEntry.from_dto(dto))

    async def rename_file(self, uuid: str, new_name: str) -> FileEntry:
        """Rename in place (``PUT /files/{uuid}/meta``); 409 → :class:`Conflict`."""
        check_name(new_name, folder=False)
        plain, ext = split_name(new_name)

        async def recover(patient: bool) -> FileEntry | None:
            meta = await self.file_meta(uuid, stale=lambda m: m.name != new_name, patient=patient)
            return meta if meta.name == new_name else None

        dto = await self.read_lag.settle(
            lambda: self._call(
                "PUT",
                f"/files/{uuid}/meta",
                json={"plainName": plain, "type": ext},
                recover=recover,
                touches=(self._parent(uuid),),
                entry=uuid,
            ),
            what=f"rename file {uuid}",
        )
        return self._seen(dto if isinstance(dto, FileEntry) else FileEntry.from_dto(dto))

    async def move_file(self, uuid: str, dest_folder_uuid: str, new_name: str) -> FileEntry:
        """Move and rename (``PATCH /files/{uuid}``). Both name and type are always sent, so
        a target without extension really drops the old one (protocol §7.4)."""
        check_name(new_name, folder=False)
        plain, ext = split_name(new_name)

        def landed(meta: FileEntry) -> bool:
            where = (meta.folder_uuid, meta.name)
            return where == (dest_folder_uuid, new_name) and meta.status == EXISTS

        async def recover(patient: bool) -> FileEntry | None:
            meta = await self.file_meta(uuid, stale=lambda m: not landed(m), patient=patient)
            return meta if landed(meta) else None

        # Conflict: the replica still holds an entry we moved away from that name a moment ago
        # (a rename over a file moves the old one aside first). Unprocessable: the replica does
        # not show the file, or the destination, we created a moment ago (422 "can not be
        # moved", docs/protocol.md "Read replicas").
        dto = await self.read_lag.settle(
            lambda: self._move(
                uuid,
                lambda: self._call(
                    "PATCH",
                    f"/files/{uuid}",
                    json={"destinationFolder": dest_folder_uuid, "name": plain, "type": ext},
                    recover=recover,
                    touches=(self._parent(uuid), dest_folder_uuid),
                    entry=uuid,
                ),
                recover,
            ),
            what=f"move file {uuid}",
            errors=(NotFound, Conflict, Unprocessable),
        )
        return self._seen(dto if isinstance(dto, FileEntry) else FileEntry.from_dto(dto))

    async def delete_file(self, uuid: str) -> None:
        """Permanent delete (``DELETE /files/{uuid}``, 200); no trash."""

        async def recover(patient: bool) -> bool | None:
            # "Still there" is taken as it comes: a delete sent again after it had landed is
            # a 404, which the retries below take for "done" once it holds past the window.
            # "Not found" may be a replica behind the entry's creation, and is asked again.
            try:
                meta = await self.file_meta(uuid)
            except NotFound:
                return True
            return True if meta.status != EXISTS else None

        await self.read_lag.settle(
            lambda: self._call(
                "DELETE",
                f"/files/{uuid}",
                expected=(200,),
                recover=recover,
                touches=(self._parent(uuid),),
                entry=uuid,
            ),
            what=f"delete file {uuid}",
            errors=(NotFound,),
        )
        self.read_lag.deleted((uuid,))

    async def trash(self, items: Iterable[tuple[str, Literal["file", "folder"]]]) -> None:
        """Soft delete: move files/folders to the trash (``POST /storage/trash/add``)."""
        items = list(items)
        # The server looks trashed folders up on a read replica and skips, without a word,
        # one it does not show yet (docs/protocol.md, "Read replicas"): a folder we created
        # or moved a moment ago is trashed once replicas have caught up with that write.
        await self.read_lag.wait_settled(uuid for uuid, kind in items if kind == "folder")
        payload = [{"uuid": uuid, "type": kind} for uuid, kind in items]
        for start in range(0, len(payload), TRASH_BATCH):
            batch = payload[start : start + TRASH_BATCH]
            # Trashing an item twice is harmless: a resent batch needs no recover hook.
            await self._call(
                "POST",
                "/storage/trash/add",
                json={"items": batch},
                expected=(200, 201),
                touches=[self._parent(p["uuid"]) for p in batch],
            )
            self.read_lag.wrote((), [p["uuid"] for p in batch])
            self.read_lag.deleted(p["uuid"] for p in batch)

    # --- account ----------------------------------------------------------------------------

    async def usage(self) -> int:
        """Bytes counted against the quota: the usage ``total`` (drive, backups, mail ...),
        which the server compares with the limit; ``drive`` alone overstates the free space
        (docs/protocol.md, "Usage"). Servers without ``total`` give ``drive``."""
        body = await self._call("GET", "/users/usage")
        if not isinstance(body, dict):
            raise ProtocolError("usage answer is not an object")
        total = body.get("total")
        return _int(total if total is not None else body.get("drive"), "usage")

    async def limit(self) -> int:
        """The account's storage quota in bytes."""
        body = await self._call("GET", "/users/limit")
        return _int(body.get("maxSpaceBytes") if isinstance(body, dict) else None, "limit")

    async def file_limits(self) -> int | None:
        """The plan's per-file upload cap in bytes, ``None`` when there is none."""
        body = await self._call("GET", "/files/limits")
        value = body.get("maxUploadFileSize") if isinstance(body, dict) else None
        if value is None:
            return None
        cap = _int(value, "maxUploadFileSize")
        return cap if cap > 0 else None
