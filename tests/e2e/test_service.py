"""Mounting as a service would: the mount(8) helper, daemon mode, ownership for another user."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness import remote
from tests.harness.mounting import BIN, MountedFS, cli, fuse_available
from tests.harness.unit_replay import UNIT, relocated

README = UNIT.parents[1] / "README.md"


def test_mount_helper_daemon_with_allow_other_uid_gid(emulator: Any, tmp_path: Path) -> None:
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    user = emulator.add_user(email=f"svc-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    m = MountedFS(emulator, user, tmp_path / "m")
    m.login()
    # A mountpoint another user can reach (pytest's tmp dirs are root-only).
    shared = Path(tempfile.mkdtemp(prefix="ixfs-svc-"))
    os.chmod(shared, 0o755)
    mnt = shared / "mnt"
    mnt.mkdir()
    try:
        helper = subprocess.run(
            [
                str(BIN / "mount.internxtfs"),
                "default",
                str(mnt),
                "-o",
                f"rw,_netdev,allow_other,uid=65534,gid=65534,umask=027,cache_dir={m.cache_dir}",
            ],
            env=m.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert helper.returncode == 0, helper.stderr
        assert os.path.ismount(mnt)  # daemon mode: returned only once the mount answers
        # Entries this mount never touched show the -o uid/gid/umask defaults; a new one
        # belongs to the process that created it (issue 11), as on a local disk.
        st = os.stat(mnt)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o750)
        (mnt / "made-by-root.txt").write_text("shared")
        os.chmod(mnt / "made-by-root.txt", 0o644)
        st = os.stat(mnt / "made-by-root.txt")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o644)
        if shutil.which("setpriv"):
            as_nobody = subprocess.run(
                [
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "cat",
                    str(mnt / "made-by-root.txt"),
                ],
                capture_output=True,
                text=True,
            )
            assert as_nobody.stdout == "shared", as_nobody.stderr
        done = cli("umount", str(mnt), env=m.env)
        assert done.returncode == 0, done.stderr
        assert not os.path.ismount(mnt)
    finally:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)


def test_dead_mount_is_cleared_by_the_next_mount(mounted: MountedFS) -> None:
    (mounted.mountpoint / "kept").write_bytes(b"data")
    fd = os.open(mounted.mountpoint / "kept", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    mounted.kill()  # kill -9: "Transport endpoint is not connected" from now on
    with pytest.raises(OSError):
        os.listdir(mounted.mountpoint)
    mounted.mount()
    assert (mounted.mountpoint / "kept").read_bytes() == b"data"


def test_unit_command_lines_come_back_after_kill_9(emulator: Any, tmp_path: Path) -> None:
    """The unit's ExecStartPre/ExecStart/ExecStop lines, replayed as systemd would run them,
    start again after the mount was killed with SIGKILL (Restart=on-failure)."""
    reason = fuse_available()
    if reason:
        pytest.skip(reason)
    user = emulator.add_user(email=f"unit-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    root = tmp_path / "sys"
    replay = relocated("svc", root, BIN / "internxtfs", tmp_path)
    env = replay.environment()
    mountpoint = Path(env["MOUNTPOINT"])
    assert str(mountpoint).startswith(str(root))  # the unit's default, relocated
    (tmp_path / "pw").write_text("pw")
    login_env = env | {
        "INTERNXTFS_DRIVE_URL": emulator.drive_url,
        "INTERNXTFS_NETWORK_URL": emulator.network_url,
    }
    cli("login", "--profile", "svc", "--email", user["email"], "--password-file",
        str(tmp_path / "pw"), env=login_env)  # fmt: skip
    log = tmp_path / "service.log"
    proc = replay.start(log)
    try:
        (mountpoint / "kept").write_bytes(b"before the crash")
        fd = os.open(mountpoint / "kept", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        proc.kill()
        proc.wait()
        with pytest.raises(OSError) as dead:
            os.listdir(mountpoint)
        assert dead.value.errno == errno.ENOTCONN
        # RestartSec=15 outlasts the kernel's 1 s attribute cache of the dead mountpoint: from
        # then on even stat fails, which is where a plain `mkdir -p` broke every restart.
        wait_until_stat_fails(mountpoint)
        proc = replay.start(log)  # what Restart=on-failure does, RestartSec later
        assert (mountpoint / "kept").read_bytes() == b"before the crash"
        assert replay.stop(proc) == 0
        assert not os.path.ismount(mountpoint)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


def wait_until_stat_fails(path: Path, bound: float = 30.0) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            os.stat(path)
        except OSError as exc:
            assert exc.errno == errno.ENOTCONN
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} still answers stat after {bound} s")


PLUTON, OTHER = 61234, 65534  # the backup user of the recipe, and any other local user


def recipe_options(source: Path) -> list[str]:
    """The OPTIONS= the recipe writes into pluton.env, with pluton as a uid."""
    [options] = re.findall(r"OPTIONS=(.*?)\\n", source.read_text())
    return shlex.split(re.sub(r"\b(uid|gid)=pluton\b", rf"\1={PLUTON}", options))


def as_user(uid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("source", [README, UNIT], ids=lambda p: p.name)
def test_pluton_recipe_is_private_to_pluton(emulator: Any, source: Path) -> None:
    reason = fuse_available() or (None if shutil.which("setpriv") else "setpriv missing")
    if reason:
        pytest.skip(reason)
    options = recipe_options(source)
    user = emulator.add_user(email=f"pl-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    shared = Path(tempfile.mkdtemp(prefix="ixfs-pluton-"))  # reachable by every user
    os.chmod(shared, 0o755)
    m = MountedFS(emulator, user, shared)
    m.login()
    m.mount(*options)
    try:
        # Made by pluton, as restic would: new entries belong to their creator (issue 11).
        keys = m.mountpoint / "restic" / "keys"
        assert as_user(PLUTON, "mkdir", "-p", str(keys)).returncode == 0
        made = as_user(PLUTON, "sh", "-c", f"printf 'restic key' > {keys / 'k1'}")
        assert made.returncode == 0, made.stderr
        assert as_user(PLUTON, "cat", str(keys / "k1")).stdout == "restic key"
        assert as_user(PLUTON, "touch", str(m.mountpoint / "restic" / "new")).returncode == 0
        for argv in (["cat", str(keys / "k1")], ["ls", str(m.mountpoint)]):
            other = as_user(OTHER, *argv)
            assert other.returncode != 0 and "Permission denied" in other.stderr, other
    finally:
        m.unmount()
        subprocess.run(["fusermount3", "-uz", str(m.mountpoint)], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)


def _kill_processes_mentioning(marker: str) -> None:
    """Processes this test started inside its namespace (their argv holds our tmp path)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)


@pytest.mark.parametrize("form", ["as written", "internxtfs#PROFILE"])
def test_readme_fstab_line_through_mount_8_in_a_namespace(
    emulator: Any, tmp_path: Path, form: str
) -> None:
    """The README's fstab line, as written, through mount(8) and mount.fuse3: with only the
    recipe's /usr/local/bin/internxtfs link, no $HOME and no internxtfs variables. Also in the
    older form (``internxtfs#pluton MOUNTPOINT fuse OPTIONS``) that the helper describes."""
    reason = fuse_available() or (None if shutil.which("unshare") else "unshare missing")
    if reason:
        pytest.skip(reason)
    [line] = re.findall(
        r"^pluton\s+/mnt/internxt\s+fuse\.internxtfs\s.*$", README.read_text(), re.M
    )
    user = emulator.add_user(email=f"fs-{uuid.uuid4().hex[:6]}@example.com", password="pw")
    root = tmp_path / "sys"
    etc = root / "etc"
    etc.mkdir(parents=True)
    key = etc / "pluton.key"  # the README's `install -m 600 /run/ix.key ...`
    key.write_text("kept for fstab mounts")
    key.chmod(0o600)
    (tmp_path / "pw").write_text("pw")
    login_env = dict(os.environ) | {
        "INTERNXTFS_CONFIG_DIR": str(etc),
        "INTERNXTFS_DRIVE_URL": emulator.drive_url,
        "INTERNXTFS_NETWORK_URL": emulator.network_url,
    }
    cli("login", "--profile", "pluton", "--email", user["email"], "--password-file",
        str(tmp_path / "pw"), "--key-file", str(key), env=login_env)  # fmt: skip
    mountpoint = root / "mnt"
    mountpoint.mkdir()
    for old, new in (
        ("/etc/internxtfs", str(etc)),
        ("/var/cache/internxtfs", str(root / "cache")),
        ("/mnt/internxt", str(mountpoint)),
    ):
        line = line.replace(old, new)
    line = re.sub(r"\b(uid|gid)=pluton\b", rf"\1={PLUTON}", line)
    if form == "internxtfs#PROFILE":
        line = re.sub(r"^pluton(\s+\S+\s+)fuse\.internxtfs", r"internxtfs#pluton\1fuse", line)
        assert line.startswith("internxtfs#pluton ")
    (tmp_path / "fstab").write_text(line + "\n")
    links = tmp_path / "usr-local-bin"  # the recipe's `ln -s .venv/bin/internxtfs /usr/local/bin`
    links.mkdir()
    (links / "internxtfs").symlink_to(BIN / "internxtfs")
    script = f"""
        mount --bind {links} /usr/local/bin
        mount -T {tmp_path / "fstab"} {mountpoint}
        echo 'through fstab' > {mountpoint}/f
        stat -c '%a %u' {mountpoint}
        internxtfs umount {mountpoint}
    """
    try:
        done = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-ec", script],
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        log = root / "cache" / "pluton" / "mount.log"
        assert done.returncode == 0, (done.stdout, done.stderr, log.exists() and log.read_text())
        # umask=077, uid=pluton: shown for what this cache has no record of (the root; f
        # belongs to root, who created it).
        assert done.stdout.splitlines()[0] == f"700 {PLUTON}"
        assert remote.snapshot(emulator, user)["f"] == b"through fstab\n"
    finally:
        _kill_processes_mentioning(str(tmp_path))
