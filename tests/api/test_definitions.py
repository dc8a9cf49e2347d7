"""The definitions admin API: versions, plan, apply, item edits; every write audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SECRET_KEY, TEST_CONFIG, WRITE_KEY, bearer, write_config
from touchpoint.api.app import create_app
from touchpoint.config.settings import load_settings
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)


def whole(client: TestClient) -> dict[str, Any]:
    """The current set as a request body."""
    current = client.get("/v1/definitions", headers=ADMIN).json()["definitions"]
    return {"placements": current["placements"], "content": current["content"]}


def applies(workspace: Workspace) -> list[dict[str, Any]]:
    return [entry.details for entry in workspace.audit.list(action="definitions.apply").items]


def test_the_workspace_file_is_version_one(client: TestClient) -> None:
    body = client.get("/v1/definitions", headers=ADMIN).json()
    assert body["version"] == 1
    assert body["actor"] == "config:touchpoint.yaml"
    assert [p["name"] for p in body["definitions"]["placements"]] == ["home_hero", "product_recs"]
    assert len(body["definitions"]["content"]) == len(TEST_CONFIG["content"])
    assert len(body["digest"]) == 64 and body["applied_at"].endswith("Z")


def test_before_any_apply_there_is_nothing(tmp_path: Path) -> None:
    config = {
        key: value for key, value in TEST_CONFIG.items() if key not in {"placements", "content"}
    }
    settings = load_settings(write_config(tmp_path, config), tmp_path / "data", environ={})
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/definitions", headers=ADMIN)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "no definitions applied yet"
        assert client.get("/v1/definitions/versions", headers=ADMIN).json() == {
            "versions": [],
            "next_cursor": None,
        }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/definitions"),
        ("GET", "/v1/definitions/versions"),
        ("POST", "/v1/definitions/plan"),
        ("PUT", "/v1/definitions"),
        ("PUT", "/v1/content/x"),
        ("DELETE", "/v1/content/x"),
        ("PUT", "/v1/placements/x"),
        ("DELETE", "/v1/placements/x"),
    ],
)
def test_only_the_secret_key_administers(client: TestClient, method: str, path: str) -> None:
    assert client.request(method, path, json={}).status_code == 401
    assert client.request(method, path, json={}, headers=bearer(WRITE_KEY)).status_code == 403


def test_plan_shows_the_diff_and_stores_nothing(client: TestClient, workspace: Workspace) -> None:
    body = whole(client)
    body["content"][1]["priority"] = 50
    body["content"].append({"id": "hero_new", "placements": ["home_hero"], "payload": {}})
    planned = client.post("/v1/definitions/plan", json=body, headers=ADMIN).json()
    assert planned["current_version"] == 1 and planned["changed"] is True
    assert planned["diff"]["content"]["changed"] == {"hero_buyer": ["priority"]}
    assert planned["diff"]["content"]["added"] == ["hero_new"]
    assert workspace.definitions.latest_version() == 1
    same = client.post("/v1/definitions/plan", json=whole(client), headers=ADMIN).json()
    assert same["changed"] is False


def test_put_applies_the_next_version_once(client: TestClient, workspace: Workspace) -> None:
    body = whole(client)
    body["content"][2]["caps"] = []
    applied = client.put("/v1/definitions", json={**body, "note": "uncap"}, headers=ADMIN)
    assert applied.status_code == 200, applied.text
    assert applied.json()["version"] == 2 and applied.json()["changed"] is True
    assert applied.json()["diff"]["content"]["changed"] == {"hero_browser": ["caps"]}
    current = client.get("/v1/definitions", headers=ADMIN).json()
    assert current["version"] == 2 and current["actor"] == "secret_key"
    assert current["note"] == "uncap"
    again = client.put("/v1/definitions", json=body, headers=ADMIN).json()
    assert again["version"] == 2 and again["changed"] is False
    assert [details["version"] for details in applies(workspace)] == [2, 1]
    latest = workspace.audit.list(action="definitions.apply").items[0]
    assert latest.actor == "secret_key" and latest.target == "definitions"


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (
            lambda b: b["content"][1].update(eligibility="segments contain"),
            "content[1].eligibility",
        ),
        (lambda b: b["content"][4].update(template="{% for p in %}"), "content[4].template"),
        (lambda b: b["placements"][0].update(name="Home Hero"), "placements[0].name"),
        (lambda b: b["content"].__setitem__(0, "not an object"), "content[0]"),
        (lambda b: b["content"][0].update(payload=None, template=None), "content[0]"),
    ],
)
def test_an_invalid_set_is_a_422_with_its_path_and_nothing_is_stored(
    client: TestClient, workspace: Workspace, mutate: Any, path: str
) -> None:
    body = whole(client)
    mutate(body)
    for route, method in (("/v1/definitions/plan", "POST"), ("/v1/definitions", "PUT")):
        response = client.request(method, route, json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_definition"
        assert error["path"] == path and error["reason"]
    assert workspace.definitions.latest_version() == 1
    assert len(applies(workspace)) == 1


def test_a_body_of_the_wrong_shape_is_a_422(client: TestClient) -> None:
    assert client.put("/v1/definitions", json={"content": []}, headers=ADMIN).status_code == 422
    assert (
        client.put(
            "/v1/definitions", json={"placements": [], "content": [], "x": 1}, headers=ADMIN
        ).status_code
        == 422
    )
    assert client.put("/v1/content/x", json=[1, 2], headers=ADMIN).status_code == 422


def test_versions_are_listed_and_read_by_number(client: TestClient) -> None:
    for priority in (1, 2, 3):
        body = whole(client)
        body["content"][1]["priority"] = priority
        assert client.put("/v1/definitions", json=body, headers=ADMIN).json()["changed"]
    first = client.get("/v1/definitions/versions?limit=3", headers=ADMIN).json()
    assert [v["version"] for v in first["versions"]] == [4, 3, 2]
    assert first["versions"][0]["content"] == 5 and "definitions" not in first["versions"][0]
    rest = client.get(
        f"/v1/definitions/versions?limit=3&cursor={first['next_cursor']}", headers=ADMIN
    ).json()
    assert [v["version"] for v in rest["versions"]] == [1] and rest["next_cursor"] is None
    two = client.get("/v1/definitions/versions/2", headers=ADMIN).json()
    assert two["definitions"]["content"][1]["priority"] == 1
    missing = client.get("/v1/definitions/versions/9", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["version"] == 9
    bad = client.get("/v1/definitions/versions?cursor=zz", headers=ADMIN)
    assert bad.status_code == 422


def test_put_content_creates_then_replaces(client: TestClient, workspace: Workspace) -> None:
    item = {"placements": ["home_hero"], "priority": 5, "payload": {"headline": "Hi"}}
    created = client.put("/v1/content/hero_hi", json=item, headers=ADMIN)
    assert created.status_code == 200, created.text
    assert created.json()["version"] == 2 and created.json()["diff"]["content"]["added"] == [
        "hero_hi"
    ]
    replaced = client.put(
        "/v1/content/hero_hi", json={**item, "id": "hero_hi", "priority": 6}, headers=ADMIN
    ).json()
    assert replaced["version"] == 3
    assert replaced["diff"]["content"]["changed"] == {"hero_hi": ["priority"]}
    unchanged = client.put(
        "/v1/content/hero_hi", json={**item, "priority": 6}, headers=ADMIN
    ).json()
    assert unchanged == {"version": 3, "changed": False, "diff": unchanged["diff"]}
    current = client.get("/v1/definitions", headers=ADMIN).json()
    assert current["definitions"]["content"][-1]["priority"] == 6
    assert current["note"] == "PUT content hero_hi"
    assert [details["version"] for details in applies(workspace)] == [3, 2, 1]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"id": "other", "payload": {}}, "id"),
        ({"payload": {}, "template": "{{ unclosed"}, "template"),
        ({"payload": {}, "eligibility": "features.x >"}, "eligibility"),
        ({"payload": {}, "placements": ["nowhere"]}, "placements"),
        ({"payload": {}, "start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "<root>"),
    ],
)
def test_put_content_refuses_bad_items(
    client: TestClient, workspace: Workspace, body: dict[str, Any], path: str
) -> None:
    response = client.put("/v1/content/hero_x", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["path"] == path
    assert workspace.definitions.latest_version() == 1


def test_delete_content(client: TestClient, workspace: Workspace) -> None:
    missing = client.delete("/v1/content/nope", headers=ADMIN)
    assert missing.status_code == 404
    fallback = client.delete("/v1/content/hero_default", headers=ADMIN)
    assert fallback.status_code == 422
    assert fallback.json()["error"]["placements"] == ["home_hero"]
    assert "home_hero" in fallback.json()["error"]["message"]
    deleted = client.delete("/v1/content/hero_browser", headers=ADMIN).json()
    assert deleted["version"] == 2 and deleted["diff"]["content"]["removed"] == ["hero_browser"]
    assert client.delete("/v1/content/hero_browser", headers=ADMIN).status_code == 404
    assert workspace.definitions.latest_version() == 2


def test_put_and_delete_placements(client: TestClient, workspace: Workspace) -> None:
    created = client.put(
        "/v1/placements/email_banner",
        json={"channel": "email", "fallback": "hero_default"},
        headers=ADMIN,
    )
    assert created.status_code == 200, created.text
    assert created.json()["diff"]["placements"]["added"] == ["email_banner"]
    mismatch = client.put("/v1/placements/email_banner", json={"name": "x"}, headers=ADMIN)
    assert mismatch.status_code == 422 and mismatch.json()["error"]["path"] == "name"
    bad_fallback = client.put(
        "/v1/placements/email_banner", json={"fallback": "nope"}, headers=ADMIN
    )
    assert bad_fallback.status_code == 422 and bad_fallback.json()["error"]["path"] == "fallback"
    in_use = client.delete("/v1/placements/home_hero", headers=ADMIN)
    assert in_use.status_code == 422
    assert in_use.json()["error"]["content"] == ["hero_default", "hero_buyer", "hero_browser"]
    assert client.delete("/v1/placements/nope", headers=ADMIN).status_code == 404
    deleted = client.delete("/v1/placements/email_banner", headers=ADMIN).json()
    assert deleted["version"] == 3 and deleted["diff"]["placements"]["removed"] == ["email_banner"]
    notes = [entry.details["note"] for entry in workspace.audit.list().items[:2]]
    assert notes == ["DELETE placement email_banner", "PUT placement email_banner"]


def test_a_new_version_reaches_another_process_sharing_the_data_dir(
    tmp_path: Path, client: TestClient, workspace: Workspace
) -> None:
    other = Workspace.open(workspace.settings)
    try:
        assert other.definitions.latest_version() == 1
        client.put("/v1/content/hero_hi", json={"payload": {}}, headers=ADMIN)
        assert other.definitions.latest_version() == 2
        current = other.definitions.current()
        assert current is not None and current.definitions.content[-1].id == "hero_hi"
    finally:
        other.close()


@pytest.fixture
def restarted(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(write_config(tmp_path, TEST_CONFIG), tmp_path / "data", environ={})
    with TestClient(create_app(settings)) as first:
        first.put("/v1/content/hero_hi", json={"payload": {}}, headers=ADMIN)
    with TestClient(create_app(settings)) as second:
        yield second


def test_a_restart_with_the_file_makes_the_file_current_again(restarted: TestClient) -> None:
    current = restarted.get("/v1/definitions", headers=ADMIN).json()
    assert current["version"] == 3 and current["actor"] == "config:touchpoint.yaml"
    assert "hero_hi" not in [item["id"] for item in current["definitions"]["content"]]


def test_an_applied_edit_is_decided_with_at_once(client: TestClient) -> None:
    """The process that applied a version decides with it on the next request."""
    item = {
        "placements": ["home_hero"],
        "priority": 99,
        "template": "<h1>Sale</h1>",
    }
    applied = client.put("/v1/content/hero_sale", json=item, headers=bearer(SECRET_KEY))
    assert applied.status_code == 200, applied.text
    decided = client.post(
        "/v1/decide",
        json={"anonymous_id": "someone-new", "placements": ["home_hero"]},
        headers=bearer(SECRET_KEY),
    )
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["definitions_version"] == applied.json()["version"]
    assert body["placements"]["home_hero"]["content_id"] == "hero_sale"
