"""Erasure and export over HTTP, end to end on the real stores.

A person is built through the public API (identify with an email, two anonymous ids
merged, events, a rejected event, segment membership, a decision and its outcome);
erasing them must leave no trace in any store, survive a late event and a replay of
the whole log, and be idempotent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import (
    SECRET_KEY,
    STRICT_KEY,
    TEST_CONFIG,
    WRITE_KEY,
    basic,
    bearer,
    drain,
    server_config,
    write_config,
)
from touchpoint.config.settings import Settings, load_settings
from touchpoint.profiles.model import Identity
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)
EMAIL = "Erin.Erased@Example.com"
USER = "erin-user-7f3a"
ANON_1 = "erin-anon-1-c4d2"
ANON_2 = "erin-anon-2-9b1e"
KEEP_USER = "kept-user-55e0"


@pytest.fixture(params=["embedded", "server"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Both modes: SQLite files, and PostgreSQL + Redis Streams + the Redis profile cache
    (erasure must reach the streams and the cache too)."""
    if request.param == "embedded":
        data = TEST_CONFIG
    else:
        schema = request.getfixturevalue("postgres_schema")
        data = server_config(schema, request.getfixturevalue("redis_prefix"))
    path = write_config(tmp_path, data)
    return load_settings(path, tmp_path / "data", environ={}, enable_noop_endpoint=True)


def send(
    client: TestClient, *events: dict[str, Any], key: str = WRITE_KEY, status: int = 200
) -> dict[str, Any]:
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=basic(key))
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def build_person(client: TestClient, workspace: Workspace) -> dict[str, Any]:
    """Erin, through the public API, and Kim, who must survive Erin's erasure."""
    send(
        client,
        {"type": "page", "anonymousId": ANON_1, "name": "Home"},
        {"type": "track", "anonymousId": ANON_1, "event": "Product Viewed",
         "properties": {"product_id": "shoe-1"}},
        {"type": "track", "anonymousId": ANON_2, "event": "Product Viewed",
         "properties": {"product_id": "shoe-2"}},
        {"type": "identify", "anonymousId": ANON_1, "userId": USER,
         "traits": {"email": EMAIL, "name": "Erin"}},
        {"type": "identify", "userId": KEEP_USER, "traits": {"name": "Kim"}},
        {"type": "track", "userId": KEEP_USER, "event": "Order Completed",
         "properties": {"revenue": 10}},
    )  # fmt: skip
    drain(workspace)
    # The second anonymous id's profile is merged into Erin's.
    send(client, {"type": "alias", "previousId": ANON_2, "userId": USER})
    send(
        client,
        {"type": "track", "userId": USER, "event": "Order Completed",
         "properties": {"revenue": 42.5}},
    )  # fmt: skip
    rejected = send(
        client,
        {"type": "track", "userId": USER, "event": "Order Completed",
         "properties": {"coupon": "X"}, "context": {"traits": {"email": EMAIL}}},
        key=STRICT_KEY,
        status=400,
    )  # fmt: skip
    assert len(rejected["error"]["rejected"]) == 1
    drain(workspace)
    decided = client.post(
        "/v1/decide", json={"user_id": USER, "placements": ["home_hero"]}, headers=ADMIN
    )
    assert decided.status_code == 200, decided.text
    decision_id = decided.json()["decision_id"]
    send(
        client,
        {"type": "track", "userId": USER, "event": "Decision Viewed",
         "properties": {"decision_id": decision_id}},
    )  # fmt: skip
    kept = client.post(
        "/v1/decide", json={"user_id": KEEP_USER, "placements": ["home_hero"]}, headers=ADMIN
    )
    drain(workspace)
    profile = client.get(f"/v1/profiles/user_id/{USER}", headers=ADMIN).json()
    assert "buyers" in profile["segments"]
    assert sorted(profile["identities"]["anonymous_id"]) == sorted([ANON_1, ANON_2])
    assert workspace.decisions.outcomes(decision_id), "the outcome was joined"
    assert workspace.rejected.count() == 1
    lineage = workspace.profiles.lineage(profile["profile_id"])
    assert lineage, "the two anonymous profiles were merged"
    timeline = workspace.profiles.events(profile["profile_id"], limit=500).items
    return {
        "profile_id": profile["profile_id"],
        "profile_ids": {profile["profile_id"], *(m.merged_id for m in lineage)},
        "identities": [
            Identity(kind, value)
            for kind, values in profile["identities"].items()
            for value in values
        ],
        "message_ids": {item.message_id for item in timeline},
        "decision_id": decision_id,
        "kept_decision_id": kept.json()["decision_id"],
    }


def log_entries(workspace: Workspace) -> list[Any]:
    entries = []
    for partition in range(workspace.log.partitions):
        offset = 0
        while batch := workspace.log.read(partition, offset, 1000):
            entries.extend(batch)
            offset = batch[-1].offset + 1
    return entries


def traces(workspace: Workspace, person: dict[str, Any]) -> list[str]:
    """Every place any store still mentions the person (empty after erasure)."""
    found: list[str] = []
    values = [identity.value for identity in person["identities"]]
    for identity in person["identities"]:
        if workspace.profiles.find(identity) is not None:
            found.append(f"identity graph: {identity.kind}")
    for profile_id in person["profile_ids"]:
        if workspace.profiles.get(profile_id) is not None:
            found.append(f"profile {profile_id}")
        if workspace.profiles.events(profile_id).items:
            found.append(f"timeline of {profile_id}")
        if workspace.profiles.segment_history(profile_id):
            found.append(f"segment history of {profile_id}")
    for segment in workspace.profiles.segment_sizes():
        members = workspace.profiles.segment_members(segment, limit=1000).items
        if any(member in person["profile_ids"] for member, _ in members):
            found.append(f"segment {segment}")
    if any(c.profile_id in person["profile_ids"] for _, c in workspace.profiles.segment_changes()):
        found.append("segment change log")
    for entry in log_entries(workspace):
        text = entry.payload.decode()
        if entry.key in values or entry.message_id in person["message_ids"]:
            found.append(f"log entry {entry.message_id}")
        elif any(value in text for value in values):
            found.append(f"log payload {entry.message_id}")
    if workspace.decisions.get(person["decision_id"]):
        found.append("decision")
    if workspace.decisions.outcomes(person["decision_id"]):
        found.append("outcomes")
    decisions, outcomes = workspace.decisions.for_person(
        profile_ids=person["profile_ids"],
        subjects=[f"{i.kind}:{i.value}" for i in person["identities"]],
    )
    if decisions or outcomes:
        found.append("decision log (for_person)")
    for item in workspace.rejected.list(limit=1000).items:
        if any(value in orjson.dumps(item.event).decode() for value in values):
            found.append(f"rejected event {item.id}")
    return found


def test_erasure_reaches_every_store_and_nothing_brings_the_person_back(
    client: TestClient, workspace: Workspace
) -> None:
    person = build_person(client, workspace)
    assert traces(workspace, person)  # the check finds a person who exists

    response = client.delete(f"/v1/profiles/email/{EMAIL.upper()}", headers=ADMIN)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed"
    assert job["already_erased"] is False
    assert set(job["profile_ids"]) == person["profile_ids"]
    erased = job["erased"]
    assert erased["profile_store"]["profiles"] == 1
    assert erased["profile_store"]["identities"] == 4
    assert erased["profile_store"]["merges"] >= 1
    assert erased["profile_store"]["timeline_events"] == len(person["message_ids"])
    assert erased["event_log"] >= len(person["message_ids"])
    assert erased["decision_log"] == {"decisions": 1, "outcomes": 1}
    assert erased["rejected_store"] == 1
    assert traces(workspace, person) == []
    for kind, value in (("user_id", USER), ("anonymous_id", ANON_1), ("anonymous_id", ANON_2),
                        ("email", EMAIL)):  # fmt: skip
        assert client.get(f"/v1/profiles/{kind}/{value}", headers=ADMIN).status_code == 404
    assert client.get(f"/v1/decisions/{person['decision_id']}", headers=ADMIN).status_code == 404
    assert workspace.metrics.erasures._value.get() == 1

    # The audit log has the job, naming the person only by a hash.
    audit = client.get("/v1/audit", params={"action": "profile.erase"}, headers=ADMIN).json()
    [entry] = audit["entries"]
    assert entry["target"] == job["job_id"]
    assert entry["actor"] == "secret_key"
    details = orjson.dumps(entry["details"]).decode()
    for plain in (USER, ANON_1, ANON_2, EMAIL, EMAIL.lower()):
        assert plain not in details
    assert entry["details"]["subject"] == job["subject"]

    # Again, by another of their identifiers: the same job.
    again = client.delete(f"/v1/profiles/user_id/{USER}", headers=ADMIN)
    assert again.status_code == 200, again.text
    assert again.json() == {**job, "already_erased": True}
    assert workspace.metrics.erasures._value.get() == 1

    # A late event carrying one of their identifiers does not recreate them.
    profiles_before = workspace.profiles.count()
    send(client, {"type": "track", "anonymousId": ANON_2, "event": "Product Viewed"})
    send(client, {"type": "identify", "userId": USER, "traits": {"email": EMAIL}})
    drain(workspace)
    assert workspace.profiles.count() == profiles_before
    assert traces(workspace, person) == []

    # Nor does replaying the whole log from the start.
    workspace.log.commit_many(
        workspace.processor.group, {p: 0 for p in range(workspace.log.partitions)}
    )
    drain(workspace)
    assert workspace.profiles.count() == profiles_before
    assert traces(workspace, person) == []
    assert client.get(f"/v1/profiles/email/{EMAIL}/export", headers=ADMIN).status_code == 404

    # Deciding for them again treats them as a stranger and records no identifier of theirs.
    decided = client.post(
        "/v1/decide",
        json={"anonymous_id": ANON_2, "placements": ["home_hero"]},
        headers=ADMIN,
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["profile_id"] is None
    [record] = workspace.decisions.get(decided.json()["decision_id"])
    assert record.subject.startswith("erased:h1:") and ANON_2 not in record.subject
    assert traces(workspace, person) == []

    # Kim is untouched.
    kim = client.get(f"/v1/profiles/user_id/{KEEP_USER}", headers=ADMIN)
    assert kim.status_code == 200
    assert kim.json()["traits"]["name"] == "Kim"
    assert "buyers" in kim.json()["segments"]
    assert workspace.decisions.get(person["kept_decision_id"])


def test_export_returns_everything_held_about_the_person(
    client: TestClient, workspace: Workspace
) -> None:
    person = build_person(client, workspace)
    response = client.get(f"/v1/profiles/anonymous_id/{ANON_2}/export", headers=ADMIN)
    assert response.status_code == 200, response.text
    export = response.json()
    assert export["profile"]["profile_id"] == person["profile_id"]
    assert export["profile"]["traits"]["name"] == "Erin"
    assert "buyers" in export["profile"]["segments"]
    assert {(i["kind"], i["value"]) for i in export["identities"]} == {
        (i.kind, i.value) for i in person["identities"]
    }
    assert EMAIL.lower() not in response.text  # PII is held only hashed
    assert {event["messageId"] for event in export["events"]} == person["message_ids"]
    times = [event["timestamp"] for event in export["events"]]
    assert times == sorted(times)
    assert export["lineage"]
    assert any(c["segment"] == "buyers" for c in export["segment_history"])
    assert [d["decision_id"] for d in export["decisions"]] == [person["decision_id"]]
    assert [o["kind"] for o in export["outcomes"]] == ["view"]
    assert len(export["rejected_events"]) == 1
    assert export["rejected_events"][0]["reason"] == "tracking_plan"
    audit = client.get("/v1/audit", params={"action": "profile.export"}, headers=ADMIN).json()
    [entry] = audit["entries"]
    assert entry["target"] == person["profile_id"]
    assert entry["actor"] == "secret_key"


def test_unknown_people_and_kinds_are_404_without_echoing_the_value(
    client: TestClient, workspace: Workspace
) -> None:
    secret = "nobody@example.com"
    for method, path in (
        ("DELETE", f"/v1/profiles/email/{secret}"),
        ("GET", f"/v1/profiles/email/{secret}/export"),
    ):
        response = client.request(method, path, headers=ADMIN)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
        assert secret not in response.text
        unknown_kind = client.request(method, path.replace("/email/", "/shoe_size/"), headers=ADMIN)
        assert unknown_kind.status_code == 404
        assert "shoe_size" in unknown_kind.json()["error"]["message"]
    assert workspace.audit.list(action="profile.erase").items == []
    assert workspace.audit.list(action="profile.export").items == []


def test_erasure_and_export_need_the_secret_key(client: TestClient) -> None:
    for method, path in (
        ("DELETE", f"/v1/profiles/user_id/{USER}"),
        ("GET", f"/v1/profiles/user_id/{USER}/export"),
    ):
        assert client.request(method, path).status_code == 401
        assert client.request(method, path, headers=bearer(WRITE_KEY)).status_code == 403
