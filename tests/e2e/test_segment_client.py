"""The official Segment Python SDK, unchanged, pointed at a real Touchpoint server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from segment.analytics import Client

from tests.conftest import SECRET_KEY, TEST_CONFIG, WRITE_KEY, bearer, write_config
from touchpoint.testing import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    config = write_config(tmp_path, TEST_CONFIG)
    process = ServerProcess(tmp_path / "data", "--config", str(config)).start()
    yield process
    process.stop()


def wait_for_profile(url: str, path: str, check, timeout: float = 15.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}{path}", headers=bearer(SECRET_KEY))
        if response.status_code == 200:
            body = response.json()
            if check(body):
                return body
        time.sleep(0.1)
    raise AssertionError(f"profile at {path} never satisfied the check; last: {body}")


@pytest.mark.parametrize("gzip", [False, True])
def test_official_segment_client(server: ServerProcess, gzip: bool) -> None:
    failures: list[Exception] = []
    client = Client(
        WRITE_KEY,
        host=server.url,
        sync_mode=True,
        gzip=gzip,
        on_error=lambda error, _items: failures.append(error),
    )
    client.page(anonymous_id="sdk-anon", name="Home", properties={"path": "/"})
    client.track(anonymous_id="sdk-anon", event="Product Viewed", properties={"product_id": "p7"})
    client.identify(
        user_id="sdk-user",
        anonymous_id="sdk-anon",
        traits={"email": "sdk@example.com", "plan": "team"},
    )
    client.track(user_id="sdk-user", event="Order Completed", properties={"revenue": 19.99})
    client.alias(previous_id="sdk-anon-2", user_id="sdk-user")
    client.flush()
    assert not failures

    profile = wait_for_profile(
        server.url,
        "/v1/profiles/user_id/sdk-user",
        lambda body: (
            body["features"].get("revenue") == 19.99
            and "sdk-anon-2" in body["identities"].get("anonymous_id", [])
        ),
    )
    assert profile["traits"]["plan"] == "team"
    assert set(profile["identities"]["anonymous_id"]) == {"sdk-anon", "sdk-anon-2"}
    assert profile["features"]["recent_products"] == ["p7"]
    same = httpx.get(f"{server.url}/v1/profiles/email/sdk@example.com", headers=bearer(SECRET_KEY))
    assert same.json()["profile_id"] == profile["profile_id"]
    events = httpx.get(
        f"{server.url}/v1/profiles/user_id/sdk-user/events", headers=bearer(SECRET_KEY)
    ).json()["events"]
    assert {event["type"] for event in events} == {"page", "track", "identify", "alias"}
    assert all(event["context"]["library"]["name"] == "analytics-python" for event in events)
