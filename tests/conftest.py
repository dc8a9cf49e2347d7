"""Shared fixtures: a workspace on temporary embedded stores, and an HTTP client on it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from touchpoint.api.app import create_app
from touchpoint.core.settings import Settings, load_settings
from touchpoint.runtime import Workspace

WRITE_KEY = "wk_test_web_source"
STRICT_KEY = "wk_test_strict_source"
SECRET_KEY = "sk_test_secret_key_0123456789"

TEST_CONFIG = {
    "workspace": "test",
    "secret_key": SECRET_KEY,
    "sources": [
        {"name": "web", "write_key": WRITE_KEY, "tracking_plan_mode": "flag"},
        {"name": "strict", "write_key": STRICT_KEY, "tracking_plan_mode": "enforce"},
    ],
    "identity": {"hash_secret": "test-hash-secret-0123456789"},
    "tracking_plan": {
        "events": {
            "Order Completed": {
                "properties": {
                    "type": "object",
                    "required": ["revenue"],
                    "properties": {"revenue": {"type": "number", "minimum": 0}},
                }
            }
        }
    },
    "features": [
        {"name": "views_7d", "type": "count", "event": "Product Viewed", "window": "7d"},
        {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "revenue"},
        {
            "name": "recent_products",
            "type": "last_distinct",
            "event": "Product Viewed",
            "property": "product_id",
            "n": 5,
        },
        {"name": "cart", "type": "cart"},
    ],
    "segments": [
        {"name": "buyers", "condition": "features.revenue > 0"},
        {"name": "browsers", "condition": {"field": "features.views_7d", "gte": 2}},
    ],
}


def write_config(directory: Path, data: dict) -> Path:
    path = directory / "touchpoint.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = write_config(tmp_path, TEST_CONFIG)
    return load_settings(path, tmp_path / "data", environ={}, enable_noop_endpoint=True)


@pytest.fixture
def workspace(settings: Settings) -> Iterator[Workspace]:
    opened = Workspace.open(settings)
    yield opened
    opened.close()


@pytest.fixture
def client(settings: Settings, workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(settings, workspace=workspace)) as test_client:
        yield test_client


def drain(workspace: Workspace) -> int:
    """Run the processor until the log has nothing left for it; returns events processed."""
    total = 0
    while True:
        done = workspace.processor.run_once()
        total += done
        if not done:
            return total
