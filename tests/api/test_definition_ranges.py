"""Definitions that validate must decide: ranges are checked when a set is applied (a 422
naming the path), and a candidate that still fails while deciding is skipped with its reason,
so the placement falls back instead of answering 500."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SECRET_KEY, TEST_CONFIG, WRITE_KEY, basic, bearer, drain
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)
NEW = len(TEST_CONFIG["content"])  # the index of the item each test adds


def with_item(item: dict[str, Any]) -> dict[str, Any]:
    extra = {"id": "extra", "placements": ["home_hero"], "priority": 99, "payload": {"a": 1}}
    return {
        "placements": TEST_CONFIG["placements"],
        "content": [*TEST_CONFIG["content"], {**extra, **item}],
    }


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ({"eligibility": "last_seen within 800000d"}, "eligibility"),
        ({"eligibility": "last_seen older_than 1e999"}, "eligibility"),
        ({"eligibility": {"field": "last_seen", "within": 1e300}}, "eligibility.within"),
        ({"eligibility": {"field": "last_seen", "within": "900000d"}}, "eligibility.within"),
        ({"eligibility": "traits.n == " + "9" * 5000}, "eligibility"),
        ({"eligibility": {"field": "traits.n", "eq": 10**30}}, "eligibility.eq"),
        ({"caps": [{"max": 1, "per": "900000d"}]}, "caps[0].per"),
        ({"caps": [{"max": 1, "per": "9" * 400 + "d"}]}, "caps[0].per"),
        ({"caps": [{"max": 10**30, "per": "1d"}]}, "caps[0].max"),
        ({"priority": 10**30}, "priority"),
        ({"payload": {"n": 10**30}}, "payload"),
    ],
)
def test_out_of_range_definitions_are_a_422_naming_the_path(
    client: TestClient, item: dict[str, Any], path: str
) -> None:
    response = client.put("/v1/definitions", json=with_item(item), headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_definition"
    assert error["path"] == f"content[{NEW}].{path}"
    assert client.get("/v1/definitions", headers=ADMIN).json()["version"] == 1


def test_the_longest_duration_is_accepted_and_decides(client: TestClient) -> None:
    item = {"eligibility": "last_seen within 36500d", "caps": [{"max": 5, "per": "36500d"}]}
    response = client.put("/v1/definitions", json=with_item(item), headers=ADMIN)
    assert response.status_code == 200, response.text
    decided = client.post(
        "/v1/decide", json={"user_id": "u1", "placements": ["home_hero"]}, headers=ADMIN
    )
    assert decided.status_code == 200, decided.text


def test_a_candidate_that_fails_while_deciding_falls_back_with_its_reason(
    client: TestClient, workspace: Workspace, caplog: Any
) -> None:
    response = client.put(
        "/v1/definitions", json=with_item({"eligibility": "traits.plan == 'pro'"}), headers=ADMIN
    )
    assert response.status_code == 200, response.text
    event = {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}
    client.post("/v1/batch", json={"batch": [event]}, headers=basic(WRITE_KEY))
    drain(workspace)
    catalog = workspace.decider.refresh()
    [item] = [entry for entry in catalog.content.values() if entry.id == "extra"]

    def broken(*args: Any) -> bool:
        raise OverflowError("date value out of range")

    object.__setattr__(item, "condition", broken)  # a compiled item is frozen
    decided = client.post(
        "/v1/decide", json={"user_id": "u1", "placements": ["home_hero"]}, headers=ADMIN
    )
    assert decided.status_code == 200, decided.text
    placement = decided.json()["placements"]["home_hero"]
    assert placement["content_id"] == "hero_default"
    assert placement["reason"] == "fallback"
    assert "content extra on placement home_hero skipped" in caplog.text
    assert "OverflowError: date value out of range" in caplog.text
    metrics = client.get("/metrics").text
    expected = 'touchpoint_candidate_errors_total{content_id="extra",stage="eligibility"} 1.0'
    assert expected in metrics


def test_a_template_that_would_build_100_million_characters_falls_back(
    client: TestClient,
) -> None:
    ten = "'xxxxxxxxxx'"
    template = "{{ " + ten + "".join(f" | replace: 'x', {ten}" for _ in range(7)) + " | size }}"
    response = client.put("/v1/definitions", json=with_item({"template": template}), headers=ADMIN)
    assert response.status_code == 200, response.text
    tracemalloc.start()
    try:
        decided = client.post(
            "/v1/decide", json={"user_id": "u1", "placements": ["home_hero"]}, headers=ADMIN
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"deciding built {peak:,} bytes before the limit stopped it"
    assert decided.status_code == 200, decided.text
    placement = decided.json()["placements"]["home_hero"]
    assert placement["content_id"] == "hero_default"
    assert placement["reason"] == "fallback"
    metrics = client.get("/metrics").text
    assert 'touchpoint_template_errors_total{content_id="extra"} 1.0' in metrics
