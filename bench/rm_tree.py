"""How long the deletes of ``rm -r`` of a folder of N files take to reach Internxt.

A quick measure for the check before a late delete (docs/semantics.md, "Conflicts", rule 1):
the folder's files are made through the API (no latency), listed once through a fresh mount,
then the emulator gets ``--latency-ms`` per request and the script times ``rm -r`` (it returns
once the deletes are journaled) and the ``internxtfs flush`` after it (until every delete is
sent), and counts the requests the emulator answered meanwhile. Rounds are repeated; the
minimum and the median are printed. Run as root with the
project's venv: ``.venv/bin/python bench/rm_tree.py --files 500 --latency-ms 30``.
Nothing is asserted (bench/README.md).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from internxtfs.internxt.client import InternxtClient
from tests.harness.emulator import EmulatorProcess
from tests.harness.mounting import MountedFS, cli


async def populate(emulator: EmulatorProcess, user: dict[str, str], count: int) -> None:
    async with InternxtClient(
        drive_url=emulator.drive_url, network_url=emulator.network_url
    ) as client:
        await client.login(user["email"], user["password"])
        folder = await client.drive.create_folder(client.session.root_folder_uuid, "tree")
        limiter = trio.CapacityLimiter(16)

        async def one(i: int) -> None:
            async with limiter:
                await client.drive.create_file(folder.uuid, f"f{i:05d}.dat", 0, None)

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)


def one_round(
    root: Path, emulator: EmulatorProcess, n: int, files: int, latency: int
) -> tuple[float, float, int, int]:
    emulator.set_faults(latency_ms=0)
    user = emulator.add_user(email=f"rm{n}@example.com", password="pw-bench")
    trio.run(populate, emulator, user, files)
    m = MountedFS(emulator, user, root / f"m{n}")
    m.login()
    m.mount()
    try:
        assert len(list((m.mountpoint / "tree").iterdir())) == files
        emulator.set_faults(latency_ms=latency)
        emulator.reset_stats()
        start = time.perf_counter()
        subprocess.run(["rm", "-r", str(m.mountpoint / "tree")], check=True)
        rm = time.perf_counter() - start
        cli("flush", "--timeout", "600", str(m.mountpoint), env=m.env)
        total = time.perf_counter() - start
        requests = emulator.stats()["requests"]
    finally:
        emulator.set_faults(latency_ms=0)
        m.unmount()
    meta = sum(n for route, n in requests.items() if route.endswith("/meta"))
    return rm, total, sum(requests.values()), meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rm-tree-"))
    emulator = EmulatorProcess(root / "emulator").start()
    try:
        results = [
            one_round(root, emulator, n, args.files, args.latency_ms) for n in range(args.rounds)
        ]
    finally:
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)
    for label, values in (
        ("rm -r", [r[0] for r in results]),
        ("rm -r + flush", [r[1] for r in results]),
    ):
        print(
            f"{label:>14}: min {min(values):.2f} s, median {statistics.median(values):.2f} s "
            f"({args.files} files, {args.latency_ms} ms latency, {args.rounds} rounds)"
        )
    print(f"      requests: {statistics.median(r[2] for r in results):.0f} per round, of which "
          f"{statistics.median(r[3] for r in results):.0f} file/folder meta reads")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
