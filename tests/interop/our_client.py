"""Drive our protocol client (``internxtfs.internxt``) from the command line, for interop tests.

It has to run inside the emulator's namespaces (``gateway.internxt.com`` only resolves there),
so the tests start it as a separate process through ``nsenter`` rather than importing it. It
talks to the same fixed production URLs rclone uses, which is the point: both clients meet the
emulator exactly as they would meet Internxt.

Usage (prints one JSON object on stdout):

    our_client.py download EMAIL PASSWORD REMOTE_PATH OUT_FILE [OFFSET:LENGTH ...]
    our_client.py upload EMAIL PASSWORD LOCAL_FILE NAME
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

import trio

from internxtfs.internxt.client import InternxtClient

DRIVE_URL = "https://gateway.internxt.com/drive"
NETWORK_URL = "https://gateway.internxt.com/network"


async def _find_file(client: InternxtClient, remote_path: str) -> Any:
    """Walk from the root folder by name, as a user of the API would."""
    *folders, name = remote_path.strip("/").split("/")
    folder_uuid = client.session.root_folder_uuid
    for part in folders:
        matches = [f for f in await client.drive.list_folders(folder_uuid) if f.name == part]
        if len(matches) != 1:
            raise SystemExit(f"folder {part!r}: {len(matches)} matches")
        folder_uuid = matches[0].uuid
    files = [f for f in await client.drive.list_files(folder_uuid) if f.name == name]
    if len(files) != 1:
        raise SystemExit(f"file {name!r}: {len(files)} matches")
    return files[0]


# Files are opened by main() and handed in: local disk I/O is not what is under test here.


async def download(
    email: str, password: str, remote_path: str, sink: BinaryIO, ranges: list[str]
) -> Any:
    async with InternxtClient(drive_url=DRIVE_URL, network_url=NETWORK_URL) as client:
        await client.login(email, password)
        entry = await _find_file(client, remote_path)
        digest = hashlib.sha256()
        written = 0
        if entry.size:
            # download_stream also checks the shard hash rclone computed at upload.
            async for chunk in client.network.download_stream(entry.file_id):
                sink.write(chunk)
                digest.update(chunk)
                written += len(chunk)
        pieces = []
        for spec in ranges:
            offset, length = (int(x) for x in spec.split(":"))
            data = await client.network.download_range(entry.file_id, offset, length)
            pieces.append(data.hex())
        return {
            "size": entry.size,
            "written": written,
            "sha256": digest.hexdigest(),
            "ranges": pieces,
        }


async def upload(
    email: str, password: str, source: BinaryIO, size: int, mtime: float, name: str
) -> Any:
    async with InternxtClient(drive_url=DRIVE_URL, network_url=NETWORK_URL) as client:
        await client.login(email, password)
        file_id = None
        if size:

            async def read(offset: int, n: int) -> bytes:
                # No await between seek and read: concurrent part uploads cannot interleave.
                source.seek(offset)
                return source.read(n)

            file_id = await client.network.upload(read, size)
        entry = await client.drive.create_file(
            client.session.root_folder_uuid, name, size, file_id, mtime=mtime
        )
        return {"uuid": entry.uuid, "fileId": entry.file_id, "size": entry.size, "name": entry.name}


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "download":
        email, password, remote_path, out, *ranges = args
        with Path(out).open("wb") as sink:
            result = trio.run(download, email, password, remote_path, sink, ranges)
    elif command == "upload":
        email, password, local, name = args
        stat = Path(local).stat()
        with Path(local).open("rb") as source:
            result = trio.run(upload, email, password, source, stat.st_size, stat.st_mtime, name)
    else:
        raise SystemExit(f"unknown command {command!r}")
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
