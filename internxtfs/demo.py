"""``internxtfs demo MOUNTPOINT``: the bundled emulator, a demo account and a mount, in one go.

For trying internxtfs without an Internxt account. Everything lives in one working directory
(a fresh temporary one unless ``--data`` names one to keep): the emulator's data, the profile,
the cache. Ctrl-C (or SIGTERM) unmounts, then stops the emulator.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from internxtfs import config
from internxtfs.fs.operations import MountOptions
from internxtfs.internxt.auth import Credentials
from internxtfs.internxt.client import InternxtClient
from internxtfs.mount import MountConfig, run_mount

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@internxtfs.local"
DEMO_PASSWORD = "demo-password"  # a throwaway account on a local emulator, not a secret


def _emulator(*args: str) -> list[str]:
    return [sys.executable, "-m", "internxtfs.emulator", *args]


def start_emulator(data: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        _emulator("serve", "--data", str(data), "--port", "0"),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        # Its own session: Ctrl-C must reach the mount (which flushes first), not the emulator.
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise RuntimeError(f"the emulator did not start (exit {proc.returncode})")
    return proc, json.loads(line)


def ensure_demo_user(data: Path) -> None:
    result = subprocess.run(
        _emulator(
            "add-user", "--data", str(data), "--email", DEMO_EMAIL, "--password", DEMO_PASSWORD
        ),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 and "exists" not in (result.stderr + result.stdout).lower():
        raise RuntimeError(f"cannot create the demo account: {result.stderr.strip()}")


async def demo_login(urls: dict[str, str]) -> config.Profile:
    async with InternxtClient(drive_url=urls["drive_url"], network_url=urls["network_url"]) as c:
        session = await c.login(DEMO_EMAIL, DEMO_PASSWORD)
    profile = config.Profile(
        name="demo",
        drive_url=urls["drive_url"],
        network_url=urls["network_url"],
        session=session,
        credentials=Credentials(DEMO_EMAIL, DEMO_PASSWORD, None),
    )
    config.save_profile(profile)
    return profile


def run_demo(mountpoint: Path, data_dir: Path | None) -> int:
    workdir = data_dir or Path(tempfile.mkdtemp(prefix="internxtfs-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["INTERNXTFS_CONFIG_DIR"] = str(workdir / "config")
    mountpoint.mkdir(parents=True, exist_ok=True)
    emulator_data = workdir / "emulator"
    emulator_data.mkdir(exist_ok=True)
    ensure_demo_user(emulator_data)
    proc, urls = start_emulator(emulator_data)
    try:
        profile = trio.run(demo_login, urls)
        print(
            f"Demo: emulator at {urls['url']}, account {DEMO_EMAIL}.\n"
            f"Mounting on {mountpoint}; use it from another terminal. Ctrl-C unmounts and stops.",
            flush=True,
        )
        mount_config = MountConfig(
            mountpoint=mountpoint.resolve(), cache_dir=workdir / "cache", fs=MountOptions()
        )
        trio.run(run_mount, profile, mount_config, lambda: print("Mounted.", flush=True))
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if data_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("Demo stopped.")
    return 0
