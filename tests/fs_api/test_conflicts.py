"""The conflict policy (internxtfs/fs/conflicts.py) through the handlers over the in-memory
remote: another client took a name or deleted a folder after this mount's listing."""

from __future__ import annotations

from internxtfs.fs.conflicts import RECOVERY_FOLDER
from internxtfs.fs.inodes import ROOT_INODE
from tests.fs_api.conftest import serving
from tests.harness.fake_remote import ROOT, FakeRemote
from tests.harness.in_process import CTX, InProcess


def _fake(m: InProcess) -> FakeRemote:
    return m.remote.inner  # type: ignore[no-any-return]


async def test_a_new_file_whose_name_was_taken_after_the_listing_replaces_that_content(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        fh, _ = await mounted.create("a.txt")  # the listing it looked in had no a.txt
        theirs = fake.add_file(ROOT, "a.txt", b"theirs")
        await mounted.fs.write(fh, 0, b"ours")
        await mounted.fs.release(fh)
        assert await mounted.uploader.wait_idle() == {}
    # The file last written here wins the name, as open(O_CREAT|O_TRUNC) on a local disk.
    assert fake.names(ROOT) == ["a.txt"]
    assert fake.file_at(ROOT, "a.txt").uuid == theirs  # type: ignore[union-attr]
    assert fake.content(ROOT, "a.txt") == b"ours"


async def test_a_rename_onto_a_name_another_client_took_replaces_that_file(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        await mounted.write_file("tmp", b"new")
        assert await mounted.uploader.wait_idle() == {}
        assert await mounted.listdir() == ["tmp"]
        fake.add_file(ROOT, "final", b"theirs")  # after our listing
        await mounted.rename("tmp", "final")
        assert await mounted.fs.replacements.resolve_all() == 0
    assert fake.names(ROOT) == ["final"] and fake.content(ROOT, "final") == b"new"


async def test_unsent_files_of_a_folder_deleted_elsewhere_are_stored_in_recovery(
    mounted: InProcess,
) -> None:
    fake = _fake(mounted)
    async with serving(mounted):
        attrs = await mounted.fs.mkdir(ROOT_INODE, b"d", 0o755, CTX)
        folder = fake.folder_at(ROOT, "d")
        assert folder is not None
        await mounted.write_file("f.txt", b"unsent", parent=attrs.st_ino)
        await fake.delete_folder(folder.uuid)  # elsewhere, before the upload
        assert await mounted.uploader.wait_idle() == {}
    recovery = fake.folder_at(ROOT, RECOVERY_FOLDER)
    assert recovery is not None
    [name] = fake.names(recovery.uuid)
    assert name.startswith("f (recovered ") and name.endswith(").txt")
    assert fake.content(recovery.uuid, name) == b"unsent"
