"""Owners and permission bits, kept by this mount only (Internxt stores none).

Each entry may have a row in the journal's ``owners`` table (mode bits, uid, gid; a missing
value means "the mount default": ``-o uid=, gid=, umask=``). A row is written when the mount
creates an entry (the creating process's uid/gid and the mode it asked for, already reduced by
its umask by the kernel) or when ``chmod``/``chown`` changes one. Entries never touched here keep
showing the mount defaults, as before.

The kernel enforces the bits (the mount passes ``default_permissions``), so the handlers only
have to report them truthfully; :meth:`Ownership.change` repeats the POSIX rules for chmod and
chown anyway, because a request can reach us without the kernel's checks (e.g. from a test
harness calling the handler directly).

Rows are keyed by the entry's remote uuid, or by ``local:<local_id>`` for a file not published
yet (or whose remote entry is gone); the journal moves the row whenever a record's remote_uuid
changes (Journal.update), and drops the local one with the record. Other
clients and other cache directories never see these rows (docs/semantics.md).
"""

from __future__ import annotations

import dataclasses
import errno
import stat
from typing import Any

import pyfuse3

from internxtfs.fs.inodes import Node
from internxtfs.fs.journal import Journal, Owner, local_owner_key

PERMISSION_BITS = 0o7777


class Ownership:
    def __init__(self, journal: Journal, options: Any) -> None:
        self.journal = journal
        self.options = options  # MountOptions: uid, gid, umask

    def key(self, node: Node) -> str | None:
        """The ``owners`` key of ``node`` (None: an entry that cannot have one)."""
        if node.local_id is not None:
            # A file's record is the truth: the uploader changes its remote_uuid (and the
            # journal moves the row with it) before the node learns its new uuid.
            record = self.journal.get(node.local_id)
            if record is not None:
                return record.remote_uuid or local_owner_key(node.local_id)
        return node.uuid

    def _owner(self, node: Node) -> Owner | None:
        key = self.key(node)
        return None if key is None else self.journal.owner(key)

    def default_mode(self, node: Node) -> int:
        return (0o777 if node.is_dir else 0o666) & ~self.options.umask

    def resolve(self, node: Node) -> tuple[int, int, int]:
        """(permission bits, uid, gid) to show for ``node``."""
        owner = self._owner(node)
        if owner is None:
            return self.default_mode(node), self.options.uid, self.options.gid
        return (
            self.default_mode(node) if owner.mode is None else owner.mode,
            self.options.uid if owner.uid is None else owner.uid,
            self.options.gid if owner.gid is None else owner.gid,
        )

    def created(self, node: Node, parent: Node, mode: int, ctx: Any) -> None:
        """Record the owner of an entry just created by the process of ``ctx``."""
        key = self.key(node)
        if key is None:
            return
        bits = mode & PERMISSION_BITS
        gid = ctx.gid
        parent_mode, _, parent_gid = self.resolve(parent)
        if parent_mode & stat.S_ISGID:
            # BSD group semantics of a setgid directory, as on ext4: the new entry takes the
            # directory's group, and a new subdirectory stays setgid.
            gid = parent_gid
            if node.is_dir:
                bits |= stat.S_ISGID
        self.journal.set_owner(key, Owner(bits, ctx.uid, gid))

    def change(self, node: Node, fields: Any, attr: Any, ctx: Any) -> None:
        """chmod/chown of ``node`` by the process of ``ctx``, under POSIX rules."""
        mode, uid, gid = self.resolve(node)
        caller = ctx.uid
        new_uid = attr.st_uid if fields.update_uid else uid
        new_gid = attr.st_gid if fields.update_gid else gid
        new_mode = attr.st_mode & PERMISSION_BITS if fields.update_mode else mode
        # The kernel itself asks to drop setuid/setgid when someone else writes the file (no
        # handle_killpriv): dropping privileges is allowed to anyone.
        drops_only = new_mode == mode & ~(stat.S_ISUID | stat.S_ISGID)
        if caller != 0:
            # Only root gives a file away; the owner may change its group (the kernel checks
            # membership of the new group: it knows the caller's groups, we do not).
            if new_uid != uid:
                raise pyfuse3.FUSEError(errno.EPERM)
            if caller != uid and (fields.update_gid or (fields.update_mode and not drops_only)):
                raise pyfuse3.FUSEError(errno.EPERM)
        if (new_uid != uid or new_gid != gid) and not node.is_dir and not fields.update_mode:
            # chown clears setuid, and setgid when it means "setgid" (group-executable), as
            # on ext4 (the kernel asks for this itself too, as a mode change).
            new_mode &= ~stat.S_ISUID
            if new_mode & stat.S_IXGRP:
                new_mode &= ~stat.S_ISGID
        key = self.key(node)
        if key is None:
            return
        owner = self.journal.owner(key) or Owner()
        self.journal.set_owner(
            key,
            dataclasses.replace(
                owner,
                mode=new_mode if fields.update_mode or new_mode != mode else owner.mode,
                uid=new_uid if fields.update_uid else owner.uid,
                gid=new_gid if fields.update_gid else owner.gid,
            ),
        )

    def folder_mtime(self, uuid: str) -> int | None:
        """The mtime this cache keeps for the folder ``uuid`` (None: Internxt's)."""
        owner = self.journal.owner(uuid)
        return None if owner is None else owner.mtime_ns

    def set_folder_mtime(self, node: Node, mtime_ns: int, *, only_if_kept: bool = False) -> None:
        """Keep a folder's mtime: Internxt cannot change it after the folder is created.
        ``only_if_kept``: a change of its entries, kept only for a folder whose time was set
        here (otherwise Internxt's time stands, and no journal write is spent on it)."""
        if not node.is_dir or node.uuid is None:
            return
        owner = self.journal.owner(node.uuid)
        if only_if_kept and (owner is None or owner.mtime_ns is None):
            return
        self.journal.set_owner(node.uuid, dataclasses.replace(owner or Owner(), mtime_ns=mtime_ns))

    def forget(self, node: Node) -> None:
        """The entry is gone: drop its row."""
        key = self.key(node)
        if key is not None:
            self.journal.set_owner(key, None)
