"""README's first two commands work as root on a machine without sudo, and through sudo for a
normal user (issue 13, item 5).

The scripts they run (scripts/setup.sh, .ci/run) are run for real, copied into a sandbox
where what they call next (apt-get, dpkg-query, the virtualenv's pip/ruff/pytest, setup.sh
from .ci/run) is a stub that records who called it. As root the PATH holds no sudo at all, as
on a minimal machine; as a normal user (``nobody``, through setpriv) a stub sudo records what
it was asked to run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
NOBODY = 65534
TOOLS = ("bash", "id", "dirname", "realpath", "grep", "env", "cat")


def readme_commands() -> list[str]:
    """The commands of README's first ``sh`` block (comments and blank lines left out)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None, "README has no sh block"
    return [
        line.strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def scripts_run_by(command: str) -> list[str]:
    words = shlex.split(command.replace("&&", " && "))
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == "bash"]


def test_readme_commands_do_not_start_with_sudo() -> None:
    commands = readme_commands()
    assert len(commands) == 2, commands
    for command in commands:
        assert "sudo" not in shlex.split(command.replace("&&", " && ")), command
    # The demo's mountpoint is one a normal user can create.
    demo = shlex.split(commands[0].split("&&")[1])
    assert demo[1] == "demo" and demo[2].startswith("~/"), demo
    assert scripts_run_by(commands[0]) == ["scripts/setup.sh"]
    assert scripts_run_by(commands[1]) == [".ci/run"]


STUB = """#!/bin/bash
echo "$EUID {name} $*" >> "$RECORD"
"""


@pytest.fixture
def sandbox() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are root's alone, and `nobody` must get in.
    root = Path(tempfile.mkdtemp(prefix="readme-commands-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _prepare(sandbox: Path, with_sudo: bool) -> tuple[Path, dict[str, str]]:
    repo = sandbox / "repo"
    for script in ("scripts/setup.sh", ".ci/run"):
        (repo / script).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / script, repo / script)
    bindir = sandbox / "bin"
    bindir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bindir / tool).symlink_to(found)
    stubs = {
        bindir / "apt-get": "apt-get",
        bindir / "dpkg-query": "dpkg-query",  # prints nothing: every package is missing
        repo / ".venv/bin/python": "venv-python",
        repo / ".venv/bin/pip": "pip",
        repo / ".venv/bin/ruff": "ruff",
    }
    if with_sudo:
        stubs[bindir / "sudo"] = "sudo"
    for path, name in stubs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STUB.format(name=name))
        path.chmod(0o755)
    record = sandbox / "record"
    record.touch()
    record.chmod(0o666)
    for d in (repo, repo / "scripts", repo / ".ci", repo / ".venv", repo / ".venv/bin", bindir):
        d.chmod(0o755)
    env = {"PATH": str(bindir), "RECORD": str(record), "HOME": str(sandbox)}
    assert shutil.which("sudo", path=env["PATH"]) is None or with_sudo
    return repo, env


def _run(argv: list[str], repo: Path, env: dict[str, str], as_nobody: bool) -> list[str]:
    prefix = []
    if as_nobody:
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0 or setpriv is None:
            pytest.skip("needs root and setpriv to run as another user")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    done = subprocess.run(
        [*prefix, *argv], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert "command not found" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    return (Path(env["RECORD"])).read_text().splitlines()


def test_setup_as_root_without_sudo(sandbox: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root")
    repo, env = _prepare(sandbox, with_sudo=False)
    calls = _run(["bash", "scripts/setup.sh"], repo, env, as_nobody=False)
    assert "0 apt-get update -qq" in calls
    assert any(c.startswith("0 apt-get install -y -qq fuse3") for c in calls), calls
    assert any(c.startswith("0 pip install") for c in calls), calls


def test_setup_as_a_user_asks_sudo_for_the_packages_only(sandbox: Path) -> None:
    repo, env = _prepare(sandbox, with_sudo=True)
    calls = _run(["bash", "scripts/setup.sh"], repo, env, as_nobody=True)
    assert f"{NOBODY} sudo apt-get update -qq" in calls, calls
    assert any(c.startswith(f"{NOBODY} sudo env DEBIAN_FRONTEND=") for c in calls), calls
    assert any(c.startswith(f"{NOBODY} pip install") for c in calls), calls  # not via sudo


def test_ci_run_as_root_without_sudo(sandbox: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs as root")
    repo, env = _prepare(sandbox, with_sudo=False)
    setup = repo / "scripts/setup.sh"
    setup.write_text(STUB.format(name="setup.sh"))  # the real one is tested above
    calls = _run(["bash", ".ci/run"], repo, env, as_nobody=False)
    assert calls[0] == "0 setup.sh "
    assert "0 ruff check ." in calls
    assert any(c.startswith("0 venv-python -m pytest") for c in calls), calls


def test_ci_run_as_a_user_runs_again_through_sudo(sandbox: Path) -> None:
    repo, env = _prepare(sandbox, with_sudo=True)
    calls = _run(["bash", ".ci/run"], repo, env, as_nobody=True)
    assert calls == [f"{NOBODY} sudo bash {repo}/.ci/run"], calls
