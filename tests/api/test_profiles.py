from fastapi.testclient import TestClient

from tests.conftest import SECRET_KEY, WRITE_KEY, basic, bearer, drain
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)


def send(client: TestClient, *events: dict) -> None:
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=basic(WRITE_KEY))
    assert response.status_code == 200, response.text
    assert not response.json()["rejected"], response.json()


def journey(client: TestClient, workspace: Workspace) -> None:
    send(
        client,
        {
            "type": "page",
            "anonymousId": "anon-1",
            "name": "Home",
            "timestamp": "2026-11-20T10:00:00Z",
        },
        {
            "type": "track",
            "anonymousId": "anon-1",
            "event": "Product Viewed",
            "properties": {"product_id": "p1"},
            "timestamp": "2026-11-20T10:01:00Z",
        },
        {
            "type": "track",
            "anonymousId": "anon-1",
            "event": "Product Viewed",
            "properties": {"product_id": "p2"},
            "timestamp": "2026-11-20T10:02:00Z",
        },
        {
            "type": "identify",
            "anonymousId": "anon-1",
            "userId": "user-1",
            "traits": {"email": "Jane@Example.com", "plan": "pro"},
            "timestamp": "2026-11-20T10:03:00Z",
        },
        {
            "type": "track",
            "userId": "user-1",
            "event": "Order Completed",
            "properties": {"revenue": 42.5},
            "timestamp": "2026-11-20T10:04:00Z",
        },
    )
    drain(workspace)


def test_the_profile_api_needs_the_secret_key(client: TestClient) -> None:
    assert client.get("/v1/profiles/user_id/u1").status_code == 401
    assert client.get("/v1/profiles/user_id/u1", headers=bearer("nope-nope")).status_code == 401
    forbidden = client.get("/v1/profiles/user_id/u1", headers=bearer(WRITE_KEY))
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    assert client.get("/v1/segments", headers=bearer(WRITE_KEY)).status_code == 403


def test_every_identifier_finds_the_one_merged_profile(
    client: TestClient, workspace: Workspace
) -> None:
    journey(client, workspace)
    by_user = client.get("/v1/profiles/user_id/user-1", headers=ADMIN)
    assert by_user.status_code == 200, by_user.text
    profile = by_user.json()
    by_anon = client.get("/v1/profiles/anonymous_id/anon-1", headers=ADMIN).json()
    by_email = client.get("/v1/profiles/email/ JANE@example.com", headers=ADMIN).json()
    assert profile["profile_id"] == by_anon["profile_id"] == by_email["profile_id"]
    assert profile["traits"]["plan"] == "pro"
    assert "email" not in profile["traits"]
    assert profile["identities"]["user_id"] == ["user-1"]
    assert profile["identities"]["email"][0].startswith("h1:")
    assert profile["features"]["revenue"] == 42.5
    assert profile["features"]["recent_products"] == ["p2", "p1"]
    assert "buyers" in profile["segments"]
    assert profile["first_seen"] == "2026-11-20T10:00:00.000Z"


def test_timeline_is_paginated_newest_first(client: TestClient, workspace: Workspace) -> None:
    journey(client, workspace)
    first = client.get("/v1/profiles/user_id/user-1/events?limit=2", headers=ADMIN).json()
    assert [event["type"] for event in first["events"]] == ["track", "identify"]
    assert first["next_cursor"]
    rest = client.get(
        f"/v1/profiles/user_id/user-1/events?limit=10&cursor={first['next_cursor']}", headers=ADMIN
    ).json()
    assert len(rest["events"]) == 3 and rest["next_cursor"] is None
    bad_limit = client.get("/v1/profiles/user_id/user-1/events?limit=0", headers=ADMIN)
    assert bad_limit.status_code == 422
    assert bad_limit.json()["error"]["errors"][0]["field"] == "query.limit"


def test_segments_and_members(client: TestClient, workspace: Workspace) -> None:
    journey(client, workspace)
    listed = client.get("/v1/segments", headers=ADMIN).json()["segments"]
    assert {item["name"]: item["size"] for item in listed} == {"buyers": 1, "browsers": 1}
    members = client.get("/v1/segments/buyers/members", headers=ADMIN).json()["members"]
    assert len(members) == 1 and members[0]["entered_at"]
    assert client.get("/v1/segments/nope/members", headers=ADMIN).status_code == 404


def test_unknown_profiles_and_kinds_are_404(client: TestClient, workspace: Workspace) -> None:
    journey(client, workspace)
    missing = client.get("/v1/profiles/user_id/nobody", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get("/v1/profiles/shoe_size/42", headers=ADMIN).status_code == 404


def test_health_and_metrics(client: TestClient, workspace: Workspace) -> None:
    journey(client, workspace)
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["lag"] == 0
    text = client.get("/metrics").text
    assert 'touchpoint_events_accepted_total{source="web"} 5.0' in text
    assert "touchpoint_log_lag" in text
    assert "touchpoint_http_request_duration_seconds_bucket" in text
    assert 'touchpoint_processor_events_total{outcome="processed"} 5.0' in text
