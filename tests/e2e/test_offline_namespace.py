"""Offline-first, the namespace (issue 9 item 2): mkdir, rename and rmdir with Internxt down.

They succeed locally, are journaled in order (fs/pending.py), survive kill -9 and a remount
while still offline, and are replayed once the server answers. The emulator process is stopped
(connections refused) and started again on the same data dir and port; every call on the mount
during the outage runs under ``bounded`` (the issue's 10 s). What ends up stored is read with
the protocol client, not through the mount (``tests/harness/remote.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_restic import Restic, make_tree
from tests.harness import remote
from tests.harness.durability import (
    bounded,
    flush_ok,
    local_tree,
    remount_after_crash,
    status,
    wait_for,
    wait_for_death,
    write_file,
)
from tests.harness.mounting import MountedFS, cli

CALL_BOUND = 10.0  # the issue: with the server down, no call takes longer than this
OUTAGE = 60.0  # the issue: the server is stopped for 60 s in the middle of rsync -a


def _call(fn: Any, what: str) -> Any:
    return bounded(fn, CALL_BOUND, what)


def _tree(root: Path) -> list[str]:
    """Every path under ``root``, folders with a trailing slash."""
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


def _source_tree(root: Path) -> dict[str, bytes]:
    files = {}
    for d in range(4):
        files[f"new{d}/big.bin"] = os.urandom(120_000)
        for f in range(5):
            files[f"new{d}/sub/deep/f{f}.bin"] = os.urandom(1000 + 3000 * f)
        files[f"new{d}/top.txt"] = f"folder {d}\n".encode() * 50
    files["loose.txt"] = b"at the top of the tree\n"
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    (root / "new0/empty").mkdir()
    return files


def test_rsync_of_new_folders_across_an_outage_is_stored_whole(new_mount: Any) -> None:
    """rsync -a of a tree of new folders across an outage: rsync exits 0, and the tree is
    stored byte-identical.

    rsync makes every folder of a tree this size in its first moments (it walks the whole
    file list before sending content), so for its mkdirs to meet the outage the server goes
    down just before rsync starts; it comes back in the middle of the copy, while rsync goes
    on creating files, renaming its temp files into place and setting times in the folders
    whose mkdirs are being replayed. The server stays down for the issue's full 60 s (the
    longest single test of the suite, but the outage the issue names); rsync is slowed
    (--bwlimit) so that it is still copying when the server comes back."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    write_file(mnt / "before.txt", b"stored before the outage")
    (mnt / "tree").mkdir()
    flush_ok(m)
    src = m.workdir / "src"
    src.mkdir()
    files = _source_tree(src)
    m.emulator.stop()
    down_at = time.monotonic()
    rsync: subprocess.Popen[str] | None = None
    try:
        time.sleep(1.5)  # past the listing TTL
        # About 80 s for the ~650 kB tree at 8 kB/s: it outlasts the outage.
        rsync = subprocess.Popen(
            ["rsync", "-a", "--bwlimit=8", f"{src}/", f"{mnt}/tree/"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # In the middle: the folders are made (queued), some content is copied, not all.
        wait_for("rsync under way", lambda: (mnt / "tree/new1/big.bin").exists(), 60)
        assert rsync.poll() is None, "rsync finished before the server came back"
        assert status(m)["uploads"]["namespace_queued"] > 0  # the mkdirs met the outage
        assert "new3/sub/deep/" in _call(lambda: _tree(mnt / "tree"), "ls -R")
        time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
        assert rsync.poll() is None, "rsync finished before the server came back"
    finally:
        m.emulator.start()  # same data dir and port
        if rsync is not None:
            out, _ = rsync.communicate(timeout=120)
    assert rsync.returncode == 0, out
    assert local_tree(mnt / "tree") == files
    flush_ok(m, timeout=120)
    stored = remote.snapshot(m.emulator, m.user)
    assert stored == {"before.txt": b"stored before the outage"} | {
        f"tree/{path}": content for path, content in files.items()
    }
    assert "tree/new0/empty" in remote.folders(m.emulator, m.user)
    assert status(m)["uploads"]["namespace_queued"] == 0
    log_text = m.log_file.read_text()
    assert "Traceback" not in log_text
    assert "recovered" not in log_text  # nothing went to the recovery folder


def test_queued_mkdir_rename_and_unlink_survive_kill_9_and_a_remount_offline(
    new_mount: Any,
) -> None:
    """kill -9 while offline with a queued mkdir, renames (a stored file into a new folder, a
    stored folder, a stored file over another, a new file over a stored one as git and rsync
    do) and an unlink, and an rmdir; mounted again, still offline: the tree shows as it was
    left. Server back, then flush: the remote tree equals the local one."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    (mnt / "docs").mkdir()
    (mnt / "old-empty").mkdir()
    write_file(mnt / "docs/a.txt", b"a" * 3000)
    write_file(mnt / "docs/gone.txt", b"to be unlinked")
    write_file(mnt / "docs/stays.txt", b"stays")
    write_file(mnt / "docs/b.txt", b"b, which replaces c")
    write_file(mnt / "docs/c.txt", b"c, replaced by b")
    flush_ok(m)

    m.emulator.stop()
    try:
        time.sleep(1.5)  # past the listing TTL
        _call(lambda: (mnt / "new/deeper").mkdir(parents=True), "mkdir -p")
        _call(lambda: write_file(mnt / "new/deeper/made.txt", b"made offline"), "write")
        _call(lambda: os.rename(mnt / "docs/a.txt", mnt / "new/a-moved.txt"), "mv file")
        _call(lambda: os.rename(mnt / "docs", mnt / "papers"), "mv folder")
        _call(lambda: os.unlink(mnt / "papers/gone.txt"), "rm")
        _call(lambda: os.rmdir(mnt / "old-empty"), "rmdir")
        _call(lambda: os.rename(mnt / "papers/b.txt", mnt / "papers/c.txt"), "mv over")
        _call(lambda: write_file(mnt / "papers/.stays.tmp", b"stays, edited"), "write tmp")
        _call(lambda: os.rename(mnt / "papers/.stays.tmp", mnt / "papers/stays.txt"), "tmp over")
        expected_tree = _call(lambda: _tree(mnt), "ls -R")
        expected_files = _call(lambda: local_tree(mnt), "read all")
        assert expected_tree == [
            "new/", "new/a-moved.txt", "new/deeper/", "new/deeper/made.txt",
            "papers/", "papers/c.txt", "papers/stays.txt",
        ]  # fmt: skip
        assert expected_files["papers/c.txt"] == b"b, which replaces c"
        assert expected_files["papers/stays.txt"] == b"stays, edited"
        m.kill()
        m.mount("--dir-cache-ttl", "1")  # still offline, after a crash
        assert _call(lambda: _tree(mnt), "ls -R after the crash") == expected_tree
        assert _call(lambda: local_tree(mnt), "read after the crash") == expected_files
        # mkdir new, mkdir new/deeper, three moves of stored entries, rmdir: still queued,
        # in status (unlinks are pending deletes of the uploader, not queued here).
        human = _call(lambda: cli("status", str(mnt), env=m.env).stdout, "status")
        assert "namespace changes queued: 6" in human, human
        time.sleep(1.5)
        assert _call(lambda: _tree(mnt), "ls -R later") == expected_tree
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    assert remote.snapshot(m.emulator, m.user) == expected_files
    assert remote.folders(m.emulator, m.user) == ["new", "new/deeper", "papers"]
    assert _tree(mnt) == expected_tree
    assert "Traceback" not in m.log_file.read_text()


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")
def test_restic_init_and_backup_with_the_server_down(new_mount: Any, tmp_path: Path) -> None:
    """restic init (a tree of 260 folders) and restic backup, both while the server is down,
    both succeed. Once it is back and `internxtfs flush` has returned, a fresh mount on an
    empty cache reads the repository from the server alone: restic check --read-data passes."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    src = tmp_path / "src"
    make_tree(src, seed=21, files=60)
    restic = Restic(str(m.mountpoint / "repo"), tmp_path, [], {})
    assert os.listdir(m.mountpoint) == []  # the mount has seen its root (what it knows)
    m.emulator.stop()
    try:
        restic("init", timeout=120)
        restic("backup", "--host", "e2e", ".", cwd=src, timeout=120)
        assert status(m)["uploads"]["namespace_queued"] > 0  # the outage was met, not missed
    finally:
        m.emulator.start()
    flush_ok(m, timeout=180)
    m.remount(cold=True)  # every read now comes from the server
    assert restic("snapshots", "--json").stdout.count('"short_id"') == 1
    restic("check", "--read-data")
    assert "Traceback" not in m.log_file.read_text()


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")
def test_restic_into_a_mount_started_offline_on_an_empty_cache(
    new_mount: Any, tmp_path: Path
) -> None:
    """As above, on a mount started with the server down on an empty cache: the root was
    never listed (a new machine, a reboot before the network). Before, init failed (EIO)."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    m.unmount()
    shutil.rmtree(m.cache_dir)
    src = tmp_path / "src"
    make_tree(src, seed=5, files=30)
    restic = Restic(str(m.mountpoint / "repo"), tmp_path, [], {})
    m.emulator.stop()
    try:
        m.mount("--dir-cache-ttl", "1")
        restic("init", timeout=120)
        restic("backup", "--host", "e2e", ".", cwd=src, timeout=120)
    finally:
        m.emulator.start()
    flush_ok(m, timeout=180)
    m.remount(cold=True)  # every read now comes from the server
    restic("check", "--read-data")
    assert "Traceback" not in m.log_file.read_text()


def test_a_mkdir_whose_answer_was_lost_then_rmdir_leaves_no_folder(new_mount: Any) -> None:
    """mkdir is carried out by the server but every answer is lost: the mount takes Internxt
    for unreachable and queues it. rmdir before the replay must be sent too: the folder that
    landed is adopted by the replay and removed (it stayed on the server for good, and came
    back in this mount at its next listing)."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    write_file(mnt / "before.txt", b"b")
    flush_ok(m)
    m.emulator.set_faults(lose_answer_rate=1.0)  # carried out, the answer never comes back
    try:
        _call(lambda: (mnt / "ghost").mkdir(), "mkdir")
        _call(lambda: os.rmdir(mnt / "ghost"), "rmdir")
    finally:
        m.emulator.set_faults(lose_answer_rate=0.0)
    flush_ok(m, timeout=120)
    assert remote.folders(m.emulator, m.user) == []
    assert sorted(os.listdir(mnt)) == ["before.txt"]


def _conflict_copy(names: list[str], stem: str, ext: str) -> str:
    [name] = [n for n in names if n.startswith(f"{stem} (internxtfs conflict ") and n.endswith(ext)]
    return name


def test_a_mount_started_offline_on_an_empty_cache_takes_new_files_and_keeps_both(
    new_mount: Any,
) -> None:
    """A mount started with the server down on an empty cache has never listed anything (a
    new user, a reboot with a new cache). cp and rsync into it work; the view shows what this
    mount made, and survives kill -9 and a remount still offline. Once the server answers,
    a name that was taken there keeps both versions (ours under a conflict name), a folder of
    that name is adopted, and nothing is lost. Before, every create was EIO."""
    seed: MountedFS = new_mount(name="seed")
    write_file(seed.mountpoint / "taken.txt", b"theirs, stored before")
    (seed.mountpoint / "backup").mkdir()
    write_file(seed.mountpoint / "backup/old.bin", b"their old version" * 100)
    flush_ok(seed)
    seed.unmount()
    m: MountedFS = new_mount("--dir-cache-ttl", "1", user=seed.user)
    m.unmount()
    shutil.rmtree(m.cache_dir)
    src = m.workdir / "src"
    (src / "backup").mkdir(parents=True)
    (src / "taken.txt").write_bytes(b"ours, written offline")
    (src / "new.txt").write_bytes(b"new" * 1000)
    (src / "backup/old.bin").write_bytes(b"our version of old" * 100)
    (src / "backup/fresh.bin").write_bytes(os.urandom(50_000))
    mnt = m.mountpoint

    m.emulator.stop()
    try:
        m.mount("--dir-cache-ttl", "1")  # on an empty cache: nothing was ever listed
        assert _call(lambda: os.listdir(mnt), "ls of a root never listed") == []
        for name in ("taken.txt", "new.txt"):
            _call(lambda n=name: subprocess.run(["cp", src / n, mnt / n], check=True), f"cp {name}")
        done = _call(
            lambda: subprocess.run(
                ["rsync", "-a", f"{src}/backup", f"{mnt}/"], capture_output=True, text=True
            ),
            "rsync",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        expected = _call(lambda: local_tree(mnt), "read all")
        assert expected == {p: (src / p).read_bytes() for p in local_tree(src)}
        m.kill()
        m.mount("--dir-cache-ttl", "1")  # still offline, after a crash
        assert _call(lambda: local_tree(mnt), "read after the crash") == expected
        assert "never listed" in m.log_file.read_text()  # said once, not per request
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    stored = remote.snapshot(m.emulator, m.user)
    ours_top = _conflict_copy(list(stored), "taken", ".txt")
    ours_old = _conflict_copy(list(stored), "backup/old", ".bin")
    assert stored == {
        "taken.txt": b"theirs, stored before",
        ours_top: expected["taken.txt"],
        "new.txt": expected["new.txt"],
        "backup/old.bin": b"their old version" * 100,
        ours_old: expected["backup/old.bin"],
        "backup/fresh.bin": expected["backup/fresh.bin"],
    }
    assert remote.folders(m.emulator, m.user) == ["backup"]  # adopted, not a second one
    # The real listings merge in: the mount shows what the server holds.
    wait_for("the merged listing", lambda: local_tree(mnt) == stored, 30)
    assert "Traceback" not in m.log_file.read_text()


def test_rename_of_a_folder_over_an_empty_folder_offline(new_mount: Any) -> None:
    """mv over an empty folder (rename(2) of a folder onto an empty one) with the server down:
    it succeeds and is queued (an rmdir of the target, then the move); stored once the server
    is back. Before, EIO."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    (mnt / "draft/sub").mkdir(parents=True)
    write_file(mnt / "draft/sub/text.txt", b"the text")
    (mnt / "final").mkdir()
    flush_ok(m)
    assert _tree(mnt) == ["draft/", "draft/sub/", "draft/sub/text.txt", "final/"]
    m.emulator.stop()
    try:
        time.sleep(1.5)  # past the listing TTL
        _call(lambda: os.rename(mnt / "draft", mnt / "final"), "mv draft final")
        assert _call(lambda: _tree(mnt), "ls -R") == ["final/", "final/sub/", "final/sub/text.txt"]
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    assert remote.snapshot(m.emulator, m.user) == {"final/sub/text.txt": b"the text"}
    assert remote.folders(m.emulator, m.user) == ["final", "final/sub"]
    assert "Traceback" not in m.log_file.read_text()


def test_renames_over_that_meet_the_outage_are_queued(new_mount: Any) -> None:
    """The first calls after the server went away are renames over a stored file and over an
    empty stored folder: the mount does not know of the outage yet (its listings are fresh, so
    nothing asked Internxt since), and each call meets it. Nothing reached the server, so
    each is queued as when the outage was known. Before, both were EIO."""
    m: MountedFS = new_mount("--dir-cache-ttl", "600")
    mnt = m.mountpoint
    write_file(mnt / "doc.txt", b"old version")
    write_file(mnt / "doc.new", b"new version")
    (mnt / "draft").mkdir()
    write_file(mnt / "draft/text.txt", b"the text")
    (mnt / "final").mkdir()
    flush_ok(m)
    m.emulator.stop()
    try:
        _call(lambda: os.rename(mnt / "doc.new", mnt / "doc.txt"), "mv over a stored file")
        _call(lambda: os.rename(mnt / "draft", mnt / "final"), "mv over an empty folder")
        assert _call(lambda: local_tree(mnt), "read all") == {
            "doc.txt": b"new version",
            "final/text.txt": b"the text",
        }
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    assert remote.snapshot(m.emulator, m.user) == {
        "doc.txt": b"new version",
        "final/text.txt": b"the text",
    }
    assert remote.folders(m.emulator, m.user) == ["final"]
    assert "Traceback" not in m.log_file.read_text()


def test_rename_over_an_open_file_and_unlink_of_an_open_file_offline(new_mount: Any) -> None:
    """With the server down: a file renamed over a stored file that a process holds open (an
    editor's save), and a stored file removed while open. Both succeed; the descriptors go on
    reading the old content; the names hold the new files. Once the server is back and the
    descriptors are closed, it stores exactly the new files. Before, both were EIO."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    write_file(mnt / "doc.txt", b"version 1" * 100)
    write_file(mnt / "log.txt", b"old log" * 100)
    flush_ok(m)
    with open(mnt / "doc.txt", "rb") as doc, open(mnt / "log.txt", "rb") as log:
        assert doc.read() == b"version 1" * 100 and log.read() == b"old log" * 100
        m.emulator.stop()
        try:
            time.sleep(1.5)  # past the listing TTL
            _call(lambda: write_file(mnt / ".doc.txt.swp", b"version 2"), "write")
            _call(lambda: os.rename(mnt / ".doc.txt.swp", mnt / "doc.txt"), "mv over open file")
            _call(lambda: os.unlink(mnt / "log.txt"), "rm of an open file")
            _call(lambda: write_file(mnt / "log.txt", b"new log"), "write a new log")
            assert _call(lambda: local_tree(mnt), "read all") == {
                "doc.txt": b"version 2",
                "log.txt": b"new log",
            }
            doc.seek(0)
            log.seek(0)
            assert doc.read() == b"version 1" * 100 and log.read() == b"old log" * 100
        finally:
            m.emulator.start()
        wait_for("the queue sent", lambda: status(m)["uploads"]["namespace_queued"] == 0, 60)
        doc.seek(0)
        assert doc.read() == b"version 1" * 100  # still open: still the old version
    flush_ok(m, timeout=120)
    assert remote.snapshot(m.emulator, m.user) == {"doc.txt": b"version 2", "log.txt": b"new log"}
    assert "Traceback" not in m.log_file.read_text()


def test_symlinks_into_a_folder_made_offline_survive_kill_9(new_mount: Any) -> None:
    """ln -s and rsync -a of a tree with a link, into a folder made with the server down (a
    placeholder id): both succeed, the links read back after kill -9 and a remount still
    offline, and are stored as NAME.rclonelink files once the server is back, with rsync's
    times. Before, symlink was EIO there."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    write_file(mnt / "a.txt", b"a")
    flush_ok(m)
    src = m.workdir / "src"
    src.mkdir()
    (src / "data.txt").write_bytes(b"data")
    os.symlink("data.txt", src / "link")
    os.utime(src / "link", (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    m.emulator.stop()
    try:
        time.sleep(1.5)  # past the listing TTL
        _call(lambda: (mnt / "new").mkdir(), "mkdir")
        _call(lambda: os.symlink("../a.txt", mnt / "new/ln"), "ln -s")
        done = _call(
            lambda: subprocess.run(
                ["rsync", "-a", f"{src}/", f"{mnt}/new/copy/"], capture_output=True, text=True
            ),
            "rsync -a",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        m.kill()
        m.mount("--dir-cache-ttl", "1")  # still offline, after a crash
        assert _call(lambda: os.readlink(mnt / "new/ln"), "readlink") == "../a.txt"
        assert _call(lambda: os.readlink(mnt / "new/copy/link"), "readlink") == "data.txt"
        assert _call(lambda: (mnt / "new/ln").read_bytes(), "read through the link") == b"a"
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    assert remote.snapshot(m.emulator, m.user) == {
        "a.txt": b"a",
        "new/ln.rclonelink": b"../a.txt",
        "new/copy/data.txt": b"data",
        "new/copy/link.rclonelink": b"data.txt",
    }
    stored = {f.path: f.modified for f in remote.entries(m.emulator, m.user, download=False)}
    assert stored["new/copy/link.rclonelink"] == 1_600_000_000
    m.remount(cold=True)  # from the server alone
    assert os.readlink(mnt / "new/ln") == "../a.txt"
    assert os.readlink(mnt / "new/copy/link") == "data.txt"
    assert "Traceback" not in m.log_file.read_text()


def test_kill_9_inside_an_offline_symlink_leaves_no_empty_link(new_mount: Any) -> None:
    """A link made offline is a new NAME.rclonelink file in the journal, its target written
    into the cache after the record exists. kill -9 between the two (crash point
    ``after-link-record``) left a dirty empty record: the next mount showed a link with no
    target and stored an empty .rclonelink. The symlink never returned, so nothing of it
    may show or be stored; the links made before it are intact."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1", crash_at="after-link-record")
    mnt = m.mountpoint
    write_file(mnt / "a.txt", b"a")
    flush_ok(m)
    m.emulator.stop()
    try:
        time.sleep(1.5)  # past the listing TTL
        with pytest.raises(OSError):
            _call(lambda: os.symlink("a.txt", mnt / "ln"), "ln -s")
        wait_for_death(m)
        remount_after_crash(m, "--dir-cache-ttl", "1")  # still offline
        assert _call(lambda: sorted(os.listdir(mnt)), "ls") == ["a.txt"]
        _call(lambda: os.symlink("a.txt", mnt / "ln2"), "ln -s again")
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    assert remote.snapshot(m.emulator, m.user) == {"a.txt": b"a", "ln2.rclonelink": b"a.txt"}
    assert sorted(os.listdir(mnt)) == ["a.txt", "ln2"]
    assert "Traceback" not in m.log_file.read_text()


@pytest.mark.parametrize("known", [False, True])
def test_rename_over_a_file_against_a_hanging_server_succeeds_and_is_stored(
    new_mount: Any, known: bool
) -> None:
    """The server takes the requests and never answers (SIGSTOP; a stuck proxy): a rename
    over a stored file, as the first call that meets it (``known`` False: its first step's
    request reaches the server and is carried out once it wakes) or once the outage is known.
    It succeeds within the 10 s, shows the new content, and once the server answers again
    the name holds the new file, the old one is deleted and nothing hidden is left. Before,
    the rename was EIO when its request had reached the server."""
    m: MountedFS = new_mount("--dir-cache-ttl", "600")
    mnt = m.mountpoint
    write_file(mnt / "doc.txt", b"old version")
    write_file(mnt / "doc.new", b"new version")
    write_file(mnt / "other.txt", b"other")
    flush_ok(m)
    m.emulator.pause()
    try:
        if known:  # a call that meets the outage first, so the mount knows of it
            _call(lambda: os.rename(mnt / "other.txt", mnt / "other2.txt"), "mv")
        _call(lambda: os.rename(mnt / "doc.new", mnt / "doc.txt"), "mv over a stored file")
        assert _call(lambda: local_tree(mnt), "read all")["doc.txt"] == b"new version"
        assert _call(lambda: sorted(os.listdir(mnt)), "ls") == sorted(
            ["doc.txt", "other2.txt" if known else "other.txt"]
        )
    finally:
        m.emulator.resume()
    flush_ok(m, timeout=120)
    want = {"doc.txt": b"new version", ("other2.txt" if known else "other.txt"): b"other"}
    assert remote.snapshot(m.emulator, m.user) == want
    assert local_tree(mnt) == want
    m.remount(cold=True)
    assert local_tree(mnt) == want
    assert "Traceback" not in m.log_file.read_text()


def test_rm_rf_offline_of_a_folder_never_listed_keeps_what_the_server_holds(
    new_mount: Any,
) -> None:
    """A folder another client filled, seen in this mount's root listing and never opened,
    removed with rm -rf while the server is down: rm sees it empty (this mount knows nothing
    of its content) and removes it. Its content was never shown here, so once the server is
    back nothing of it is deleted: the folder shows again with all of it, in the mount and
    after a cold remount, and the log says why. An empty folder removed so is deleted."""
    m: MountedFS = new_mount("--dir-cache-ttl", "1")
    mnt = m.mountpoint
    write_file(mnt / "keep.txt", b"kept")
    flush_ok(m)
    other: MountedFS = new_mount(user=m.user, name="other")
    (other.mountpoint / "old/sub").mkdir(parents=True)
    (other.mountpoint / "empty").mkdir()
    write_file(other.mountpoint / "old/a.txt", b"a")
    write_file(other.mountpoint / "old/sub/b.txt", b"b")
    flush_ok(other)
    other.unmount()
    wait_for("the other mount's folders", lambda: {"old", "empty"} <= set(os.listdir(mnt)), 30)
    m.emulator.stop()
    try:
        time.sleep(1.5)  # past the listing TTL
        for name in ("old", "empty"):
            done = _call(lambda n=name: subprocess.run(["rm", "-rf", str(mnt / n)]), "rm -rf")
            assert done.returncode == 0
        assert _call(lambda: sorted(os.listdir(mnt)), "ls") == ["keep.txt"]
    finally:
        m.emulator.start()
    flush_ok(m, timeout=120)
    want = {"keep.txt": b"kept", "old/a.txt": b"a", "old/sub/b.txt": b"b"}
    assert remote.snapshot(m.emulator, m.user) == want
    assert sorted(remote.folders(m.emulator, m.user)) == ["old", "old/sub"]
    time.sleep(1.5)  # past the listing TTL: the root is listed again
    assert local_tree(mnt) == want
    m.remount(cold=True)
    assert local_tree(mnt) == want
    log_text = m.log_file.read_text()
    assert "Traceback" not in log_text
    assert "did not show; it is kept" in log_text
