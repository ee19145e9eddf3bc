"""What `internxtfs status` and systemd's STATUS= say while Internxt cannot be reached."""

from __future__ import annotations

import time

from internxtfs.commands.control import format_status
from internxtfs.service.status import status_line

UPLOADS = {
    "pending_files": 3,
    "pending_bytes": 1200,
    "in_flight": 0,
    "queued": 3,
    "uploaded": 0,
    "retries": 0,
    "errors": {},
}


def _status(network: dict[str, object]) -> dict[str, object]:
    return {
        "mountpoint": "/mnt/x",
        "account": "a@example.com",
        "uploads": UPLOADS,
        "cache": {"bytes_cached": 0, "bytes_max": 1, "bytes_dirty": 0},
        "network": {"calls": 1, "retries": 0, "failures": 1} | network,
        "session": {"expires_at": time.time() + 3600, "refreshes": 0, "relogins": 0},
    }


def test_status_says_offline_first_with_since_and_why() -> None:
    since = time.time() - 300
    error = "Unreachable: refused"
    network = {"offline_since": since, "offline_error": error, "last_error": error}
    text = format_status(_status(network | {"last_error_at": since, "failing": True}))
    lines = text.splitlines()
    assert lines[1].startswith("  OFFLINE since ") and "5 min ago" in lines[1]
    assert "Unreachable: refused" in lines[1]
    assert any("last network error" in line for line in lines)


def test_status_online_has_no_offline_line() -> None:
    assert "OFFLINE" not in format_status(_status({"offline_since": None}))


def test_systemd_status_line_names_the_outage_first() -> None:
    line = status_line(UPLOADS, None, 1_800_000_000.0)
    assert line.startswith("OFFLINE since 2027-01-15 08:00:00 UTC")
    assert line.endswith("3 file(s) pending upload (1200 bytes)")
    assert "OFFLINE" not in status_line(UPLOADS)
