"""Shared fixtures: a workspace on temporary embedded stores, and an HTTP client on it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from tests import servers
from touchpoint.api.app import create_app
from touchpoint.config.settings import Settings, load_settings
from touchpoint.core.clock import Clock
from touchpoint.runtime import Workspace

# The real servers' fixtures, for every test directory (see tests/servers.py).
postgres_schema = servers.postgres_schema
postgres = servers.postgres
redis_prefix = servers.redis_prefix
redis_service = servers.redis_service

# The date every test workspace starts at: tests write fixed dates (events of 2026-11-20),
# so the workspace's clock must not be the wall clock, or windows measured from "now" drift
# out from under them as the calendar moves on. It runs at real speed from there.
TEST_START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

WRITE_KEY = "wk_test_web_source"
STRICT_KEY = "wk_test_strict_source"
SECRET_KEY = "sk_test_secret_key_0123456789"
CLIENT_KEY = "wk_test_client_decisions"

TEST_CONFIG = {
    "workspace": "test",
    "secret_key": SECRET_KEY,
    "sources": [
        {"name": "web", "write_key": WRITE_KEY, "tracking_plan_mode": "flag"},
        {"name": "strict", "write_key": STRICT_KEY, "tracking_plan_mode": "enforce"},
        {"name": "site", "write_key": CLIENT_KEY, "allow_client_decisions": True},
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
    "placements": [
        {"name": "home_hero", "fallback": "hero_default", "conversion_events": ["Order Completed"]},
        {"name": "product_recs", "tags": ["recs"], "fallback": "recs_default"},
    ],
    "content": [
        {
            "id": "hero_default",
            "placements": ["home_hero"],
            "payload": {"headline": "Welcome"},
            "template": "<h1>Welcome</h1>",
        },
        {
            "id": "hero_buyer",
            "placements": ["home_hero"],
            "priority": 20,
            "eligibility": "segments contains 'buyers'",
            "template": "<h1>Thanks{% if traits.name %}, {{ traits.name }}{% endif %}</h1>",
        },
        {
            "id": "hero_browser",
            "placements": ["home_hero"],
            "priority": 10,
            "eligibility": "features.views_7d >= 2",
            "payload": {"headline": "Still looking?"},
            "caps": [{"max": 3, "per": "1d"}],
        },
        {"id": "recs_default", "payload": {"items": []}},
        {
            "id": "recs_recent",
            "tags": ["recs"],
            "eligibility": "features.recent_products exists",
            "template": (
                "<ul>{% for p in features.recent_products %}<li>{{ p }}</li>{% endfor %}</ul>"
            ),
        },
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


def fixed_clock() -> Clock:
    """A clock at TEST_START, running at real speed."""
    return Clock.starting_at(TEST_START)


@pytest.fixture
def clock() -> Clock:
    return fixed_clock()


@pytest.fixture
def workspace(settings: Settings, clock: Clock) -> Iterator[Workspace]:
    opened = Workspace.open(settings, clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def client(settings: Settings, workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(settings, workspace=workspace)) as test_client:
        yield test_client


def drain(workspace: Workspace) -> int:
    """Run the profile consumer until the log has nothing left for it, then the outcome
    consumer (which follows it) likewise; the entries the profile consumer handled. The
    warehouse copy is left to `workspace.warehouse_writer` (it accumulates)."""
    total = 0
    while done := workspace.processor.run_once():
        total += done
    outcomes = workspace.loops.consumer("outcomes")
    while outcomes.run_once():
        pass
    return total


def server_config(postgres_schema: str, redis_prefix: str, **overrides: object) -> dict:
    """TEST_CONFIG in server mode: every store on PostgreSQL (this test's schema), the log and
    the profile cache on Redis (this test's prefix)."""
    return {
        **TEST_CONFIG,
        "postgres": {"url": servers.POSTGRES_URL, "schema": postgres_schema, "pool_max": 4},
        "redis": {"url": servers.REDIS_URL, "prefix": redis_prefix},
        **overrides,
    }


@pytest.fixture
def server_settings(tmp_path: Path, postgres_schema: str, redis_prefix: str) -> Settings:
    """Settings of a server-mode workspace on this test's own schema and key prefix."""
    path = write_config(tmp_path, server_config(postgres_schema, redis_prefix))
    return load_settings(path, tmp_path / "data", environ={}, enable_noop_endpoint=True)


@pytest.fixture
def server_workspace(server_settings: Settings, clock: Clock) -> Iterator[Workspace]:
    opened = Workspace.open(server_settings, clock=clock)
    yield opened
    opened.close()
