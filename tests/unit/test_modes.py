"""--delete-mode and --fsync parse into their enums (fs/modes.py), and only their members."""

from __future__ import annotations

import pytest

from internxtfs.cli import build_parser
from internxtfs.commands.mounting import mount_config_from_args
from internxtfs.fs.modes import DeleteMode, FsyncMode


def test_the_options_become_enums_and_default_as_documented() -> None:
    parser = build_parser()
    args = parser.parse_args(["mount", "/mnt/x", "--delete-mode", "trash", "--fsync", "local"])
    fs = mount_config_from_args(args).fs  # type: ignore[attr-defined]
    assert fs.delete_mode is DeleteMode.TRASH and fs.fsync is FsyncMode.LOCAL
    fs = mount_config_from_args(parser.parse_args(["mount", "/mnt/x"])).fs  # type: ignore[attr-defined]
    assert fs.delete_mode is DeleteMode.PERMANENT and fs.fsync is FsyncMode.REMOTE


@pytest.mark.parametrize("argv", [["--delete-mode", "shred"], ["--fsync", "never"]])
def test_anything_else_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["mount", "/mnt/x", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err  # naming what is accepted:
    assert "'permanent', 'trash'" in err or "'remote', 'local'" in err
