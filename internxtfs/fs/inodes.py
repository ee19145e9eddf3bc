"""The inode table: kernel inode numbers ⇄ Internxt folders and files.

Inode numbers stay stable for the life of the mount: a remote uuid always maps to the inode it got
first, and a file this mount created before it exists remotely keeps its inode when the upload
gives it a uuid. They stay stable across remounts on the same cache too: the metadata cache
(journal ``entries``) keeps each uuid's number, and :meth:`InodeTable.remember` hands them out
again, so ``git status``, restic and rsync see the same files as before (issue 9).

Lookup counts follow the kernel's (lookup/create/mkdir add one, forget subtracts), and a node
is dropped only when the kernel has forgotten it and no directory listing holds it.

Shared state: the table is touched only from trio tasks of the one filesystem; every method is
synchronous, so each call is atomic under trio's scheduling and needs no lock.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field

import pyfuse3

ROOT_INODE = pyfuse3.ROOT_INODE


@dataclass
class Node:
    ino: int
    is_dir: bool
    parent: int
    name: str
    uuid: str | None = None  # folder uuid, or file uuid once the file exists remotely
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    atime_ns: int = 0
    file_id: str | None = None  # network object holding the remote content (files)
    local_id: int | None = None  # journal record, for files with local state
    lookups: int = 0
    open_handles: int = 0
    unlinked: bool = False  # removed from its directory while still open or looked up
    # A directory's mtime set here (utimensat, or a change of its entries): Internxt has no
    # call to store it, so listings from Internxt must not reset it (it lasts until unmount).
    mtime_pinned: bool = False
    # Another client replaced the content since the kernel may have cached pages of it: the
    # next open tells the kernel not to keep them (FileInfo.keep_cache).
    page_cache_stale: bool = False
    # A version another client replaced while it was open here: its name leads to a new
    # inode; this one serves its open descriptors only (see Filesystem._content_replaced).
    replaced: bool = False
    # A symbolic link (fs/links.py): a remote file NAME.rclonelink holding the target.
    is_link: bool = False
    link_target: bytes | None = field(default=None, repr=False)  # None until read
    # Children by name, for directories whose listing is loaded; None when never listed.
    children: dict[str, int] | None = field(default=None, repr=False)
    listed_at: float = 0.0

    @property
    def mode_type(self) -> int:
        if self.is_dir:
            return stat.S_IFDIR
        return stat.S_IFLNK if self.is_link else stat.S_IFREG


class InodeTable:
    def __init__(self, root_uuid: str, now_ns: int) -> None:
        self._nodes: dict[int, Node] = {}
        self._by_uuid: dict[str, int] = {}
        self._by_local: dict[int, int] = {}
        # Inode numbers of every uuid seen (also after the node is dropped), and those kept
        # from earlier mounts: a uuid seen again gets its number back.
        self._remembered: dict[str, int] = {root_uuid: ROOT_INODE}
        self._next = ROOT_INODE + 1
        root = Node(ROOT_INODE, True, ROOT_INODE, "", root_uuid)
        root.mtime_ns = root.ctime_ns = root.atime_ns = now_ns
        root.lookups = 1  # the kernel never forgets the root
        self._add(root)

    def _add(self, node: Node) -> Node:
        self._nodes[node.ino] = node
        if node.uuid:
            self._by_uuid[node.uuid] = node.ino
            self._remembered[node.uuid] = node.ino
        if node.local_id is not None:
            self._by_local[node.local_id] = node.ino
        return node

    def __contains__(self, ino: int) -> bool:
        return ino in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, ino: int) -> Node | None:
        return self._nodes.get(ino)

    def by_uuid(self, uuid: str) -> Node | None:
        ino = self._by_uuid.get(uuid)
        return None if ino is None else self._nodes.get(ino)

    def by_local(self, local_id: int) -> Node | None:
        ino = self._by_local.get(local_id)
        return None if ino is None else self._nodes.get(ino)

    def remember(self, inos: dict[str, int]) -> None:
        """Inode numbers of an earlier mount (uuid -> number): never given to anything else."""
        for uuid, ino in inos.items():
            self._remembered.setdefault(uuid, ino)
        self._next = max(self._next, max(inos.values(), default=0) + 1)

    def new_node(
        self, *, is_dir: bool, parent: int, name: str, uuid: str | None = None, **attrs: object
    ) -> Node:
        ino = None if uuid is None else self._remembered.get(uuid)
        if ino is None or ino in self._nodes:
            ino, self._next = self._next, self._next + 1
        node = Node(ino, is_dir, parent, name, uuid)
        for key, value in attrs.items():
            setattr(node, key, value)
        return self._add(node)

    def set_uuid(self, node: Node, uuid: str | None) -> None:
        if node.uuid and self._by_uuid.get(node.uuid) == node.ino:
            del self._by_uuid[node.uuid]
        node.uuid = uuid
        if uuid:
            self._by_uuid[uuid] = node.ino
            self._remembered[uuid] = node.ino

    def set_local(self, node: Node, local_id: int | None) -> None:
        if node.local_id is not None and self._by_local.get(node.local_id) == node.ino:
            del self._by_local[node.local_id]
        node.local_id = local_id
        if local_id is not None:
            self._by_local[local_id] = node.ino

    def forget(self, ino: int, count: int) -> Node | None:
        """Drop ``count`` kernel references; returns the node if it is now removable."""
        node = self._nodes.get(ino)
        if node is None or ino == ROOT_INODE:
            return None
        node.lookups = max(0, node.lookups - count)
        if (
            node.lookups == 0
            and node.open_handles == 0
            and (node.unlinked or not self._linked(node))
        ):
            self.remove(node)
            return node
        return None

    def _linked(self, node: Node) -> bool:
        parent = self._nodes.get(node.parent)
        return bool(parent and parent.children and parent.children.get(node.name) == node.ino)

    def remove(self, node: Node) -> None:
        self._nodes.pop(node.ino, None)
        if node.uuid and self._by_uuid.get(node.uuid) == node.ino:
            del self._by_uuid[node.uuid]
        if node.local_id is not None and self._by_local.get(node.local_id) == node.ino:
            del self._by_local[node.local_id]

    def unlink_child(self, parent: Node, name: str) -> Node | None:
        """Remove ``name`` from ``parent``'s listing; the node lives on while referenced."""
        if parent.children is None:
            return None
        ino = parent.children.pop(name, None)
        node = None if ino is None else self._nodes.get(ino)
        if node is not None:
            node.unlinked = True
            if node.uuid and self._by_uuid.get(node.uuid) == node.ino:
                del self._by_uuid[node.uuid]
            if node.lookups == 0 and node.open_handles == 0:
                self.remove(node)
        return node

    def move_child(self, old_parent: Node, old_name: str, new_parent: Node, new_name: str) -> None:
        """Rename: the same node under another name, identity (uuid, inode) unchanged."""
        if old_parent.children is None:
            return
        ino = old_parent.children.pop(old_name, None)
        node = None if ino is None else self._nodes.get(ino)
        if node is not None:
            self.link_child(new_parent, new_name, node)

    def link_child(self, parent: Node, name: str, node: Node) -> None:
        node.parent = parent.ino
        node.name = name
        node.unlinked = False
        if parent.children is not None:
            parent.children[name] = node.ino
