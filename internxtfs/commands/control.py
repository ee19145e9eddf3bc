"""status, flush and umount of a running mount, through its control socket."""

from __future__ import annotations

import argparse
import json
import sys
import time

import trio

from internxtfs.commands import (
    EXIT_FAIL,
)

# How long `status` keeps showing a network error after requests succeed again.
NETWORK_ERROR_SHOWN = 3600.0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_status(st: dict[str, object]) -> str:
    import datetime

    up = st["uploads"]
    cache = st["cache"]
    net = st["network"]
    sess = st["session"]
    assert isinstance(up, dict) and isinstance(cache, dict)
    assert isinstance(net, dict) and isinstance(sess, dict)
    expires = datetime.datetime.fromtimestamp(float(sess["expires_at"]), datetime.UTC)
    lines = [
        f"internxtfs on {st['mountpoint']} ({st['account']})",
        f"  pending uploads: {up['pending_files']} file(s), {_human(up['pending_bytes'])}"
        f" ({up['in_flight']} in flight, {up['queued']} queued)",
        f"  uploaded since mount: {up['uploaded']} file(s); upload retries: {up['retries']}",
        f"  orphaned network objects: {up.get('orphans', 0)} left,"
        f" {up.get('orphans_deleted', 0)} deleted since mount",
        f"  cache: {_human(cache['bytes_cached'])} of {_human(cache['bytes_max'])}"
        f" ({_human(cache['bytes_dirty'])} not uploaded yet)",
        f"  requests: {net['calls']}, retried {net['retries']}, failed {net['failures']}",
        f"  session: valid until {expires:%Y-%m-%d %H:%M} UTC;"
        f" {sess['refreshes']} refresh(es), {sess['relogins']} re-login(s)",
    ]
    if up.get("pending_deletes"):
        lines.insert(3, f"  pending deletes: {up['pending_deletes']} file(s)")
    if up.get("namespace_queued"):
        # mkdir, rename, rmdir made while Internxt was unreachable (fs/pending.py).
        lines.insert(2, f"  namespace changes queued: {up['namespace_queued']}")
    offline = _offline_line(net, now=time.time())
    if offline:
        lines.insert(1, offline)  # first: it explains everything below
    if sess.get("error"):
        lines.append(f"  session cannot be renewed: {sess['error']}")
    network_error = _network_error_line(net, now=time.time())
    if network_error:
        lines.append(network_error)
    if up.get("size_cap") is not None:
        lines.append(f"  largest file your plan allows: {_human(up['size_cap'])}")
    for local_id, err in (up.get("errors") or {}).items():
        name = err.get("path") or f"local id {local_id}"
        what = "delete" if err.get("delete") else "upload"
        lines.append(f"  failing {what} {name}: {err['error']} ({err['attempts']} attempts)")
    return "\n".join(lines)


def _clock_time(at: float) -> str:
    import datetime

    return f"{datetime.datetime.fromtimestamp(at, datetime.UTC):%Y-%m-%d %H:%M:%S} UTC"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _offline_line(net: dict[str, object], now: float) -> str | None:
    """Internxt cannot be reached: since when, and why (issue 9)."""
    since = net.get("offline_since")
    if not isinstance(since, (int, float)):
        return None
    return (
        f"  OFFLINE since {_clock_time(since)} ({_ago(now - since)}): Internxt cannot be "
        f"reached ({net.get('offline_error')}); serving from the cache, changes wait in the "
        "journal and are sent once it answers"
    )


def _network_error_line(net: dict[str, object], now: float) -> str | None:
    """The last network error with its time. Once requests succeed again it says so, and
    after NETWORK_ERROR_SHOWN seconds of that it is no longer shown (``--json`` keeps it)."""
    error, at = net.get("last_error"), net.get("last_error_at")
    if not error:
        return None
    if not isinstance(at, (int, float)):
        return f"  last network error: {error}"
    line = f"  last network error, {_clock_time(at)} ({_ago(now - at)}): {error}"
    ok = net.get("last_success_at")
    if net.get("failing") or not isinstance(ok, (int, float)) or ok < at:
        return line + "; no request has succeeded since"
    if now - ok > NETWORK_ERROR_SHOWN:
        return None
    return line + f"; requests succeed again since {_clock_time(ok)}"


def _control(mountpoint: str, cmd: str, **kw: object) -> list[dict[str, object]]:
    from internxtfs import control

    answers: list[dict[str, object]] = []

    async def talk() -> None:
        async for answer in control.request(mountpoint, cmd, **kw):
            if "progress" in answer and sys.stderr.isatty():
                p = answer["progress"]
                assert isinstance(p, dict)
                left = p.get("bytes_left", p["pending_bytes"])
                print(
                    f"\r  {p['pending_files']} file(s), {_human(left)} left to upload"
                    f" of {_human(p['pending_bytes'])} ({p['in_flight']} in flight)   ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            answers.append(answer)

    trio.run(talk)
    if sys.stderr.isatty() and any("progress" in a for a in answers):
        print(file=sys.stderr)
    return answers


def cmd_status(args: argparse.Namespace) -> int:
    from internxtfs.control import NotMounted, UnsafeRuntimeDir

    try:
        (answer,) = _control(args.mountpoint, "status")
    except (NotMounted, UnsafeRuntimeDir, ConnectionError) as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(json.dumps(answer, indent=2) if args.json else format_status(answer))
    return 0


def _flush_like(args: argparse.Namespace, cmd: str) -> int:
    from internxtfs.control import NotMounted, UnsafeRuntimeDir, mount_root

    extra = {"lazy": True} if getattr(args, "lazy", False) else {}
    try:
        root = mount_root(args.mountpoint)  # also from a directory inside the mount
        answers = _control(root, cmd, timeout=args.timeout, **extra)
    except (NotMounted, UnsafeRuntimeDir, ConnectionError) as exc:
        print(f"internxtfs: {exc}", file=sys.stderr)
        return EXIT_FAIL
    result = next((a for a in answers if a.get("done")), None)
    if result is None:
        print("internxtfs: the mount stopped answering", file=sys.stderr)
        return EXIT_FAIL
    if result.get("busy"):
        from internxtfs.busy import describe

        for line in describe(result):
            print(f"internxtfs: {line}" if not line.startswith(" ") else line, file=sys.stderr)
        return EXIT_FAIL
    if cmd == "umount":
        from internxtfs.control import canonical_mountpoint

        target = canonical_mountpoint(root)
        for _ in range(600):
            with open("/proc/self/mounts") as fh:
                if not any(line.split()[1] == target for line in fh):
                    break
            time.sleep(0.1)
    errors = result.get("errors") or {}
    assert isinstance(errors, dict)
    for local_id, err in errors.items():
        if isinstance(err, dict):
            where, why = err.get("path") or f"local id {local_id}", err.get("error")
        else:
            where, why = f"local id {local_id}", err
        print(f"internxtfs: cannot store {where}: {why}", file=sys.stderr)
    if result.get("pending"):
        print(
            f"internxtfs: {result['pending']} file(s) not stored yet"
            + ("; they stay in the cache and resume at the next mount" if cmd == "umount" else ""),
            file=sys.stderr,
        )
        return EXIT_FAIL
    print("everything is stored" + ("; unmounted" if cmd == "umount" else ""))
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    return _flush_like(args, "flush")


def cmd_umount(args: argparse.Namespace) -> int:
    return _flush_like(args, "umount")
