"""The demo storefront router (`demo.page`, added by `touchpoint demo`): the page, its script,
the visitors file, and its guards."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import CLIENT_KEY, TEST_CONFIG, basic, write_config
from touchpoint.api.app import create_app
from touchpoint.config.settings import Settings, load_settings
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.page import router, script_json
from touchpoint.demo.showcase import VISITORS_FILE
from touchpoint.runtime import Workspace


@pytest.fixture
def demo_settings(tmp_path: Path) -> Settings:
    path = write_config(tmp_path, TEST_CONFIG)
    return load_settings(path, tmp_path / "data", environ={})


@pytest.fixture
def demo_client(demo_settings: Settings) -> Iterator[TestClient]:
    workspace = Workspace.open(demo_settings)
    try:
        with TestClient(create_app(demo_settings, workspace=workspace, routers=[router])) as client:
            yield client
    finally:
        workspace.close()


def page_config(html: str) -> dict[str, object]:
    found = re.search(r'<script id="tp-config" type="application/json">(.*?)</script>', html)
    assert found is not None
    loaded: dict[str, object] = json.loads(found.group(1))
    return loaded


def test_the_page_carries_the_client_decision_key_and_the_placements(
    demo_client: TestClient,
) -> None:
    response = demo_client.get("/demo")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    config = page_config(response.text)
    assert config["writeKey"] == CLIENT_KEY  # the source with allow_client_decisions
    assert config["source"] == "site"
    assert config["placements"] == ["home_hero", "product_recs"]
    assert '<script src="/demo/storefront.js"' in response.text
    assert "http://" not in response.text and "https://" not in response.text  # no CDN


def test_the_script_is_served_and_inserts_only_engine_html_as_markup(
    demo_client: TestClient,
) -> None:
    response = demo_client.get("/demo/storefront.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    script = response.text
    assert "/v1/decide" in script and "Decision Viewed" in script and "Decision Clicked" in script
    assert script.count("innerHTML") == 1 and "innerHTML = result.html" in script


def test_visitors_are_404_until_the_demo_writes_them(
    demo_client: TestClient, demo_settings: Settings
) -> None:
    missing = demo_client.get("/demo/visitors.json")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    document = {"visitors": [{"key": "v1", "label": "<b>Ada</b>"}], "placements": ["home_hero"]}
    (demo_settings.data_dir / VISITORS_FILE).write_text(json.dumps(document), encoding="utf-8")
    found = demo_client.get("/demo/visitors.json")
    assert found.status_code == 200 and found.json() == document
    assert found.headers["cache-control"] == "no-store"


def test_visitors_named_by_user_id_come_signed_by_the_shop_backend(
    demo_client: TestClient, demo_settings: Settings
) -> None:
    document = {
        "visitors": [
            {"key": "v1", "kind": "user_id", "value": "user-7"},
            {"key": "v2", "kind": "anonymous_id", "value": "device-9"},
        ]
    }
    (demo_settings.data_dir / VISITORS_FILE).write_text(json.dumps(document), encoding="utf-8")
    visitors = demo_client.get("/demo/visitors.json").json()["visitors"]
    assert "user_hash" not in visitors[1]
    # The page may decide for the signed visitor with the public key, and sends the hash.
    body = {"user_id": "user-7", "user_hash": visitors[0]["user_hash"], "placements": ["home_hero"]}
    decided = demo_client.post("/v1/decide", json=body, headers=basic(CLIENT_KEY))
    assert decided.status_code == 200, decided.text
    assert "profile_id" not in decided.json()
    script = demo_client.get("/demo/storefront.js").text
    assert "body.user_hash = state.visitor.user_hash" in script
    assert "message.context.user_hash = state.visitor.user_hash" in script


def test_the_page_is_not_served_unless_the_demo_adds_it(client: TestClient) -> None:
    for path in ("/demo", "/demo/storefront.js", "/demo/visitors.json"):
        assert client.get(path).status_code == 404


def test_page_json_cannot_close_its_script_element() -> None:
    text = script_json({"workspace": "</script><script>alert(1)</script>", "x": "a & b"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["workspace"] == "</script><script>alert(1)</script>"


def test_the_page_has_the_placements_of_the_demo_workspace(tmp_path: Path) -> None:
    from touchpoint.demo.workspace import demo_workspace

    data = demo_workspace(build_catalog(), write_key="wk_demo_page_test")
    path = write_config(tmp_path, data)
    settings = load_settings(path, tmp_path / "data", environ={})
    with TestClient(create_app(settings, routers=[router])) as client:
        config = page_config(client.get("/demo").text)
    assert config["placements"] == ["home_hero", "product_recs", "cart_banner"]
    assert config["writeKey"] == "wk_demo_page_test"
