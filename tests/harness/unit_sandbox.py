"""The seccomp sandbox that ``systemd/internxtfs@.service`` asks for, read from the unit file,
as a spec for ``tests/harness/sandbox.py`` (which applies it without systemd)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path

UNIT = Path(__file__).parents[2] / "systemd" / "internxtfs@.service"
SANDBOX = Path(__file__).with_name("sandbox.py")


@cache
def syscall_groups() -> dict[str, list[str]]:
    """Every ``@group`` of this systemd, with its members (groups unexpanded)."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.split()[0], [])
        elif line.startswith("    ") and current is not None:
            item = line.strip()
            if item and not item.startswith("#"):
                current.append(item)
        elif not line.strip():
            current = None
    return groups


def expand(items: list[str]) -> set[str]:
    names: set[str] = set()
    for item in items:
        if item.startswith("@"):
            names |= expand(syscall_groups()[item])
        else:
            names.add(item)
    return names


def unit_directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().replace("\\\n", " ").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def spec() -> dict[str, object]:
    d = unit_directives()
    allowed: set[str] = set()
    for value in d.get("SystemCallFilter", []):
        if value.startswith("~"):
            allowed -= expand(value[1:].split())
        else:
            allowed |= expand(value.split())
    families = [
        getattr(socket, name) for v in d.get("RestrictAddressFamilies", []) for name in v.split()
    ]
    return {
        "allow": sorted(allowed),
        "families": [int(f) for f in families] or None,
        "mdwe": d.get("MemoryDenyWriteExecute") == ["yes"],
    }


def wrapper(workdir: Path) -> list[str]:
    """The argv prefix that runs a command inside the unit's sandbox."""
    path = workdir / "sandbox.json"
    path.write_text(json.dumps(spec()))
    prefix = [sys.executable, str(SANDBOX), str(path)]
    caps = " ".join(unit_directives().get("CapabilityBoundingSet", [])).split()
    if caps and shutil.which("setpriv"):
        # CapabilityBoundingSet=: root keeps only these capabilities across exec.
        keep = ",".join(f"+{c.removeprefix('CAP_').lower()}" for c in caps)
        prefix = ["setpriv", f"--bounding-set=-all,{keep}", "--inh-caps=-all", *prefix]
    return prefix
