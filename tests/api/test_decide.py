"""`POST /v1/decide` and `GET /v1/placements` over HTTP, on the test workspace."""

from __future__ import annotations

import gzip
from datetime import timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import CLIENT_KEY, SECRET_KEY, TEST_START, WRITE_KEY, basic, bearer, drain
from touchpoint.core.clock import isoformat
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)
HERO = {"anonymous_id": "a1", "placements": ["home_hero"]}


def ago(**delta: float) -> str:
    return isoformat(TEST_START - timedelta(**delta))


def send(client: TestClient, workspace: Workspace, *events: dict) -> None:
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=basic(WRITE_KEY))
    assert response.status_code == 200, response.text
    assert not response.json()["rejected"], response.json()
    drain(workspace)


def error_of(response: object) -> dict:
    body = response.json()  # type: ignore[attr-defined]
    return body["error"]


# -- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [ADMIN, basic(CLIENT_KEY), bearer(CLIENT_KEY)], ids=["secret", "basic", "bearer"]
)
def test_the_secret_key_or_a_client_decisions_write_key_may_decide(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post("/v1/decide", json=HERO, headers=headers)
    assert response.status_code == 200, response.text


def test_a_write_key_of_a_source_without_client_decisions_is_forbidden(client: TestClient) -> None:
    for headers in (basic(WRITE_KEY), bearer(WRITE_KEY)):
        response = client.post("/v1/decide", json=HERO, headers=headers)
        assert response.status_code == 403
        error = error_of(response)
        assert "client-side decisions are off" in error["message"]
        assert error["source"] == "web"


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("sk_not_a_known_key_at_all"), basic("wk_unknown_key"), {"Authorization": "Basic"}],
    ids=["none", "unknown-bearer", "unknown-basic", "empty-basic"],
)
def test_no_key_or_an_unknown_key_is_unauthorized(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post("/v1/decide", json=HERO, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


# -- the response --------------------------------------------------------------------------


def test_a_decision_names_content_payload_html_reason_and_policy(
    client: TestClient, workspace: Workspace
) -> None:
    response = client.post(
        "/v1/decide",
        json={
            "anonymous_id": "a1",
            "context": {"page": {"path": "/"}},
            "placements": ["home_hero", "product_recs"],
        },
        headers=ADMIN,
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"decision_id", "profile_id", "definitions_version", "placements"}
    assert body["profile_id"] is None and body["definitions_version"] == 1
    assert list(body["placements"]) == ["home_hero", "product_recs"]
    assert body["placements"]["home_hero"] == {
        "content_id": "hero_default",
        "payload": {"headline": "Welcome"},
        "html": "<h1>Welcome</h1>",
        "reason": "fallback",
        "policy": "priority",
    }
    records = workspace.decisions.get(body["decision_id"])
    assert [record.placement for record in records] == ["home_hero", "product_recs"]
    assert all(record.definitions_version == 1 and record.propensity == 1.0 for record in records)
    assert records[0].context == {"page": {"path": "/"}}


def test_a_profile_built_from_events_turns_into_a_personal_decision(
    client: TestClient, workspace: Workspace
) -> None:
    send(
        client,
        workspace,
        {
            "type": "identify",
            "anonymousId": "anon-1",
            "userId": "user-1",
            "traits": {"name": "<Jane>"},
            "timestamp": ago(hours=1),
        },
        {
            "type": "track",
            "userId": "user-1",
            "event": "Order Completed",
            "properties": {"revenue": 42.5},
            "timestamp": ago(minutes=30),
        },
    )
    response = client.post(
        "/v1/decide",
        json={"anonymous_id": "anon-1", "placements": ["home_hero"]},
        headers=basic(CLIENT_KEY),
    )
    assert response.status_code == 200
    body = response.json()
    hero = body["placements"]["home_hero"]
    assert (hero["content_id"], hero["reason"]) == ("hero_buyer", "eligible")
    assert hero["html"] == "<h1>Thanks, &lt;Jane&gt;</h1>"
    assert "profile_id" not in body  # the write key's answer never names the profile


def test_without_personalization_consent_the_fallback_is_returned(
    client: TestClient, workspace: Workspace
) -> None:
    send(
        client,
        workspace,
        {
            "type": "track",
            "userId": "user-2",
            "event": "Order Completed",
            "properties": {"revenue": 5},
            "timestamp": ago(hours=1),
        },
        {
            "type": "identify",
            "userId": "user-2",
            "traits": {"consent": {"personalization": False, "marketing": True}},
            "timestamp": ago(minutes=5),
        },
    )
    response = client.post(
        "/v1/decide", json={"user_id": "user-2", "placements": ["home_hero"]}, headers=ADMIN
    )
    hero = response.json()["placements"]["home_hero"]
    assert (hero["content_id"], hero["reason"]) == ("hero_default", "no_consent")


def test_an_unknown_placement_is_a_404_naming_it(client: TestClient) -> None:
    response = client.post(
        "/v1/decide",
        json={"anonymous_id": "a1", "placements": ["home_hero", "sidebar"]},
        headers=ADMIN,
    )
    assert response.status_code == 404
    error = error_of(response)
    assert "sidebar" in error["message"] and error["placement"] == "sidebar"


# -- bad bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"placements": ["home_hero"]}, "identity"),
        ({"anonymous_id": None, "placements": ["home_hero"]}, "identity"),
        ({"anonymous_id": "", "placements": ["home_hero"]}, "anonymous_id"),
        ({"anonymous_id": 12, "placements": ["home_hero"]}, "anonymous_id"),
        ({"anonymous_id": "a", "device": "d", "placements": ["home_hero"]}, "device"),
        ({"anonymous_id": "a"}, "placements"),
        ({"anonymous_id": "a", "placements": []}, "placements"),
        ({"anonymous_id": "a", "placements": "home_hero"}, "placements"),
        ({"anonymous_id": "a", "placements": ["home_hero", 3]}, "placements"),
        ({"anonymous_id": "a", "placements": ["home_hero", "home_hero"]}, "placements"),
        ({"anonymous_id": "a", "placements": [f"p{n}" for n in range(21)]}, "placements"),
        ({"anonymous_id": "a", "placements": ["home_hero"], "context": []}, "context"),
    ],
)
def test_an_invalid_body_is_a_422_naming_the_field(
    client: TestClient, body: dict, field: str
) -> None:
    response = client.post("/v1/decide", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["field"] == field
    assert field in error["message"] or field == "identity"


def test_the_accepted_identity_kinds_are_named(client: TestClient) -> None:
    response = client.post("/v1/decide", json={"placements": ["home_hero"]}, headers=ADMIN)
    error = error_of(response)
    assert error["accepted"] == ["user_id", "email", "anonymous_id"]
    assert "user_id" in error["message"] and "anonymous_id" in error["message"]


def test_a_body_over_64_kb_is_a_413(client: TestClient) -> None:
    body = {**HERO, "context": {"blob": "x" * (64 * 1024)}}
    response = client.post("/v1/decide", content=orjson.dumps(body), headers=ADMIN)
    assert response.status_code == 413
    packed = gzip.compress(orjson.dumps(body))
    assert len(packed) < 64 * 1024
    response = client.post(
        "/v1/decide", content=packed, headers={**ADMIN, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_a_400(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/decide", content=raw, headers=ADMIN)
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


# -- placements ------------------------------------------------------------------------------


def test_placements_need_the_secret_key(client: TestClient) -> None:
    assert client.get("/v1/placements").status_code == 401
    assert client.get("/v1/placements", headers=bearer(CLIENT_KEY)).status_code == 403
    assert client.get("/v1/placements/home_hero", headers=basic(WRITE_KEY)).status_code == 401


def test_placements_are_listed_with_their_content(client: TestClient) -> None:
    response = client.get("/v1/placements", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1
    names = [placement["name"] for placement in body["placements"]]
    assert names == ["home_hero", "product_recs"]
    hero = body["placements"][0]
    assert hero["fallback"]["id"] == "hero_default"
    assert hero["conversion_events"] == ["Order Completed"]
    assert [item["id"] for item in hero["content"]] == ["hero_buyer", "hero_browser"]
    assert hero["content"][0]["eligibility"] == "segments contains 'buyers'"


def test_one_placement_or_a_404(client: TestClient) -> None:
    response = client.get("/v1/placements/product_recs", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "product_recs" and body["version"] == 1
    assert [item["id"] for item in body["content"]] == ["recs_recent"]
    missing = client.get("/v1/placements/sidebar", headers=ADMIN)
    assert missing.status_code == 404
    assert "sidebar" in error_of(missing)["message"]
