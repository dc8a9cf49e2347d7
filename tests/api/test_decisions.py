"""The decision log over HTTP: a decision with its outcomes, the list, a placement's report.

Decisions are recorded straight into the workspace's decision log (and, in one test, made
through `/v1/decide`); outcomes arrive the real way, as track events through `/v1/batch`,
joined by the `outcomes` consumer's handler.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SECRET_KEY, TEST_START, WRITE_KEY, basic, bearer, drain
from touchpoint.api.routers import decisions as decisions_router
from touchpoint.core.clock import isoformat, new_id
from touchpoint.decide.decision_log.base import DecisionRecord
from touchpoint.decide.outcomes import OutcomeHandler
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)


def ago(**delta: float) -> str:
    return isoformat(TEST_START - timedelta(**delta))


def decide(
    workspace: Workspace,
    *shown: tuple[str, str | None],
    at: str | None = None,
    anonymous_id: str = "a1",
) -> str:
    decision_id = new_id()
    workspace.decisions.record(
        [
            DecisionRecord(
                decision_id=decision_id,
                placement=placement,
                content_id=content_id,
                profile_id=None,
                subject=f"anonymous_id:{anonymous_id}",
                policy="priority",
                definitions_version=1,
                reason="eligible" if content_id != "hero_default" else "fallback",
                propensity=1.0,
                at=at or ago(hours=1),
                context={"page": {"path": "/"}},
            )
            for placement, content_id in shown
        ]
    )
    return decision_id


def outcome_event(name: str, decision_id: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "anonymousId": "a1",
        "event": name,
        "properties": {"decision_id": decision_id, **properties},
        "timestamp": ago(minutes=30),
    }


def send(client: TestClient, workspace: Workspace, *events: dict[str, Any]) -> None:
    """Send events through the API and let the processor apply them (and feed its sinks)."""
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=basic(WRITE_KEY))
    assert response.status_code == 200, response.text
    assert not response.json()["rejected"], response.json()
    drain(workspace)


def test_the_decision_routes_need_the_secret_key(client: TestClient) -> None:
    for path in ("/v1/decisions", "/v1/decisions/d1", "/v1/placements/home_hero/report"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bearer(WRITE_KEY)).status_code == 403


def test_an_unknown_decision_is_a_404_naming_it(client: TestClient) -> None:
    response = client.get("/v1/decisions/no-such-decision", headers=ADMIN)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and "no-such-decision" in error["message"]
    assert error["decision_id"] == "no-such-decision"


def test_a_decision_shows_its_placements_and_joined_outcomes(
    client: TestClient, workspace: Workspace
) -> None:
    decision_id = decide(
        workspace, ("home_hero", "hero_buyer"), ("product_recs", "recs_recent"), at=ago(hours=2)
    )
    send(
        client,
        workspace,
        outcome_event("Decision Viewed", decision_id, placement="home_hero"),
        outcome_event("Decision Clicked", decision_id, content_id="recs_recent"),
        outcome_event("Order Completed", decision_id, revenue=42.5),
        outcome_event("Product Viewed", decision_id, product_id="p1"),  # not an outcome
    )
    response = client.get(f"/v1/decisions/{decision_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision_id"] == decision_id
    assert body["subject"] == "anonymous_id:a1" and body["profile_id"] is None
    assert body["definitions_version"] == 1
    assert body["placements"] == [
        {
            "placement": "home_hero",
            "content_id": "hero_buyer",
            "reason": "eligible",
            "policy": "priority",
            "propensity": 1.0,
            "experiment": None,
            "arm": None,
        },
        {
            "placement": "product_recs",
            "content_id": "recs_recent",
            "reason": "eligible",
            "policy": "priority",
            "propensity": 1.0,
            "experiment": None,
            "arm": None,
        },
    ]
    outcomes = {item["kind"]: item for item in body["outcomes"]}
    assert len(body["outcomes"]) == 3
    assert outcomes["view"]["placement"] == "home_hero"
    assert outcomes["click"]["placement"] == "product_recs"
    assert outcomes["click"]["content_id"] == "recs_recent"
    # Only home_hero declares Order Completed, so the conversion is home_hero's.
    conversion = outcomes["conversion"]
    assert conversion["event"] == "Order Completed" and conversion["value"] == 42.5
    assert (conversion["placement"], conversion["content_id"]) == ("home_hero", "hero_buyer")
    assert all(item["message_id"] and item["at"] for item in body["outcomes"])


def test_a_decision_lists_a_bounded_number_of_outcomes_with_their_count(
    client: TestClient, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outcomes come from a public write key, so there may be any number of them."""
    monkeypatch.setattr(decisions_router, "LISTED_OUTCOMES", 2)
    decision_id = decide(workspace, ("home_hero", "hero_buyer"), at=ago(hours=2))
    views = [outcome_event("Decision Viewed", decision_id, placement="home_hero")] * 3
    send(client, workspace, *[{**view, "messageId": f"v{i}"} for i, view in enumerate(views)])
    body = client.get(f"/v1/decisions/{decision_id}", headers=ADMIN).json()
    assert body["outcomes_count"] == 3
    assert [item["message_id"] for item in body["outcomes"]] == ["v0", "v1"]


def test_a_decision_made_through_the_api_collects_its_outcomes(
    client: TestClient, workspace: Workspace
) -> None:
    made = client.post(
        "/v1/decide",
        json={"anonymous_id": "a1", "placements": ["home_hero", "product_recs"]},
        headers=ADMIN,
    )
    assert made.status_code == 200, made.text
    decision_id = made.json()["decision_id"]
    shown = {name: item["content_id"] for name, item in made.json()["placements"].items()}
    send(
        client,
        workspace,
        outcome_event("Decision Viewed", decision_id, placement="product_recs"),
        outcome_event("Decision Clicked", decision_id, placement="product_recs"),
        outcome_event("Decision Clicked", decision_id, placement="product_recs"),  # one click
    )
    body = client.get(f"/v1/decisions/{decision_id}", headers=ADMIN).json()
    assert {item["placement"]: item["content_id"] for item in body["placements"]} == shown
    assert sorted((item["kind"], item["content_id"]) for item in body["outcomes"]) == [
        ("click", shown["product_recs"]),
        ("click", shown["product_recs"]),
        ("view", shown["product_recs"]),
    ]
    report = client.get("/v1/placements/product_recs/report", headers=ADMIN).json()
    assert report["totals"] | {"value": None} == {
        "decisions": 1,
        "impressions": 1,
        "clicks": 1,
        "conversions": 0,
        "click_rate": 1.0,
        "conversion_rate": 0.0,
        "value": None,
    }


def test_decisions_list_newest_first_by_page_and_placement(
    client: TestClient, workspace: Workspace
) -> None:
    ids = [
        decide(workspace, ("home_hero", "hero_default"), at=ago(minutes=60 - i)) for i in range(5)
    ]
    recs = decide(workspace, ("product_recs", "recs_default"), at=ago(minutes=1))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "placement": "home_hero"}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/v1/decisions", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["decision_id"] for item in page["decisions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    everything = client.get("/v1/decisions", headers=ADMIN).json()
    first = everything["decisions"][0]
    assert first["decision_id"] == recs
    assert first["placement"] == "product_recs" and first["content_id"] == "recs_default"
    assert {"subject", "policy", "reason", "at", "definitions_version"} <= set(first)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"cursor": "not-a-cursor"}],
)
def test_a_bad_list_parameter_is_a_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/v1/decisions", params=params, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid"


def test_the_placement_report_counts_outcomes_per_content(
    client: TestClient, workspace: Workspace
) -> None:
    buyer = [decide(workspace, ("home_hero", "hero_buyer")) for _ in range(4)]
    fallback = [decide(workspace, ("home_hero", "hero_default")) for _ in range(2)]
    decide(workspace, ("home_hero", "hero_buyer"), at=ago(days=8))  # outside the default week
    send(
        client,
        workspace,
        *[outcome_event("Decision Viewed", decision_id) for decision_id in buyer[:3]],
        outcome_event("Decision Viewed", buyer[0]),  # a second view: still one impression
        outcome_event("Decision Clicked", buyer[0]),
        outcome_event("Order Completed", buyer[0], revenue=20),
        outcome_event("Order Completed", buyer[1], value=5.5),
        outcome_event("Decision Viewed", fallback[0]),
        outcome_event("Decision Clicked", fallback[0]),
    )
    response = client.get("/v1/placements/home_hero/report", headers=ADMIN)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["placement"] == "home_hero"
    assert report["since"] < report["until"] and report["until"].endswith("Z")
    assert report["content"] == [
        {
            "content_id": "hero_buyer",
            "decisions": 4,
            "impressions": 3,
            "clicks": 1,
            "conversions": 2,
            "click_rate": pytest.approx(1 / 3),
            "conversion_rate": pytest.approx(2 / 3),
            "value": 25.5,
        },
        {
            "content_id": "hero_default",
            "decisions": 2,
            "impressions": 1,
            "clicks": 1,
            "conversions": 0,
            "click_rate": 1.0,
            "conversion_rate": 0.0,
            "value": 0.0,
        },
    ]
    assert report["totals"] == {
        "decisions": 6,
        "impressions": 4,
        "clicks": 2,
        "conversions": 2,
        "click_rate": 0.5,
        "conversion_rate": 0.5,
        "value": 25.5,
    }
    longer = client.get(
        "/v1/placements/home_hero/report", params={"since": "30d"}, headers=ADMIN
    ).json()
    assert longer["content"][0]["decisions"] == 5
    window = client.get(
        "/v1/placements/home_hero/report",
        params={"since": ago(days=9), "until": ago(days=7)},
        headers=ADMIN,
    ).json()
    assert [(row["content_id"], row["decisions"]) for row in window["content"]] == [
        ("hero_buyer", 1)
    ]


def test_a_placement_without_decisions_has_an_empty_report(client: TestClient) -> None:
    response = client.get(
        "/v1/placements/product_recs/report",
        params={"since": "2026-01-01T00:00:00Z", "until": "2026-01-02"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["since"], body["until"]) == (
        "2026-01-01T00:00:00.000Z",
        "2026-01-02T00:00:00.000Z",
    )
    assert body["content"] == []
    assert body["totals"]["decisions"] == 0 and body["totals"]["click_rate"] is None


def test_an_unknown_placement_report_is_a_404_naming_it(client: TestClient) -> None:
    response = client.get("/v1/placements/nowhere/report", headers=ADMIN)
    assert response.status_code == 404
    error = response.json()["error"]
    assert "nowhere" in error["message"] and error["placement"] == "nowhere"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45"}, "until"),
        ({"since": "99999999999999999d"}, "since"),
        ({"since": "1d", "until": "2d"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-02T00:00:00Z"}, "since"),
    ],
)
def test_a_bad_report_window_is_a_422_naming_the_parameter(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = client.get("/v1/placements/home_hero/report", params=params, headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["field"] == field
    assert field in error["message"]


def test_outcomes_of_a_person_without_analytics_consent_are_not_joined(
    client: TestClient, workspace: Workspace
) -> None:
    decision_id = decide(workspace, ("home_hero", "hero_default"), anonymous_id="private")
    consent = {"analytics": False}
    send(
        client,
        workspace,
        {"type": "identify", "anonymousId": "private", "traits": {"consent": consent}},
        {**outcome_event("Decision Viewed", decision_id), "anonymousId": "private"},
    )
    body = client.get(f"/v1/decisions/{decision_id}", headers=ADMIN).json()
    assert body["outcomes"] == []
    handler = workspace.loops.consumer("outcomes").handler
    assert isinstance(handler, OutcomeHandler)
    assert handler.skipped_anonymized == 1
