"""fs/remote.py: the one interface to Internxt, its implementation over the client, the fake.

The delete rule (``--delete-mode`` applied, already gone counts as done) is written once, in
``delete_entry``; both implementations of ``Remote`` use it. Every implementation offers every
call of the interface with the same parameters, so the fake cannot drift from what the
filesystem may ask.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import pytest

from internxtfs.fs.modes import DeleteMode
from internxtfs.fs.remote import InternxtRemote, Kind, Remote, delete_entry
from internxtfs.internxt.errors import NotFound, ServerError
from tests.harness.fake_remote import REMOTE_CALLS, FakeRemote


def _calls(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("impl", [InternxtRemote, FakeRemote])
def test_every_implementation_offers_every_call_with_the_same_parameters(impl: type) -> None:
    wanted = _calls(Remote)  # type: ignore[arg-type]
    offered = _calls(impl)
    for name, signature in wanted.items():
        assert name in offered, f"{impl.__name__} lacks {name}"
        assert list(offered[name].parameters) == list(signature.parameters), name
        assert inspect.iscoroutinefunction(getattr(impl, name)) == inspect.iscoroutinefunction(
            getattr(Remote, name)
        ), name
    # FailingRemote can fail every call that reaches the server.
    assert {n for n in wanted if inspect.iscoroutinefunction(getattr(Remote, n))} == set(
        REMOTE_CALLS
    )


class Drive:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[str] = []
        self.error = error

    def _send(self, what: str) -> None:
        self.sent.append(what)
        if self.error is not None:
            raise self.error

    async def trash(self, items: Iterable[tuple[str, Kind]]) -> None:
        self._send(f"trash {list(items)}")

    async def delete_file(self, uuid: str) -> None:
        self._send(f"delete_file {uuid}")

    async def delete_folder(self, uuid: str) -> None:
        self._send(f"delete_folder {uuid}")


@pytest.mark.parametrize(
    ("mode", "kind", "sent"),
    [
        (DeleteMode.PERMANENT, "file", "delete_file u"),
        (DeleteMode.PERMANENT, "folder", "delete_folder u"),
        (DeleteMode.TRASH, "file", "trash [('u', 'file')]"),
        (DeleteMode.TRASH, "folder", "trash [('u', 'folder')]"),
    ],
)
async def test_the_delete_rule(mode: DeleteMode, kind: Kind, sent: str) -> None:
    drive = Drive()
    assert await delete_entry(drive, mode, kind, "u") is True
    assert drive.sent == [sent]
    gone = Drive(NotFound("File not found", status=404))
    assert await delete_entry(gone, mode, kind, "u", name="f.txt") is False  # done already
    failing = Drive(ServerError("down", status=503))
    with pytest.raises(ServerError):
        await delete_entry(failing, mode, kind, "u")
