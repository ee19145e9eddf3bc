"""A tiny synchronous Internxt client for tests that poke the emulator over real sockets.

Not the project's protocol client (that one lives in ``internxtfs.internxt``): this speaks the
wire protocol literally, so emulator tests do not depend on the code they help to test.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pyotp

from internxtfs.internxt.crypto import login_password_field, network_auth_header, shard_hash

from .emulator import EmulatorProcess


def login(
    emulator: EmulatorProcess,
    email: str,
    password: str,
    totp_secret: str | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """Security details + access, as a CLI does; returns the access response."""
    http = client or httpx.Client(timeout=30)
    details = http.post(f"{emulator.drive_url}/auth/login", json={"email": email})
    details.raise_for_status()
    body: dict[str, Any] = {
        "email": email,
        "password": login_password_field(password, details.json()["sKey"]),
    }
    if totp_secret:
        body["tfa"] = pyotp.TOTP(totp_secret).now()
    return http.post(f"{emulator.drive_url}/auth/cli/login/access", json=body)


class DriveSession:
    """A logged-in user: Bearer for the drive, Basic for the network."""

    def __init__(self, emulator: EmulatorProcess, user: dict[str, Any]) -> None:
        self.emulator = emulator
        self.http = httpx.Client(timeout=60)
        response = login(emulator, user["email"], user["password"], user.get("totp_secret"))
        response.raise_for_status()
        self.login = response.json()
        self.token: str = self.login["newToken"]
        self.user: dict[str, Any] = self.login["user"]
        self.bucket: str = self.user["bucket"]
        self.root: str = self.user["rootFolderId"]
        self.basic = network_auth_header(self.user["bridgeUser"], self.user["userId"])

    def close(self) -> None:
        self.http.close()

    def drive(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.http.request(
            method, f"{self.emulator.drive_url}{path}", headers=headers, **kwargs
        )

    def network(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": self.basic, **kwargs.pop("headers", {})}
        return self.http.request(
            method, f"{self.emulator.network_url}{path}", headers=headers, **kwargs
        )

    def mkdir(self, name: str, parent: str | None = None) -> dict[str, Any]:
        response = self.drive(
            "POST", "/folders", json={"plainName": name, "parentFolderUuid": parent or self.root}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def upload_object(self, data: bytes) -> dict[str, Any]:
        """start → PUT → finish of one single-part object (bytes are taken as ciphertext)."""
        start = self.network(
            "POST",
            f"/v2/buckets/{self.bucket}/files/start?multiparts=1",
            json={"uploads": [{"index": 0, "size": len(data)}]},
        )
        assert start.status_code == 200, start.text
        upload = start.json()["uploads"][0]
        put = self.http.put(upload["url"], content=data)
        assert put.status_code == 200, put.text
        finish = self.network(
            "POST",
            f"/v2/buckets/{self.bucket}/files/finish",
            json={
                "index": secrets.token_hex(32),
                "shards": [{"hash": shard_hash(data), "uuid": upload["uuid"]}],
            },
        )
        assert finish.status_code == 200, finish.text
        return finish.json()

    def create_file(
        self, name: str, ext: str, data: bytes, folder: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "plainName": name,
            "type": ext,
            "size": len(data),
            "bucket": self.bucket,
            "folderUuid": folder or self.root,
            "encryptVersion": "03-aes",
        }
        if data:
            body["fileId"] = self.upload_object(data)["id"]
        response = self.drive("POST", "/files", json=body)
        assert response.status_code == 201, response.text
        return response.json()
