"""Run ``internxtfs-emulator serve`` as a subprocess for tests.

The emulator is started exactly as users would start it (the console script, a fresh data dir,
a free port), and stopped by PID with SIGTERM. ``restart()`` keeps the data dir and the port so
clients holding URLs keep working.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# A second CI pass runs selected e2e tests against read replicas that lag (issue 8): every
# emulator a test starts gets ``--replica-lag-ms`` from this variable unless it sets its own.
REPLICA_LAG_ENV = "INTERNXTFS_TEST_REPLICA_LAG_MS"


def _command() -> list[str]:
    script = Path(sys.executable).with_name("internxtfs-emulator")
    if script.exists():
        return [str(script)]
    found = shutil.which("internxtfs-emulator")
    return [found] if found else [sys.executable, "-m", "internxtfs.emulator"]


def read_ready_line(proc: subprocess.Popen[bytes], log_tail: Callable[[], str]) -> str:
    """The emulator's one JSON "ready" line from its stdout, within START_TIMEOUT."""
    assert proc.stdout is not None
    stdout = proc.stdout
    deadline = time.monotonic() + START_TIMEOUT
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"emulator not ready; log:\n{log_tail()}")
        readable, _, _ = select.select([stdout], [], [], min(remaining, 0.2))
        if readable:
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"emulator exited early; log:\n{log_tail()}")
            buffer += chunk
        elif proc.poll() is not None:
            raise RuntimeError(f"emulator exited early; log:\n{log_tail()}")
    return buffer.split(b"\n", 1)[0].decode()


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (the emulator shuts down cleanly), SIGKILL after ``timeout``; close its stdout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("emulator %d ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            proc.wait(timeout)
    if proc.stdout is not None:
        proc.stdout.close()


class EmulatorProcess:
    """One emulator server process on a data dir (a temporary one unless given)."""

    def __init__(self, data_dir: Path | str | None = None, extra_args: list[str] | None = None):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="inxt-emulator-"))
        self.extra_args = list(extra_args or [])
        self.port = 0
        self.url = ""
        self.drive_url = ""
        self.network_url = ""
        self.ready: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.data_dir / "emulator.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, extra_args: list[str] | None = None) -> EmulatorProcess:
        if self.running:
            raise RuntimeError("emulator already running")
        if extra_args is not None:
            self.extra_args = list(extra_args)
        lag = os.environ.get(REPLICA_LAG_ENV)
        if lag and "--replica-lag-ms" not in self.extra_args:
            self.extra_args += ["--replica-lag-ms", lag]
        cmd = [
            *_command(),
            "serve",
            "--data",
            str(self.data_dir),
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log_file)
        try:
            line = self._read_ready_line()
        except BaseException:
            self.stop()
            raise
        self.ready = json.loads(line)
        self.url = self.ready["url"]
        self.drive_url = self.ready["drive_url"]
        self.network_url = self.ready["network_url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _read_ready_line(self) -> str:
        assert self._proc is not None
        return read_ready_line(self._proc, self._log_tail)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def pause(self) -> None:
        """A server that hangs: SIGSTOP. The kernel still accepts connections (into the
        listen backlog) and takes the requests, but nothing answers, as with a proxy or a
        server stuck behind a load balancer; unlike :meth:`stop`, nothing is refused.
        :meth:`resume` (SIGCONT) lets it answer what waited. The admin API hangs too."""
        assert self._proc is not None and self._proc.poll() is None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # a paused process would hold SIGTERM until killed
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, STOP_TIMEOUT)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> EmulatorProcess:
        """Stop and start again on the same data dir and port."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmulatorProcess:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # --- admin API ---------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        # With --tls-cert the emulator uses a test CA the harness does not know; the admin API
        # is a local test control channel, so it skips verification there.
        verify = not self.url.startswith("https://")
        response = httpx.request(
            method, f"{self.url}/_emulator{path}", json=body, timeout=30, verify=verify
        )
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def add_user(
        self,
        email: str = "user@example.com",
        password: str = "correct horse battery staple",
        totp_secret: str | None = None,
        quota: int | None = None,
        mnemonic: str | None = None,
    ) -> dict[str, Any]:
        """Create an account; the answer also carries the plain ``password`` and ``mnemonic``."""
        if self.running:
            body: dict[str, Any] = {"email": email, "password": password}
            if totp_secret:
                body["totp_secret"] = totp_secret
            if quota is not None:
                body["quota"] = quota
            if mnemonic:
                body["mnemonic"] = mnemonic
            user = self._admin("POST", "/users", body)
        else:
            cmd = [*_command(), "add-user", "--data", str(self.data_dir)]
            cmd += ["--email", email, "--password", password]
            if totp_secret:
                cmd += ["--totp-secret", totp_secret]
            if quota is not None:
                cmd += ["--quota", str(quota)]
            if mnemonic:
                cmd += ["--mnemonic", mnemonic]
            done = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
            user = json.loads(done.stdout)
        user["password"] = password
        if totp_secret:
            user["totp_secret"] = totp_secret
        return user

    def update_user(self, email: str, **fields: Any) -> dict[str, Any]:
        """quota, max_file_size, empty_file_cap, platforms, password (+mnemonic/old_password),
        totp_secret, failed_logins."""
        return self._admin("PATCH", f"/users/{email}", fields)

    def user_info(self, email: str) -> dict[str, Any]:
        """The account as the admin API describes it, with driveUsage and networkUsage."""
        return self._admin("GET", f"/users/{email}")

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        """latency_ms, bandwidth, fail_rate, throttle_rate, reset_rate, lose_answer_rate,
        token_lifetime, fail_next, throttle_next, reset_next, lose_answer_next, fault_path_regex,
        fault_method, seed."""
        return self._admin("POST", "/faults", knobs)

    def wait_for_replicas(self) -> None:
        """Let lagging read replicas catch up, so what a check reads is the final state (the
        real service's replicas catch up too; tests must not judge the mount by a stale read).
        """
        if not self.running:
            return  # stopped (an outage test): nothing to catch up with
        lag_ms = float(self._admin("GET", "/faults").get("replica_lag_ms") or 0)
        if lag_ms > 0:
            time.sleep(lag_ms / 1000 + 0.05)

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "/stats")

    def reset_stats(self) -> None:
        self._admin("POST", "/stats/reset")
