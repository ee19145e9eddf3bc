"""Folder listings and attributes: remote state cached with a TTL, merged with local state.

A directory's children come from three places, in this order of authority:
1. what this mount changed itself (mkdir, create, rename, unlink update the cached listing at
   once, so restic sees its lock file 200 ms after writing it);
2. files with unsent local content (journal records): their size and mtime are the local ones
   until the upload is done, and files never uploaded are listed from the journal alone;
3. the remote listing, fetched again when older than ``ttl`` seconds, for changes made elsewhere.

Shared state: ``Node.children``/``listed_at`` of directory nodes. A listing fetch awaits the
network; a per-directory trio.Lock makes concurrent lookups share one fetch, and a per-directory
mutation counter makes a fetch that raced with a local change discard its (stale) result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import trio

from internxtfs.fs.inodes import InodeTable, Node

log = logging.getLogger(__name__)


class DriveListing(Protocol):
    async def list_folders(self, folder_uuid: str) -> list[Any]: ...
    async def list_files(self, folder_uuid: str) -> list[Any]: ...


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * 1000) * 1_000_000


def same_millisecond(ns: int, seconds: float) -> bool:
    """Internxt keeps times to the millisecond; a local ns time matching it is the same time."""
    return ns // 1_000_000 == round(seconds * 1000)


class Metadata:
    def __init__(
        self,
        drive: DriveListing,
        table: InodeTable,
        journal: Any,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drive = drive
        self.table = table
        self.journal = journal
        self.ttl = ttl
        self.clock = clock
        self._locks: dict[int, trio.Lock] = {}
        self._mutations: dict[int, int] = {}

    def touch(self, dir_node: Node) -> None:
        """Record a local change of ``dir_node``'s entries (invalidates in-flight fetches)."""
        self._mutations[dir_node.ino] = self._mutations.get(dir_node.ino, 0) + 1

    def invalidate(self, dir_node: Node) -> None:
        dir_node.listed_at = 0.0

    def is_fresh(self, dir_node: Node) -> bool:
        return dir_node.children is not None and self.clock() - dir_node.listed_at < self.ttl

    async def children(self, dir_node: Node) -> dict[str, int]:
        if self.is_fresh(dir_node):
            assert dir_node.children is not None
            return dir_node.children
        lock = self._locks.setdefault(dir_node.ino, trio.Lock())
        async with lock:
            if not self.is_fresh(dir_node):
                await self._refresh(dir_node)
        assert dir_node.children is not None
        return dir_node.children

    async def lookup(self, dir_node: Node, name: str) -> Node | None:
        children = await self.children(dir_node)
        ino = children.get(name)
        return None if ino is None else self.table.get(ino)

    async def _refresh(self, dir_node: Node) -> None:
        assert dir_node.uuid is not None
        before = self._mutations.get(dir_node.ino, 0)
        started = self.clock()
        folders: list[Any] = []
        files: list[Any] = []

        async def get_folders() -> None:
            folders.extend(await self.drive.list_folders(dir_node.uuid))  # type: ignore[arg-type]

        async def get_files() -> None:
            files.extend(await self.drive.list_files(dir_node.uuid))  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get_folders)
            nursery.start_soon(get_files)

        if dir_node.children is not None and self._mutations.get(dir_node.ino, 0) != before:
            # We changed this directory while the listing was in flight: our own view is newer.
            # Keep it and try the remote again on the next access.
            log.debug("listing of %s raced a local change; keeping local view", dir_node.uuid)
            return
        dir_node.children = self._merge(dir_node, folders, files)
        dir_node.listed_at = started

    def _merge(self, dir_node: Node, folders: list[Any], files: list[Any]) -> dict[str, int]:
        children: dict[str, int] = {}
        for entry in folders:
            node = self.table.by_uuid(entry.uuid)
            if node is None:
                node = self.table.new_node(is_dir=True, parent=dir_node.ino, name=entry.name)
                self.table.set_uuid(node, entry.uuid)
            node.parent, node.name = dir_node.ino, entry.name
            _apply_times(node, entry)
            children[entry.name] = node.ino

        local_by_remote, pending_here = self._local_records(dir_node)
        for entry in files:
            record = local_by_remote.get(entry.uuid)
            if record is not None and record.deleted:
                continue
            if entry.name in children:
                log.warning(
                    "folder %s has a file and a folder both named %r; showing the folder",
                    dir_node.uuid,
                    entry.name,
                )
                continue
            # A file this mount created keeps the inode it had before its upload gave it a uuid.
            node = None if record is None else self.table.by_local(record.local_id)
            if node is None:
                node = self.table.by_uuid(entry.uuid)
            if node is None:
                node = self.table.new_node(is_dir=False, parent=dir_node.ino, name=entry.name)
            if node.uuid != entry.uuid:
                self.table.set_uuid(node, entry.uuid)
            node.parent, node.name = dir_node.ino, entry.name
            if record is not None and node.local_id is None:
                self.table.set_local(node, record.local_id)
            if record is not None and record.dirty:
                node.size = record.size  # local content not uploaded yet wins
                node.mtime_ns = record.mtime_ns or node.mtime_ns
            else:
                node.size = entry.size
                node.file_id = entry.file_id
                _apply_times(node, entry)
            children[entry.name] = node.ino

        for record in pending_here:
            if record.name in children:
                # A remote entry with the name of a file we have not uploaded yet: ours is newer.
                log.info("local new file %r hides a remote entry until it is uploaded", record.name)
            node = self.table.by_local(record.local_id)
            if node is None:
                node = self.table.new_node(
                    is_dir=False,
                    parent=dir_node.ino,
                    name=record.name,
                    size=record.size,
                    mtime_ns=record.mtime_ns,
                    ctime_ns=record.mtime_ns,
                    atime_ns=record.mtime_ns,
                )
                self.table.set_local(node, record.local_id)
            children[record.name] = node.ino
        return children

    def _local_records(self, dir_node: Node) -> tuple[dict[str, Any], list[Any]]:
        by_remote: dict[str, Any] = {}
        pending: list[Any] = []
        for record in self.journal.all_files():
            if record.remote_uuid:
                by_remote[record.remote_uuid] = record
            elif record.parent_uuid == dir_node.uuid and not record.deleted:
                pending.append(record)
        return by_remote, pending


def _apply_times(node: Node, entry: Any) -> None:
    modified = float(entry.modified)
    created = float(entry.created)
    if not same_millisecond(node.mtime_ns, modified):
        node.mtime_ns = seconds_to_ns(modified)
    if not same_millisecond(node.ctime_ns, created):
        node.ctime_ns = seconds_to_ns(created)
    if node.atime_ns == 0:
        node.atime_ns = node.mtime_ns
