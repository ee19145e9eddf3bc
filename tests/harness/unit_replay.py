"""Run the systemd unit's own command lines by hand (these machines have no systemd as PID 1).

The lines are parsed from ``systemd/internxtfs@.service`` itself, so a test replaying them cannot
drift from what is shipped. What systemd would do around them is reproduced as far as the unit
relies on it: ``%i``, ``Environment=``/``EnvironmentFile=``, ``${VAR}`` (one word) and ``$VAR``
(split on whitespace) substitution, the ``-`` prefix (failure ignored), ``$CREDENTIALS_DIRECTORY``
holding ``LoadCredential*=`` files, ``$NOTIFY_SOCKET`` for ``Type=notify``, and ``KillSignal=``.
System paths are moved under a test directory by ``relocate`` (old prefix → new prefix).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

UNIT = Path(__file__).parents[2] / "systemd" / "internxtfs@.service"


def service_section(text: str) -> list[tuple[str, str]]:
    """(key, value) pairs of [Service], continuation lines joined, comments dropped."""
    pairs: list[tuple[str, str]] = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def _expand(word: str, env: dict[str, str]) -> list[str]:
    """systemd's rules: a word that is exactly ``$VAR`` becomes the value split on whitespace;
    ``${VAR}`` anywhere is replaced in place (one word)."""
    whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
    if whole:
        return env.get(whole.group(1), "").split()
    return [re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word)]


@dataclass
class Replay:
    instance: str
    relocate: dict[str, str]
    credentials: dict[str, bytes] = field(default_factory=dict)
    workdir: Path = Path("/tmp")
    # argv prefix for every command, e.g. the unit's sandbox (tests/harness/unit_sandbox.py)
    wrapper: list[str] = field(default_factory=list)

    def _text(self, value: str) -> str:
        value = value.replace("%i", self.instance)
        for old, new in self.relocate.items():
            value = value.replace(old, new)
        return value

    def settings(self) -> list[tuple[str, str]]:
        return [(k, self._text(v)) for k, v in service_section(UNIT.read_text())]

    def environment(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for key, value in self.settings():
            if key == "Environment":
                for item in shlex.split(value):
                    name, _, val = item.partition("=")
                    env[name] = val
            elif key == "EnvironmentFile":
                path = Path(value.lstrip("-"))
                if not path.exists() and value.startswith("-"):
                    continue
                for line in path.read_text().splitlines():
                    if line.strip() and not line.lstrip().startswith("#"):
                        name, _, val = line.partition("=")
                        env[name.strip()] = val.strip().strip("'\"")
        if self.credentials:
            creds = self.workdir / "credentials"
            creds.mkdir(mode=0o700, exist_ok=True)
            for name, data in self.credentials.items():
                (creds / name).write_bytes(data)
                os.chmod(creds / name, 0o400)
            env["CREDENTIALS_DIRECTORY"] = str(creds)
        return env

    def commands(
        self, key: str, extra: dict[str, str] | None = None
    ) -> list[tuple[list[str], bool]]:
        """The argv of every ``key=`` line, and whether its failure is ignored (``-``)."""
        env = self.environment() | (extra or {})
        found = []
        for k, value in self.settings():
            if k != key:
                continue
            ignore = False
            while value[:1] in ("-", "@", "+", "!", ":"):
                ignore = ignore or value[0] == "-"
                value = value[1:]
            argv = [w for word in shlex.split(value) for w in _expand(word, env)]
            found.append(([*self.wrapper, *argv], ignore))
        return found

    def kill_signal(self) -> signal.Signals:
        for key, value in self.settings():
            if key == "KillSignal":
                return signal.Signals[value]
        return signal.SIGTERM

    def start(self, log: Path, timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """ExecStartPre=, then ExecStart= until it sends READY=1 (Type=notify)."""
        env = self.environment()
        for argv, ignore in self.commands("ExecStartPre"):
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            if done.returncode != 0 and not ignore:
                raise RuntimeError(f"ExecStartPre {argv} failed: {done.stderr}")
        [(argv, _)] = self.commands("ExecStart")
        notify = self.workdir / f"notify-{os.getpid()}.sock"
        notify.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.settimeout(timeout)
        with sock, open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                env=env | {"NOTIFY_SOCKET": str(notify)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
            try:
                while True:
                    message = sock.recv(4096).decode()
                    if "READY=1" in message.split("\n"):
                        return proc
            except TimeoutError:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"no READY=1; log:\n{log.read_text()[-3000:]}") from None

    def reload(self, proc: subprocess.Popen[bytes]) -> None:
        """ExecReload= lines, with ``$MAINPID``."""
        env = self.environment()
        for argv, ignore in self.commands("ExecReload", {"MAINPID": str(proc.pid)}):
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            if done.returncode != 0 and not ignore:
                raise RuntimeError(f"ExecReload {argv} failed: {done.stderr}")

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
        """ExecStop= lines if any, then KillSignal= to the main process; its exit code."""
        env = self.environment()
        for argv, ignore in self.commands("ExecStop"):
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            if done.returncode != 0 and not ignore:
                raise RuntimeError(f"ExecStop {argv} failed: {done.stderr}")
        if proc.poll() is None:
            proc.send_signal(self.kill_signal())
        return proc.wait(timeout=timeout)


def relocated(instance: str, root: Path, binary: Path, workdir: Path) -> Replay:
    """The unit replayed with its system paths moved under ``root`` (and the installed
    ``internxtfs`` replaced by ``binary``), with a service key as its systemd credential."""
    return Replay(
        instance=instance,
        relocate={
            "/usr/local/bin/internxtfs": str(binary),
            "/etc/internxtfs": str(root / "etc"),
            "/var/cache/internxtfs": str(root / "cache"),
            "/mnt/internxt": str(root / "mnt"),
        },
        credentials={"internxtfs.key": b"a-random-service-key\n"},
        workdir=workdir,
    )
