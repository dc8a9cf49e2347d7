"""The audit API: entries newest first, filters, one entry; replays are audited."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import SECRET_KEY, STRICT_KEY, WRITE_KEY, basic, bearer
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)


def test_only_the_secret_key_reads_the_audit_log(client: TestClient) -> None:
    for path in ("/v1/audit", "/v1/audit/1"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bearer(WRITE_KEY)).status_code == 403


def test_entries_newest_first_with_filters_and_a_cursor(
    client: TestClient, workspace: Workspace
) -> None:
    for n in range(4):
        workspace.audit.record(
            actor="cli:ann", action="profile.erase", target=f"user_id:{n}", details={"n": n}
        )
    listed = client.get("/v1/audit", headers=ADMIN).json()
    assert [entry["action"] for entry in listed["entries"]] == ["profile.erase"] * 4 + [
        "definitions.apply"  # the workspace file, applied at start
    ]
    newest = listed["entries"][0]
    assert newest["actor"] == "cli:ann" and newest["target"] == "user_id:3"
    assert newest["details"] == {"n": 3} and newest["at"].endswith("Z")

    erasures = client.get("/v1/audit?action=profile.erase&limit=3", headers=ADMIN).json()
    assert [e["target"] for e in erasures["entries"]] == ["user_id:3", "user_id:2", "user_id:1"]
    rest = client.get(
        f"/v1/audit?action=profile.erase&limit=3&cursor={erasures['next_cursor']}", headers=ADMIN
    ).json()
    assert [e["target"] for e in rest["entries"]] == ["user_id:0"]
    assert rest["next_cursor"] is None
    one = client.get("/v1/audit?target=user_id:2", headers=ADMIN).json()["entries"]
    assert [e["details"] for e in one] == [{"n": 2}]


def test_one_entry_by_id(client: TestClient, workspace: Workspace) -> None:
    entry = workspace.audit.record(actor="a", action="x", target="t")
    body = client.get(f"/v1/audit/{entry.id}", headers=ADMIN).json()
    assert body == {
        "id": entry.id,
        "at": entry.at,
        "actor": "a",
        "action": "x",
        "target": "t",
        "details": {},
    }
    missing = client.get(f"/v1/audit/{entry.id + 1}", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_bad_paging_is_a_422(client: TestClient) -> None:
    assert client.get("/v1/audit?cursor=nope", headers=ADMIN).status_code == 422
    assert client.get("/v1/audit?limit=0", headers=ADMIN).status_code == 422
    assert client.get("/v1/audit/abc", headers=ADMIN).status_code == 422


def test_a_replay_of_rejected_events_is_audited(client: TestClient) -> None:
    order = {"type": "track", "userId": "u", "event": "Order Completed", "properties": {}}
    sent = client.post(
        "/v1/batch", json={"batch": [{**order, "messageId": "r1"}]}, headers=basic(STRICT_KEY)
    )
    assert sent.status_code == 400
    replayed = client.post("/v1/rejected/replay", json={"reason": "tracking_plan"}, headers=ADMIN)
    assert replayed.json()["still_rejected"] == 1
    [entry] = client.get("/v1/audit?action=rejected.replay", headers=ADMIN).json()["entries"]
    assert entry["actor"] == "secret_key" and entry["target"] == "rejected"
    assert entry["details"]["still_rejected"] == 1 and entry["details"]["accepted"] == 0
    assert entry["details"]["reason"] == "tracking_plan"
