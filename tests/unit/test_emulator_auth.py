"""Emulator: login, 2FA, lockout, platform access, tokens (protocol §2)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import jwt
import pyotp
import pytest

from internxtfs.internxt.crypto import decrypt_text, is_valid_mnemonic, login_password_field
from tests.harness.emulator import EmulatorProcess
from tests.harness.emulator_session import DriveSession, login

EMAIL = "alice@example.com"
PASSWORD = "s3cret pässword"
UNAUTHORIZED = {"message": "Unauthorized", "statusCode": 401}


def _wrong(message: str, status: int = 401) -> dict[str, object]:
    reasons = {401: "Unauthorized", 403: "Forbidden"}
    return {"statusCode": status, "message": message, "error": reasons[status]}


def test_login_flow_gives_the_documented_user_and_token(emulator: EmulatorProcess) -> None:
    created = emulator.add_user(email=EMAIL, password=PASSWORD)
    http = httpx.Client()
    details = http.post(f"{emulator.drive_url}/auth/login", json={"email": "Alice@Example.com"})
    assert details.status_code == 200
    assert details.json()["tfa"] is False
    assert re.fullmatch(r"[0-9a-f]{32}", decrypt_text(details.json()["sKey"]))

    response = login(emulator, EMAIL, PASSWORD)
    assert response.status_code == 200
    body = response.json()
    user = body["user"]
    assert user["email"] == EMAIL
    assert user["bucket"] == created["bucket"] and re.fullmatch(r"[0-9a-f]{24}", user["bucket"])
    assert user["rootFolderId"] == created["rootFolderId"]
    assert isinstance(user["root_folder_id"], int) and not isinstance(user["root_folder_id"], bool)
    assert user["userId"].startswith("$2a$08$")
    assert user["bridgeUser"] == created["bridgeUser"]
    assert user["privateKey"] is None and user["publicKey"] is None and user["revocateKey"] is None
    assert isinstance(user["credit"], int)
    assert decrypt_text(user["mnemonic"], PASSWORD) == created["mnemonic"]
    assert is_valid_mnemonic(created["mnemonic"])

    claims = jwt.decode(body["newToken"], options={"verify_signature": False})
    assert isinstance(claims["exp"], int)
    assert claims["exp"] - claims["iat"] == 3 * 24 * 3600
    assert claims["sub"] == user["uuid"] == claims["payload"]["uuid"]
    assert claims["payload"]["networkCredentials"]["user"] == user["bridgeUser"]
    assert claims["payload"]["platform"] == "rclone"  # no internxt-client header
    assert claims["jti"]


def test_unknown_email_and_wrong_password_are_401(emulator: EmulatorProcess) -> None:
    emulator.add_user(email=EMAIL, password=PASSWORD)
    unknown = httpx.post(f"{emulator.drive_url}/auth/login", json={"email": "nobody@example.com"})
    assert unknown.status_code == 401
    assert unknown.json() == _wrong("Wrong login credentials")
    wrong = login(emulator, EMAIL, "not the password")
    assert wrong.status_code == 401
    assert wrong.json() == _wrong("Wrong login credentials")


def test_totp_second_factor(emulator: EmulatorProcess) -> None:
    secret = pyotp.random_base32()
    emulator.add_user(email=EMAIL, password=PASSWORD, totp_secret=secret)
    http = httpx.Client()
    details = http.post(f"{emulator.drive_url}/auth/login", json={"email": EMAIL}).json()
    assert details["tfa"] is True
    password = login_password_field(PASSWORD, details["sKey"])
    url = f"{emulator.drive_url}/auth/cli/login/access"

    missing = http.post(url, json={"email": EMAIL, "password": password})
    assert missing.status_code == 401
    assert missing.json() == _wrong("Wrong 2-factor auth code")
    code = pyotp.TOTP(secret).now()
    bad = str((int(code) + 500000) % 1000000).zfill(6)
    wrong = http.post(url, json={"email": EMAIL, "password": password, "tfa": bad})
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "Wrong 2-factor auth code"
    # One step in the past is inside the ±2 window.
    previous = pyotp.TOTP(secret).at(time.time() - 30)
    good = http.post(url, json={"email": EMAIL, "password": password, "tfa": previous})
    assert good.status_code == 200, good.text


def test_ten_failures_block_the_account(emulator: EmulatorProcess) -> None:
    emulator.add_user(email=EMAIL, password=PASSWORD)
    for _ in range(10):
        assert login(emulator, EMAIL, "wrong").status_code == 401
    blocked = login(emulator, EMAIL, PASSWORD)
    assert blocked.status_code == 403
    assert blocked.json() == _wrong(
        "Your account has been blocked for security reasons. Please reach out to us", 403
    )
    emulator.update_user(EMAIL, failed_logins=0)
    assert login(emulator, EMAIL, PASSWORD).status_code == 200


def test_success_resets_the_failure_count(emulator: EmulatorProcess) -> None:
    emulator.add_user(email=EMAIL, password=PASSWORD)
    for _ in range(9):
        login(emulator, EMAIL, "wrong")
    assert login(emulator, EMAIL, PASSWORD).status_code == 200
    for _ in range(9):
        login(emulator, EMAIL, "wrong")
    assert login(emulator, EMAIL, PASSWORD).status_code == 200


def test_platform_access_knob(emulator: EmulatorProcess) -> None:
    emulator.add_user(email=EMAIL, password=PASSWORD)
    emulator.update_user(EMAIL, platforms=["cli"])
    refused = login(emulator, EMAIL, PASSWORD)
    assert refused.status_code == 402
    assert refused.json()["message"] == "rclone access not allowed for this user tier"
    cli = httpx.Client(headers={"internxt-client": "internxt-cli"})
    allowed = login(emulator, EMAIL, PASSWORD, client=cli)
    assert allowed.status_code == 200
    claims = jwt.decode(allowed.json()["newToken"], options={"verify_signature": False})
    assert claims["payload"]["platform"] == "cli"
    # The web endpoint has no platform gate.
    emulator.update_user(EMAIL, platforms=False)
    http = httpx.Client()
    s_key = http.post(f"{emulator.drive_url}/auth/login", json={"email": EMAIL}).json()["sKey"]
    web = http.post(
        f"{emulator.drive_url}/auth/login/access",
        json={"email": EMAIL, "password": login_password_field(PASSWORD, s_key)},
    )
    assert web.status_code == 200


def test_refresh_rotates_and_logout_blacklists(emulator: EmulatorProcess) -> None:
    session = DriveSession(emulator, emulator.add_user(email=EMAIL, password=PASSWORD))
    refreshed = session.drive("GET", "/users/cli/refresh")
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["oldToken"] == session.token
    assert body["user"]["bridgeUser"] == session.user["bridgeUser"]
    assert body["newToken"] != session.token
    claims = jwt.decode(body["newToken"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7 * 24 * 3600
    assert session.drive("GET", "/users/refresh").status_code == 200

    logout = session.drive("GET", "/auth/logout")
    assert logout.status_code == 200 and logout.json() == {"logout": True}
    after = session.drive("GET", "/users/usage")
    assert after.status_code == 401 and after.json() == UNAUTHORIZED
    # Other tokens of the same user stay valid.
    session.token = body["newToken"]
    assert session.drive("GET", "/users/usage").status_code == 200


def test_bad_tokens_are_401(emulator: EmulatorProcess) -> None:
    session = DriveSession(emulator, emulator.add_user(email=EMAIL, password=PASSWORD))
    legacy = session.login["token"]  # no payload.uuid: never a valid Bearer
    for token in ("x", "garbage", legacy, session.token[:-3] + "abc"):
        response = httpx.get(
            f"{emulator.drive_url}/users/limit", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, token
        assert response.json() == UNAUTHORIZED
    assert httpx.get(f"{emulator.drive_url}/users/limit").status_code == 401


def test_tokens_expire(emulator_factory: Callable[..., EmulatorProcess]) -> None:
    emulator = emulator_factory(["--token-lifetime", "2"])
    session = DriveSession(emulator, emulator.add_user(email=EMAIL, password=PASSWORD))
    claims = jwt.decode(session.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 2
    assert session.drive("GET", "/users/limit").status_code == 200
    time.sleep(3.1)
    expired = session.drive("GET", "/users/limit")
    assert expired.status_code == 401
    assert expired.json() == UNAUTHORIZED
    # The lifetime is a run-time knob too.
    emulator.set_faults(token_lifetime=None)
    fresh = DriveSession(emulator, {"email": EMAIL, "password": PASSWORD})
    claims = jwt.decode(fresh.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3 * 24 * 3600


@pytest.mark.parametrize("path", ["/users/usage", "/users/limit", "/files/limits"])
def test_quota_endpoints(emulator: EmulatorProcess, path: str) -> None:
    session = DriveSession(emulator, emulator.add_user(email=EMAIL, password=PASSWORD, quota=10**9))
    body = session.drive("GET", path).json()
    expected = {
        "/users/usage": {"drive": 0, "backup": 0, "mail": 0, "total": 0},
        "/users/limit": {"maxSpaceBytes": 10**9},
    }
    if path == "/files/limits":
        assert body["maxUploadFileSize"] is None
        assert body["versioning"]["enabled"] is False
    else:
        assert body == expected[path]
