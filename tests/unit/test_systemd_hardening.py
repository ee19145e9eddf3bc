"""The unit's sandboxing: as tight as FUSE allows, never looser than the score it records."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.unit_sandbox import UNIT, unit_directives


def recorded_score() -> float:
    match = re.search(r"systemd-analyze security` rates this unit (\d+\.\d+)", UNIT.read_text())
    assert match, "the unit must record its systemd-analyze security score"
    return float(match.group(1))


def test_hardening_directives_and_no_mount_namespace() -> None:
    d = unit_directives()
    assert d["SystemCallFilter"] == ["@system-service @mount", "~@privileged @resources"]
    assert d["SystemCallErrorNumber"] == ["EPERM"]  # a call we did not foresee fails, not kills
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert d["CapabilityBoundingSet"] == ["CAP_SYS_ADMIN CAP_DAC_OVERRIDE"]
    for flag in ("NoNewPrivileges", "ProtectClock", "MemoryDenyWriteExecute", "LockPersonality",
                 "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID"):  # fmt: skip
        assert d[flag] == ["yes"], flag
    assert d["DevicePolicy"] == ["closed"] and d["DeviceAllow"] == ["/dev/fuse rw"]
    # Each of these gives the service its own mount namespace, where the FUSE mount would be
    # invisible to every other process (or, for PrivateUsers=, takes the mount privilege).
    for hides in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                  "PrivateMounts", "PrivateUsers", "ProtectKernelTunables",
                  "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                  "ProtectProc", "ProcSubset", "ProtectHostname", "TemporaryFileSystem",
                  "ReadOnlyPaths", "InaccessiblePaths", "BindPaths", "MountFlags"):  # fmt: skip
        assert hides not in d, hides


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_security_exposure_does_not_exceed_the_recorded_score(tmp_path: Path) -> None:
    binary = Path(sys.executable).parent / "internxtfs"
    instance = tmp_path / "internxtfs@pluton.service"
    instance.write_text(UNIT.read_text().replace("/usr/local/bin/internxtfs", str(binary)))
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(instance)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout + out.stderr)
    if match is None and "--offline" in out.stderr:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {out.stderr}")
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= recorded_score(), out.stdout
