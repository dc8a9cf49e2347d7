"""What one public write key can cost: requests and events per second, rows in the rejected
store, bytes of a response and series of the metrics are all bounded.

The write key ships in every web page, so anyone may send anything with it. The first test
is the reproduction of issue 11: a 548-byte gzip body that decompressed to 255,000 tiny
invalid events, all stored as rejected rows and all listed in the response.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from tests.conftest import (
    CLIENT_KEY,
    SECRET_KEY,
    TEST_CONFIG,
    TEST_START,
    WRITE_KEY,
    basic,
    bearer,
    server_config,
    write_config,
)
from touchpoint.api.app import create_app
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import ManualClock
from touchpoint.runtime import Workspace


def gzipped_batch(messages: list[Any]) -> bytes:
    return gzip.compress(orjson.dumps({"batch": messages}))


def post_gzip(client: TestClient, body: bytes) -> Any:
    headers = {**basic(WRITE_KEY), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    return client.post("/v1/batch", content=body, headers=headers)


def test_a_tiny_gzip_body_of_a_huge_batch_is_refused_whole(
    client: TestClient, workspace: Workspace
) -> None:
    body = gzipped_batch([1] * 255_000)
    assert len(body) < 1024  # the whole attack fits in one small request
    response = post_gzip(client, body)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["field"] == "batch"
    assert "2500" in error["message"]
    assert workspace.rejected.count() == 0


def test_identical_rejections_are_stored_once_with_a_count(
    client: TestClient, workspace: Workspace
) -> None:
    response = post_gzip(client, gzipped_batch([1] * 2500))
    assert response.status_code == 400
    assert workspace.rejected.count() == 1
    (stored,) = workspace.rejected.list().items
    assert stored.occurrences == 2500
    # The same again later: still one row, counted.
    post_gzip(client, gzipped_batch([1] * 10))
    (stored,) = workspace.rejected.list().items
    assert stored.occurrences == 2510
    listed = client.get("/v1/rejected", headers=bearer(SECRET_KEY)).json()
    assert listed["count"] == 1
    assert listed["events"][0]["occurrences"] == 2510
    assert listed["events"][0]["last_seen"] == stored.last_seen


def test_the_batch_response_lists_a_bounded_number_of_problems_with_a_count(
    client: TestClient,
) -> None:
    good = [{"type": "track", "event": "Ok", "userId": "u1", "messageId": "ok-1"}]
    bad = [{"type": "track", "userId": f"u{index}"} for index in range(2000)]  # no `event`
    response = post_gzip(client, gzipped_batch(good + bad))
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected_count"] == 2000
    assert len(body["rejected"]) == 100
    assert [problem["index"] for problem in body["rejected"][:3]] == [1, 2, 3]
    assert len(response.content) < 64 * 1024


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[TestClient, Workspace, ManualClock]]:
    """A workspace whose `web` source may send 2 requests/s (burst 3) and 10 events/s
    (burst 20), batches of 20 events at most, 2 rejected events kept per source, on a clock
    that moves only when told."""
    config = {
        **TEST_CONFIG,
        "collect": {"max_batch_events": 20, "rejected_per_source": 2},
        "sources": [
            {
                **TEST_CONFIG["sources"][0],
                "rate_limit": {
                    "requests_per_second": 2,
                    "request_burst": 3,
                    "events_per_second": 10,
                    "event_burst": 20,
                },
            },
            *TEST_CONFIG["sources"][1:],
        ],
    }
    settings = load_settings(write_config(tmp_path, config), tmp_path / "data", environ={})
    clock = ManualClock(TEST_START)
    workspace = Workspace.open(settings, clock=clock)
    try:
        with TestClient(create_app(settings, workspace=workspace)) as client:
            yield client, workspace, clock
    finally:
        workspace.close()


def _track(client: TestClient, count: int = 1, key: str = WRITE_KEY) -> Any:
    batch = [{"type": "track", "event": "Viewed", "userId": "u1"} for _ in range(count)]
    return client.post("/v1/batch", json={"batch": batch}, headers=basic(key))


def test_requests_over_the_source_rate_get_429_with_retry_after(
    limited: tuple[TestClient, Workspace, ManualClock],
) -> None:
    client, _, clock = limited
    assert [_track(client).status_code for _ in range(3)] == [200, 200, 200]
    refused = _track(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["limit"] == "requests_per_second"
    assert error["source"] == "web"
    assert error["retry_after"] == pytest.approx(0.5)
    clock.advance(timedelta(seconds=0.5))
    assert _track(client).status_code == 200


def test_events_over_the_source_rate_get_429_and_other_sources_are_not_touched(
    limited: tuple[TestClient, Workspace, ManualClock],
) -> None:
    client, workspace, clock = limited
    assert _track(client, 20).status_code == 200
    clock.advance(timedelta(seconds=0.5))  # 5 events' worth of room, 1 request's
    refused = _track(client, 6)
    assert refused.status_code == 429
    assert refused.json()["error"]["limit"] == "events_per_second"
    assert int(refused.headers["Retry-After"]) >= 1
    assert _track(client, 5).status_code == 200  # a refused request costs nothing
    strict = TEST_CONFIG["sources"][1]["write_key"]
    assert _track(client, 20, key=strict).status_code == 200  # its own (default) limit
    assert workspace.log.count() == 20 + 5 + 20


def test_the_rejected_store_keeps_a_source_under_its_cap_and_within_retention(
    limited: tuple[TestClient, Workspace, ManualClock],
) -> None:
    client, workspace, clock = limited
    bad = [{"type": "track", "userId": f"u{index}"} for index in range(3)]  # no `event`
    response = client.post("/v1/batch", json={"batch": bad}, headers=basic(WRITE_KEY))
    assert response.status_code == 400 and response.json()["error"]["rejected_count"] == 3
    assert workspace.rejected.count() == 2
    text = generate_latest(workspace.metrics.registry).decode()
    assert 'touchpoint_rejected_not_stored_total{source="web"} 1.0' in text
    clock.advance(timedelta(days=6))
    again = [{"type": "track", "userId": "u0"}]  # seen again: kept longer
    refused_again = client.post("/v1/batch", json={"batch": again}, headers=basic(WRITE_KEY))
    assert refused_again.status_code == 400
    clock.advance(timedelta(days=2))
    assert workspace.purge_rejected() == 1
    (kept,) = workspace.rejected.list().items
    assert (kept.event, kept.occurrences) == ({"type": "track", "userId": "u0"}, 2)


def _series(workspace: Workspace, name: str) -> int:
    text = generate_latest(workspace.metrics.registry).decode()
    return sum(1 for line in text.splitlines() if line.startswith(name + "{"))


def test_metric_labels_stay_bounded_whatever_arrives(
    client: TestClient, workspace: Workspace
) -> None:
    for index in range(2_000):
        client.get(f"/no/such/path/{index}")
        client.request(f"VERB{index}", "/v1/batch")
    batch = [{"type": "track", "event": f"Event {index}", "userId": "u1"} for index in range(2_000)]
    assert client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY)).is_success
    latency = _series(workspace, "touchpoint_http_request_duration_seconds_count")
    assert latency <= 10
    assert _series(workspace, "touchpoint_events_accepted_total") == 1


def test_server_mode_limits_through_redis(
    tmp_path: Path, postgres_schema: str, redis_prefix: str
) -> None:
    limit = {"requests_per_second": 1, "request_burst": 2}
    source = {**TEST_CONFIG["sources"][0], "rate_limit": limit}
    config = server_config(
        postgres_schema, redis_prefix, sources=[source, *TEST_CONFIG["sources"][1:]]
    )
    settings = load_settings(write_config(tmp_path, config), tmp_path / "data", environ={})
    workspace = Workspace.open(settings, clock=ManualClock(TEST_START))
    try:
        assert not workspace.rate_limiter.local
        with TestClient(create_app(settings, workspace=workspace)) as client:
            assert [_track(client).status_code for _ in range(3)] == [200, 200, 429]
    finally:
        workspace.close()


def test_decisions_asked_with_a_write_key_count_against_the_source_rate(tmp_path: Path) -> None:
    """A page's decide request costs the server a decision and a log row: the write key
    that asks is public, so it is charged to its source's request rate like an event."""
    config = {
        **TEST_CONFIG,
        "sources": [
            *TEST_CONFIG["sources"][:2],
            {
                **TEST_CONFIG["sources"][2],
                "rate_limit": {"requests_per_second": 1, "request_burst": 2},
            },
        ],
    }
    settings = load_settings(write_config(tmp_path, config), tmp_path / "data", environ={})
    clock = ManualClock(TEST_START)
    workspace = Workspace.open(settings, clock=clock)
    body = {"anonymous_id": "device-1", "placements": ["home_hero"]}
    try:
        with TestClient(create_app(settings, workspace=workspace)) as client:
            answers = [
                client.post("/v1/decide", json=body, headers=basic(CLIENT_KEY)) for _ in range(3)
            ]
            assert [answer.status_code for answer in answers] == [200, 200, 429]
            assert answers[2].json()["error"]["source"] == "site"
            assert answers[2].headers["Retry-After"] == "1"
            secret = client.post("/v1/decide", json=body, headers=bearer(SECRET_KEY))
            assert secret.status_code == 200  # the secret key is a server's: not limited
            clock.advance(timedelta(seconds=1))
            again = client.post("/v1/decide", json=body, headers=basic(CLIENT_KEY))
            assert again.status_code == 200
    finally:
        workspace.close()
