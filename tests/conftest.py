"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.emulator import EmulatorProcess


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    """Start emulators with custom arguments; all are stopped at the end of the test."""
    started: list[EmulatorProcess] = []

    def start(extra_args: list[str] | None = None, data_dir: Path | None = None) -> EmulatorProcess:
        directory = data_dir or tmp_path / f"emulator-{len(started)}"
        process = EmulatorProcess(directory, extra_args)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    """A running emulator on a fresh data dir (stopped after the test)."""
    return emulator_factory()
