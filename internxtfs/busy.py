"""What keeps a mount busy, and an unmount that respects it (``internxtfs umount``).

umount(8) and ``fusermount3 -u`` refuse a mount while a process has a file open in it or works
inside it ("target is busy"); ``internxtfs umount`` does the same and names what holds it. The
names come from /proc (open descriptors, working and root directories, mapped files), read with
readlink only: that never reaches the mount, so the daemon can scan while it serves. The kernel
stays the judge: the unmount itself is ``fusermount3 -u`` without ``-z``, which fails with EBUSY
when something holds the mount, also when /proc did not show it (another user's process).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from internxtfs.fs.inodes import ROOT_INODE, InodeTable, Node

DELETED = " (deleted)"


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    what: str  # "open file", "working directory", "root directory", "mapped file"
    path: str

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "command": self.command, "what": self.what, "path": self.path}


def _inside(target: str, mountpoint: str) -> bool:
    target = target.removesuffix(DELETED)
    return target == mountpoint or target.startswith(mountpoint.rstrip("/") + "/")


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # gone meanwhile, or another user's process
        return None


def _mapped_paths(pid: int) -> Iterable[str]:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            for line in fh:
                # address perms offset dev inode [path]; the path may hold spaces
                fields = line.rstrip("\n").split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    yield fields[5]
    except OSError:
        return


def holders(mountpoint: str, exclude: Iterable[int] = ()) -> list[Holder]:
    """Processes with something inside ``mountpoint`` (an absolute, resolved path)."""
    skip = set(exclude)
    found: list[Holder] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        pid = int(entry.name)
        base = f"/proc/{pid}"
        try:
            with open(f"{base}/comm") as fh:
                command = fh.read().strip()
        except OSError:
            continue  # exited meanwhile
        links: list[tuple[str, str | None]] = [
            ("working directory", _readlink(f"{base}/cwd")),
            ("root directory", _readlink(f"{base}/root")),
        ]
        try:
            fds = os.listdir(f"{base}/fd")
        except OSError:
            fds = []
        links += [("open file", _readlink(f"{base}/fd/{fd}")) for fd in fds]
        links += [("mapped file", path) for path in _mapped_paths(pid)]
        seen: set[str] = set()
        for what, target in links:
            if target is not None and _inside(target, mountpoint) and target not in seen:
                seen.add(target)
                found.append(Holder(pid, command, what, target))
    return found


def open_paths(table: InodeTable, nodes: Iterable[Node], mountpoint: str) -> list[str]:
    """Where the files and folders open through the mount are, from its own handle table: names
    what holds the mount when /proc shows no process (another user's, with allow_other)."""
    paths = set()
    for node in nodes:
        parts = [node.name]
        parent = table.get(node.parent)
        while parent is not None and parent.ino != ROOT_INODE:
            parts.append(parent.name)
            parent = table.get(parent.parent)
        path = os.path.join(mountpoint, *reversed(parts)) if node.ino != ROOT_INODE else mountpoint
        paths.add(path + (DELETED if node.unlinked else ""))
    return sorted(paths)


async def detach(mountpoint: str) -> str | None:
    """Unmount unless busy (the kernel decides, as for umount(8)); None when done, else why not.

    Runs while the mount serves: the unmount itself needs no answer from us.
    """
    # root mounts without fusermount3 (libfuse calls mount(2) itself), so it may be missing
    # there; umount(8) unmounts a FUSE mount for root just as well.
    command = ["fusermount3", "-u"] if shutil.which("fusermount3") else ["umount"]
    done = await trio.run_process(
        [*command, mountpoint], check=False, capture_stdout=True, capture_stderr=True
    )
    if done.returncode == 0:
        return None
    return done.stderr.decode(errors="replace").strip() or f"{command[0]} exit {done.returncode}"


def busy_answer(
    mountpoint: str, found: list[Holder], open_files: list[str], why: str | None = None
) -> dict[str, object]:
    """The control answer of a refused ``umount`` (the mount goes on serving)."""
    return {
        "done": True,
        "busy": True,
        "mountpoint": mountpoint,
        "holders": [h.as_dict() for h in found],
        "open_files": open_files,
        "refused": why,
    }


def describe(answer: dict[str, object]) -> list[str]:
    """The lines ``internxtfs umount`` prints for a refused unmount."""
    lines = [f"{answer['mountpoint']} is busy; not unmounted, the mount keeps serving"]
    holders_ = answer.get("holders") or []
    assert isinstance(holders_, list)
    for h in holders_:
        lines.append(f"  pid {h['pid']} ({h['command']}): {h['what']} {h['path']}")
    named = {h["path"] for h in holders_}
    open_files = answer.get("open_files") or []
    assert isinstance(open_files, list)
    for path in open_files:
        if path not in named:
            lines.append(f"  open through the mount: {path}")
    if not holders_ and not open_files and answer.get("refused"):
        lines.append(f"  {answer['refused']}")
    lines.append(
        "Close these files (or stop the processes) and run umount again; "
        "`internxtfs umount --lazy` detaches anyway, and processes still using the mount "
        'then get "Transport endpoint is not connected".'
    )
    return lines
