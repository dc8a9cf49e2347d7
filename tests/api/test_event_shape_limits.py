"""Events nested too deeply or too wide are one rejected entry naming the path, never a 500
that takes the good events of the batch down with it; whatever is accepted can be read back
by the timeline and the export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SECRET_KEY, TEST_CONFIG, WRITE_KEY, basic, bearer, drain, write_config
from touchpoint.api.app import create_app
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import Clock
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)
GOOD = {"type": "track", "event": "Viewed", "userId": "good-person"}


def nested_text(levels: int, *, arrays: bool = False) -> str:
    """JSON text of `levels` nested objects (`{"a": {"a": ... 1}}`) or arrays (`[[...1]]`),
    written by hand: the stdlib encoder's recursion limit is lower than what is tested."""
    if arrays:
        return "[" * levels + "1" + "]" * levels
    return '{"a":' * levels + "1" + "}" * levels


def post_batch(client: TestClient, *events: str) -> Any:
    body = '{"batch":[' + ",".join(events) + "]}"
    headers = {**basic(WRITE_KEY), "Content-Type": "application/json"}
    return client.post("/v1/batch", content=body.encode(), headers=headers)


def deep_event(user: str, levels: int, *, arrays: bool = False) -> str:
    value = nested_text(levels, arrays=arrays)
    return f'{{"type":"track","event":"Viewed","userId":"{user}","properties":{{"deep":{value}}}}}'


@pytest.mark.parametrize("levels", [40, 250, 251, 252, 253, 300, 1000])
@pytest.mark.parametrize("arrays", [False, True])
def test_a_too_deep_event_is_one_rejection_naming_its_path(
    client: TestClient, levels: int, arrays: bool
) -> None:
    import orjson

    response = post_batch(
        client, orjson.dumps(GOOD).decode(), deep_event("deep", levels, arrays=arrays)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    [problem] = body["rejected"]
    assert problem["index"] == 1
    assert problem["reason"] == "invalid"
    [error] = problem["errors"]
    # The event is level 1, `properties` 2, `deep` 3: the first container past 32 levels.
    expected = "properties.deep" + ("[0]" * 30 if arrays else ".a" * 30)
    assert error["field"] == expected
    assert "32 levels" in error["reason"]
    listed = client.get("/v1/rejected", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    assert listed.json()["count"] == 1


def test_a_single_too_deep_event_is_a_400_naming_the_path(client: TestClient) -> None:
    body = '{"event":"Viewed","userId":"u","properties":' + nested_text(300) + "}"
    headers = {**basic(WRITE_KEY), "Content-Type": "application/json"}
    response = client.post("/v1/track", content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"].startswith("event 0 rejected: properties.a.a.a")


def test_a_batch_context_too_deep_is_a_400_naming_the_path(client: TestClient) -> None:
    body = '{"batch":[{"type":"track","event":"V","userId":"u"}],"context":' + nested_text(40) + "}"
    headers = {**basic(WRITE_KEY), "Content-Type": "application/json"}
    response = client.post("/v1/batch", content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"].startswith("context.a.a")
    assert "levels" in error["message"]


def test_too_many_keys_or_items_is_one_rejection_naming_the_path(client: TestClient) -> None:
    import orjson

    wide_object = {**GOOD, "userId": "wide", "properties": {"o": {f"k{i}": i for i in range(1001)}}}
    wide_array = {**GOOD, "userId": "long", "traits": {}, "properties": {"l": [0] * 1001}}
    response = post_batch(
        client,
        orjson.dumps(GOOD).decode(),
        orjson.dumps(wide_object).decode(),
        orjson.dumps(wide_array).decode(),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    fields = {problem["index"]: problem["errors"][0] for problem in body["rejected"]}
    assert fields[1]["field"] == "properties.o"
    assert "1000 keys" in fields[1]["reason"]
    assert fields[2]["field"] == "properties.l"
    assert "1000 items" in fields[2]["reason"]


def _read_back(client: TestClient, workspace: Workspace, user: str) -> None:
    drain(workspace)
    timeline = client.get(f"/v1/profiles/user_id/{user}/events", headers=ADMIN)
    assert timeline.status_code == 200, timeline.text
    assert timeline.json()["events"][0]["properties"]["deep"]
    export = client.get(f"/v1/profiles/user_id/{user}/export", headers=ADMIN)
    assert export.status_code == 200, export.text


@pytest.mark.parametrize("arrays", [False, True])
def test_an_event_at_the_depth_limit_is_accepted_and_readable(
    client: TestClient, workspace: Workspace, arrays: bool
) -> None:
    # Levels: the event 1, properties 2, then 30 nested containers: 32 in all.
    response = post_batch(client, deep_event("at-limit", 30, arrays=arrays))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1, response.text
    _read_back(client, workspace, "at-limit")


def test_the_highest_configurable_depth_is_still_readable_and_exportable(
    tmp_path: Path, clock: Clock
) -> None:
    config = {**TEST_CONFIG, "collect": {"max_depth": 128, "max_event_bytes": 64 * 1024}}
    settings = load_settings(write_config(tmp_path, config), tmp_path / "data", environ={})
    workspace = Workspace.open(settings, clock=clock)
    try:
        with TestClient(create_app(settings, workspace=workspace)) as client:
            response = post_batch(client, deep_event("deepest", 126))  # 128 levels
            assert response.json()["accepted"] == 1, response.text
            too_deep = post_batch(client, deep_event("deeper", 127))
            assert too_deep.status_code == 400, too_deep.text
            assert "128 levels" in too_deep.json()["error"]["message"]
            _read_back(client, workspace, "deepest")
    finally:
        workspace.close()


def test_the_depth_setting_is_bounded(tmp_path: Path) -> None:
    from touchpoint.core.errors import DefinitionError

    config = {**TEST_CONFIG, "collect": {"max_depth": 200}}
    with pytest.raises(DefinitionError) as raised:
        load_settings(write_config(tmp_path, config), tmp_path / "data", environ={})
    assert raised.value.path == "collect.max_depth"


def test_a_body_nested_past_the_parser_limit_is_a_400(client: TestClient) -> None:
    response = post_batch(client, deep_event("deepest", 2000))
    assert response.status_code == 400, response.text
    assert "not valid JSON" in response.json()["error"]["message"]


def test_on_server_stores_a_too_deep_event_is_stored_rejected_and_the_good_one_readable(
    server_settings: Any, server_workspace: Workspace
) -> None:
    """The same on PostgreSQL (rejected store, profiles) and Redis (the log)."""
    import orjson

    with TestClient(create_app(server_settings, workspace=server_workspace)) as client:
        good = {**GOOD, "properties": {"deep": orjson.loads(nested_text(30))}}
        response = post_batch(client, orjson.dumps(good).decode(), deep_event("deep", 1000))
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1
        listed = client.get("/v1/rejected", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        [stored] = listed.json()["events"]
        assert stored["errors"][0]["field"].startswith("properties.deep.a.a")
        _read_back(client, server_workspace, "good-person")
