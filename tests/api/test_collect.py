import gzip

import orjson
from fastapi.testclient import TestClient

from tests.conftest import SECRET_KEY, STRICT_KEY, WRITE_KEY, basic, bearer
from touchpoint.runtime import Workspace


def track(message_id: str, **extra: object) -> dict:
    return {
        "type": "track",
        "messageId": message_id,
        "anonymousId": "a1",
        "event": "Clicked",
        **extra,
    }


def post_batch(client: TestClient, events: list, key: str = WRITE_KEY, **kwargs: object):
    return client.post("/v1/batch", json={"batch": events}, headers=basic(key), **kwargs)


def test_batch_is_logged_and_a_retry_changes_nothing(
    client: TestClient, workspace: Workspace
) -> None:
    events = [track(f"m{i}") for i in range(5)]
    first = post_batch(client, events)
    assert first.status_code == 200
    assert first.json()["accepted"] == 5
    retry = post_batch(client, events)
    assert retry.json() == {
        "success": True,
        "accepted": 0,
        "duplicates": 5,
        "rejected_count": 0,
        "rejected": [],
        "flagged_count": 0,
        "flagged": [],
    }
    assert workspace.log.count() == 5


def test_message_id_and_received_at_are_stamped(client: TestClient, workspace: Workspace) -> None:
    response = post_batch(client, [{"type": "track", "userId": "u1", "event": "Signed Up"}])
    assert response.status_code == 200
    entries = [e for p in range(workspace.log.partitions) for e in workspace.log.read(p, 0)]
    stored = orjson.loads(entries[0].payload)
    assert len(stored["messageId"]) == 32 and stored["receivedAt"] and stored["source"] == "web"


def test_gzip_bodies_are_accepted_and_bad_gzip_is_a_400(client: TestClient) -> None:
    body = gzip.compress(orjson.dumps({"batch": [track("g1")]}))
    headers = {**basic(WRITE_KEY), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    assert client.post("/v1/batch", content=body, headers=headers).json()["accepted"] == 1
    bad = client.post("/v1/batch", content=b"not gzip at all", headers=headers)
    assert bad.status_code == 400
    assert "gzip" in bad.json()["error"]["message"]


def test_keys(client: TestClient) -> None:
    body = {"batch": [track("k1")]}
    assert client.post("/v1/batch", json=body).status_code == 401
    assert client.post("/v1/batch", json=body, headers=basic("wk_unknown_key")).status_code == 401
    assert client.post("/v1/batch", json={**body, "writeKey": WRITE_KEY}).status_code == 200
    missing = client.post("/v1/batch", json=body)
    assert missing.json()["error"]["code"] == "unauthorized"


def test_malformed_json_and_wrong_shapes_are_400(client: TestClient) -> None:
    headers = {**basic(WRITE_KEY), "Content-Type": "application/json"}
    malformed = client.post("/v1/batch", content=b"{not json", headers=headers)
    assert malformed.status_code == 400
    assert "JSON" in malformed.json()["error"]["message"]
    not_a_list = client.post("/v1/batch", json={"batch": {"a": 1}}, headers=basic(WRITE_KEY))
    assert not_a_list.status_code == 400
    assert not_a_list.json()["error"]["field"] == "batch"


def test_a_partly_bad_batch_accepts_the_good_and_reports_the_bad(
    client: TestClient, workspace: Workspace
) -> None:
    events = [track("ok1"), {"type": "launch", "userId": "u"}, {"type": "track", "event": "X"}]
    response = post_batch(client, events)
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1 and body["success"] is False
    assert [(item["index"], item["errors"][0]["field"]) for item in body["rejected"]] == [
        (1, "type"),
        (2, "<event>"),
    ]
    assert workspace.rejected.count() == 2
    listed = client.get("/v1/rejected", headers=bearer(SECRET_KEY)).json()
    assert listed["count"] == 2 and listed["by_reason"] == {"invalid": 2}


def test_an_all_bad_batch_is_a_400_naming_index_and_field(client: TestClient) -> None:
    response = post_batch(client, [track("x1"), {"type": "track", "userId": "u"}][1:])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "rejected"
    assert error["rejected"][0]["index"] == 0
    assert "event" in error["message"]


def test_size_limits(client: TestClient, workspace: Workspace) -> None:
    huge = track("big", properties={"blob": "x" * 33_000})
    response = post_batch(client, [huge, track("small")])
    assert response.status_code == 200
    assert response.json()["rejected"][0]["reason"] == "too_large"
    single = client.post("/v1/track", json=huge, headers=basic(WRITE_KEY))
    assert single.status_code == 413
    batch = post_batch(client, [track(f"b{i}", properties={"p": "y" * 20_000}) for i in range(30)])
    assert batch.status_code == 413
    assert workspace.log.count() == 1


def test_single_event_endpoints_take_their_type_from_the_path(
    client: TestClient, workspace: Workspace
) -> None:
    for kind, body in [
        ("track", {"userId": "u1", "event": "Signed Up"}),
        ("identify", {"userId": "u1", "traits": {"plan": "pro"}}),
        ("page", {"anonymousId": "a1", "name": "Home"}),
        ("screen", {"anonymousId": "a1", "name": "Feed"}),
        ("group", {"userId": "u1", "groupId": "g1"}),
        ("alias", {"userId": "u1", "previousId": "a1"}),
    ]:
        response = client.post(f"/v1/{kind}", json=body, headers=basic(WRITE_KEY))
        assert response.status_code == 200, (kind, response.text)
    assert workspace.log.count() == 6
    bad = client.post("/v1/track", json={"userId": "u1"}, headers=basic(WRITE_KEY))
    assert bad.status_code == 400


def test_tracking_plan_enforce_rejects_and_flag_marks(client: TestClient) -> None:
    order = {
        "type": "track",
        "userId": "u",
        "event": "Order Completed",
        "properties": {"revenue": -5},
    }
    flagged = post_batch(client, [{**order, "messageId": "f1"}])
    assert flagged.status_code == 200
    assert flagged.json()["flagged"][0]["errors"][0]["field"] == "properties.revenue"
    enforced = post_batch(client, [{**order, "messageId": "e1"}], key=STRICT_KEY)
    assert enforced.status_code == 400
    listed = client.get("/v1/rejected?reason=tracking_plan", headers=bearer(SECRET_KEY)).json()
    assert listed["count"] == 1
    assert listed["events"][0]["messageId"] == "e1"
    assert listed["events"][0]["source"] == "strict"


def test_pii_never_reaches_a_store_in_plain_text(client: TestClient, workspace: Workspace) -> None:
    identify = {"type": "identify", "userId": "u9", "traits": {"email": "Secret@Example.com"}}
    post_batch(client, [identify, {**identify, "type": "bogus"}])
    payloads = [
        e.payload for p in range(workspace.log.partitions) for e in workspace.log.read(p, 0)
    ]
    assert payloads and all(b"ecret@" not in payload for payload in payloads)
    rejected = client.get("/v1/rejected", headers=bearer(SECRET_KEY)).json()["events"]
    assert rejected and "ecret@" not in orjson.dumps(rejected).decode()


def test_rejected_events_are_replayed_after_the_plan_changes(
    client: TestClient, workspace: Workspace
) -> None:
    order = {"type": "track", "userId": "u", "event": "Order Completed", "properties": {}}
    post_batch(client, [{**order, "messageId": "r1"}], key=STRICT_KEY)
    # Still invalid under the same plan: stays rejected.
    same = client.post("/v1/rejected/replay", json={}, headers=bearer(SECRET_KEY)).json()
    assert same["still_rejected"] == 1 and workspace.rejected.count() == 1
    assert workspace.log.count() == 0


def test_replay_logs_rejected_events_once_the_plan_accepts_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import TEST_CONFIG, write_config
    from touchpoint.api.app import create_app
    from touchpoint.config.settings import load_settings

    data_dir = tmp_path / "data"
    order = {"type": "track", "userId": "u", "event": "Order Completed", "properties": {}}
    strict = load_settings(write_config(tmp_path, TEST_CONFIG), data_dir, environ={})
    with TestClient(create_app(strict)) as client:
        assert (
            post_batch(client, [{**order, "messageId": "late-1"}], key=STRICT_KEY).status_code
            == 400
        )

    relaxed_config = {**TEST_CONFIG, "tracking_plan": {"events": {}}}
    relaxed = load_settings(write_config(tmp_path, relaxed_config), data_dir, environ={})
    with TestClient(create_app(relaxed)) as client:
        replayed = client.post("/v1/rejected/replay", json={}, headers=bearer(SECRET_KEY)).json()
        assert replayed == {
            "replayed": 1,
            "accepted": 1,
            "duplicates": 0,
            "still_rejected": 0,
            "unknown_source": 0,
        }
        assert client.get("/v1/rejected", headers=bearer(SECRET_KEY)).json()["count"] == 0
        workspace = client.app.state.workspace  # type: ignore[attr-defined]
        assert workspace.processor.wait_idle(10)
        profile = client.get("/v1/profiles/user_id/u", headers=bearer(SECRET_KEY)).json()
        assert profile["profile_id"]


def test_a_store_that_cannot_write_is_a_503_with_retry_after(
    client: TestClient, workspace: Workspace, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    def broken(records):  # type: ignore[no-untyped-def]
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(workspace.log, "append", broken)
    response = post_batch(client, [track("full-1")])
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "unavailable"


def test_large_bodies_are_prepared_on_the_threadpool_with_the_same_outcome(
    client: TestClient, workspace: Workspace, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import threading

    from touchpoint.api.routers import collect as collect_router

    threads: list[str] = []
    prepare = workspace.collector.prepare

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return prepare(*args, **kwargs)

    monkeypatch.setattr(workspace.collector, "prepare", spy)
    events = [track("big-1"), {"type": "launch", "userId": "u"}]
    small = post_batch(client, events)
    monkeypatch.setattr(collect_router, "INLINE_BODY_BYTES", 10)
    large = post_batch(client, [track("big-2"), {"type": "launch", "userId": "u"}])
    assert small.status_code == large.status_code == 200
    assert small.json()["accepted"] == large.json()["accepted"] == 1
    assert small.json()["rejected"][0]["errors"] == large.json()["rejected"][0]["errors"]
    loop_thread, pool_thread = threads
    assert loop_thread != pool_thread  # inline on the loop, then on a worker thread
    bad = client.post("/v1/track", content=b"{nope", headers=basic(WRITE_KEY))
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    unknown = client.post("/v1/identify", json={"userId": "u"}, headers=basic("wk_unknown"))
    assert unknown.status_code == 401
    assert workspace.log.count() == 2
