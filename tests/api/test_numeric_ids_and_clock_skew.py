"""Numeric ids are kept exactly or refused, never rounded into someone else's id; a time
corrected for the client's clock stays inside the 1970-2200 range every time must keep."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SECRET_KEY, WRITE_KEY, basic, bearer, drain
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)


def post_raw(client: TestClient, body: str) -> Any:
    headers = {**basic(WRITE_KEY), "Content-Type": "application/json"}
    return client.post("/v1/batch", content=body.encode(), headers=headers)


@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_numeric_ids_past_2_to_the_64_are_refused_naming_the_field(
    client: TestClient, workspace: Workspace, field: str
) -> None:
    first, second = 2**64 + 1, 2**64 + 2  # orjson reads both as the same float
    events = [f'{{"type":"identify","{field}":{value}}}' for value in (first, second)]
    response = post_raw(client, '{"batch":[' + ",".join(events) + "]}")
    assert response.status_code == 400, response.text
    rejected = response.json()["error"]["rejected"]
    assert [problem["errors"][0]["field"] for problem in rejected] == [field, field]
    assert "send it as a string" in rejected[0]["errors"][0]["reason"]


@pytest.mark.parametrize("value", ["1.5", "1e300", "9007199254740993.0"])
def test_ids_that_are_not_exact_whole_numbers_are_refused(client: TestClient, value: str) -> None:
    response = post_raw(client, '{"batch":[{"type":"identify","userId":' + value + "}]}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["rejected"][0]["errors"][0]["field"] == "userId"


def test_whole_numbers_up_to_2_to_the_64_are_kept_exactly(
    client: TestClient, workspace: Workspace
) -> None:
    big = [2**64 - 1, 2**64 - 2, 2**53 + 1, -(2**63)]
    events = [
        f'{{"type":"identify","userId":{value},"traits":{{"n":{i}}}}}'
        for i, value in enumerate(big)
    ]
    response = post_raw(client, '{"batch":[' + ",".join(events) + "]}")
    assert response.json()["accepted"] == 4, response.text
    drain(workspace)
    for i, value in enumerate(big):
        profile = client.get(f"/v1/profiles/user_id/{value}", headers=ADMIN)
        assert profile.status_code == 200, profile.text
        assert profile.json()["traits"]["n"] == i  # four people, not one


def test_a_skew_correction_before_1970_falls_back_to_the_receive_time(
    client: TestClient, workspace: Workspace
) -> None:
    event = {
        "type": "track",
        "event": "Viewed",
        "userId": "skewed",
        "originalTimestamp": "1970-01-01T00:00:01Z",
        "sentAt": "2199-12-31T00:00:00Z",
    }
    response = client.post("/v1/batch", json={"batch": [event]}, headers=basic(WRITE_KEY))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    drain(workspace)
    [stored] = client.get("/v1/profiles/user_id/skewed/events", headers=ADMIN).json()["events"]
    assert stored["timestamp"] == stored["receivedAt"]
    assert stored["timestamp"].startswith("2026-11-21")
    assert stored["originalTimestamp"] == "1970-01-01T00:00:01.000Z"
    assert any("before 1970" in note for note in stored["violations"])


def test_a_skew_correction_within_range_still_applies(
    client: TestClient, workspace: Workspace
) -> None:
    event = {
        "type": "track",
        "event": "Viewed",
        "userId": "slow-clock",
        "originalTimestamp": "2026-11-21T10:00:00Z",
        "sentAt": "2026-11-21T10:00:05Z",
    }
    response = client.post("/v1/batch", json={"batch": [event]}, headers=basic(WRITE_KEY))
    assert response.json()["accepted"] == 1, response.text
    drain(workspace)
    [stored] = client.get("/v1/profiles/user_id/slow-clock/events", headers=ADMIN).json()["events"]
    assert stored["timestamp"].startswith("2026-11-21T11:59:5")
    assert stored["violations"] == []
