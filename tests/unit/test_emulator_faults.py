"""Emulator: fault and realism knobs, stats, and isolation of the admin API."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.harness.emulator import EmulatorProcess
from tests.harness.emulator_session import DriveSession


@pytest.fixture
def session(emulator: EmulatorProcess) -> Iterator[DriveSession]:
    drive = DriveSession(emulator, emulator.add_user(email="erin@example.com", password="pw"))
    yield drive
    drive.close()


def _limit(session: DriveSession) -> int:
    return session.drive("GET", "/users/limit").status_code


def test_fail_rate_answers_500_or_503_for_that_fraction(
    session: DriveSession, emulator: EmulatorProcess
) -> None:
    emulator.set_faults(fail_rate=0.5, seed=7)
    codes = [_limit(session) for _ in range(200)]
    failures = [c for c in codes if c != 200]
    assert set(failures) <= {500, 503} and {500, 503} <= set(failures)
    assert 60 <= len(failures) <= 140
    assert emulator.stats()["faults_injected"]["500"] + emulator.stats()["faults_injected"][
        "503"
    ] == len(failures)
    emulator.set_faults(fail_rate=1.0)
    network = session.network("GET", f"/buckets/{session.bucket}/files/{'a' * 24}/info")
    assert network.status_code in (500, 503) and "error" in network.json()
    emulator.set_faults(fail_rate=0)
    assert _limit(session) == 200


def test_fail_rate_from_the_command_line(emulator_factory: Callable[..., EmulatorProcess]) -> None:
    emulator = emulator_factory(["--fail-rate", "1", "--seed", "1"])
    user = emulator.add_user(email="f@example.com", password="pw")  # admin API is never faulted
    response = httpx.post(f"{emulator.drive_url}/auth/login", json={"email": user["email"]})
    assert response.status_code in (500, 503)
    body = response.json()
    assert body["statusCode"] == response.status_code and "message" in body


def test_throttle_sends_retry_after(session: DriveSession, emulator: EmulatorProcess) -> None:
    emulator.set_faults(throttle_next=2)
    first = session.drive("GET", "/users/limit")
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    assert session.drive("GET", "/users/limit").status_code == 429
    assert _limit(session) == 200
    emulator.set_faults(throttle_rate=1.0)
    assert _limit(session) == 429
    emulator.set_faults(throttle_rate=0.0, fail_next=1, fault_path_regex="/users/usage")
    assert _limit(session) == 200  # not matched by the path filter
    assert session.drive("GET", "/users/usage").status_code in (500, 503)


def test_reset_mid_body_on_get_and_put(session: DriveSession, emulator: EmulatorProcess) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    entry = session.upload_object(data)
    info = session.network("GET", f"/buckets/{session.bucket}/files/{entry['id']}/info").json()
    url = info["shards"][0]["url"]
    emulator.set_faults(reset_next=1)
    with pytest.raises(httpx.TransportError):
        httpx.get(url)
    assert httpx.get(url).content == data  # one-shot

    start = session.network(
        "POST",
        f"/v2/buckets/{session.bucket}/files/start",
        json={"uploads": [{"index": 0, "size": len(data)}]},
    ).json()["uploads"][0]
    emulator.set_faults(reset_next=1)
    with pytest.raises(httpx.TransportError):
        httpx.put(start["url"], content=data)
    finish = session.network(
        "POST",
        f"/v2/buckets/{session.bucket}/files/finish",
        json={"index": "0" * 64, "shards": [{"hash": "00" * 20, "uuid": start["uuid"]}]},
    )
    assert finish.status_code == 409  # nothing was stored
    assert emulator.stats()["faults_injected"]["reset"] == 2


def test_latency_and_bandwidth(session: DriveSession, emulator: EmulatorProcess) -> None:
    data = bytes(300_000)
    entry = session.upload_object(data)
    url = session.network("GET", f"/buckets/{session.bucket}/files/{entry['id']}/info").json()[
        "shards"
    ][0]["url"]
    emulator.set_faults(latency_ms=300)
    began = time.monotonic()
    assert _limit(session) == 200
    assert time.monotonic() - began >= 0.3
    emulator.set_faults(latency_ms=0, bandwidth=1_000_000)
    began = time.monotonic()
    assert httpx.get(url).content == data
    assert time.monotonic() - began >= 0.25


def test_stats_see_concurrent_requests(session: DriveSession, emulator: EmulatorProcess) -> None:
    emulator.reset_stats()
    emulator.set_faults(latency_ms=300)
    path = f"/folders/content/{session.root}/files?limit=50&offset=0"
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: session.drive("GET", path).status_code, range(8)))
    assert codes == [200] * 8
    stats = emulator.stats()
    route = "GET /drive/folders/content/{uuid}/files"
    assert stats["requests"][route] == 8
    assert stats["max_concurrent"] >= 4
    assert stats["max_concurrent_by_route"][route] >= 4
    emulator.reset_stats()
    assert emulator.stats()["requests"] == {}


def test_admin_api_is_not_reachable_through_the_apis(session: DriveSession) -> None:
    url = session.emulator.url
    for path in (
        "/drive/_emulator/stats",
        "/network/_emulator/stats",
        "/drive/_emulator/faults",
    ):
        response = httpx.get(url + path)
        assert response.status_code == 404, path
    # httpx would resolve dot segments itself; send the raw path.
    raw = http.client.HTTPConnection("127.0.0.1", session.emulator.port, timeout=10)
    raw.request("GET", "/drive/../_emulator/stats")
    assert raw.getresponse().status == 404
    raw.close()
    posted = httpx.post(f"{url}/drive/_emulator/faults", json={"fail_rate": 1})
    assert posted.status_code == 404
    assert _limit(session) == 200
    assert httpx.get(f"{url}/drive/nothing").json()["statusCode"] == 404
    bad = httpx.post(f"{url}/_emulator/faults", json={"fail_rate": 2})
    assert bad.status_code == 400
    bad_regex = httpx.post(f"{url}/_emulator/faults", json={"fault_path_regex": "(unclosed"})
    assert bad_regex.status_code == 400 and "fault_path_regex" in bad_regex.json()["error"]


def test_lost_answer_after_the_change_was_made(
    session: DriveSession, emulator: EmulatorProcess
) -> None:
    """The folder is created, but its creator never hears so: it must look before resending."""
    emulator.set_faults(lose_answer_next=1, fault_path_regex="^/drive/folders$")
    with pytest.raises(httpx.TransportError):
        session.drive(
            "POST", "/folders", json={"plainName": "made", "parentFolderUuid": session.root}
        )
    listed = session.drive("GET", f"/folders/content/{session.root}/folders?limit=50&offset=0")
    assert [f["plainName"] for f in listed.json()["folders"]] == ["made"]
    again = session.drive(
        "POST", "/folders", json={"plainName": "made", "parentFolderUuid": session.root}
    )
    assert again.status_code == 409  # a blind resend is refused, not duplicated
    # Errors are not "lost": only a request that changed something loses its answer.
    emulator.set_faults(lose_answer_next=1, fault_path_regex=None)
    assert session.drive("GET", "/folders/not-a-uuid/meta").status_code in (400, 404)
    assert emulator.stats()["faults_injected"]["lost_answer"] == 1
    with pytest.raises(httpx.TransportError):  # still armed: the next success loses its answer
        _limit(session)
    assert emulator.stats()["faults_injected"]["lost_answer"] == 2
    assert _limit(session) == 200
    # A method filter narrows any fault to requests of that method.
    emulator.set_faults(fail_next=1, fault_method="POST")
    assert _limit(session) == 200
    assert session.drive("POST", "/folders", json={}).status_code in (500, 503)
    emulator.set_faults(fault_method=None)
