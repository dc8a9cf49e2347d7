"""Erasure leaves no bytes: after `DELETE /v1/profiles/...`, no file under the data
directory holds the person's raw ids, email, phone, a unique trait value or their hashed
identifiers, in any form (UTF-8, UTF-16, JSON-escaped, inside Parquet pages or model
archives), neither after a clean stop nor while the workspace is still open.

The workspace has every embedded store with personal data: profiles, the event log (and
its dedup keys), decisions, rejected events, the audit log, the warehouse (Parquet) and
trained models (the recommender keeps a row per person it learned from).

SQLite builds differ in whether deleted rows are zeroed by default (Debian's build turns
`SECURE_DELETE` on, the upstream amalgamation does not): every connection here starts as
the upstream default would (`secure_delete` off), so the stores must turn it on themselves.

The person's profile id is searched for too: it is the key of their rows in the warehouse
and in model artifacts. Only the audit log keeps it, in the erasure job's record (the id
of a profile that no longer exists, kept so the job can say what it erased).
"""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.conftest import (
    SECRET_KEY,
    STRICT_KEY,
    TEST_CONFIG,
    TEST_START,
    WRITE_KEY,
    basic,
    bearer,
    drain,
    write_config,
)
from touchpoint.api.app import create_app
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import ManualClock, isoformat
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.simulate import simulate_visitors
from touchpoint.models.registry import ModelRegistry
from touchpoint.models.training import Trainer
from touchpoint.runtime import Workspace

ADMIN = bearer(SECRET_KEY)
USER = "zq-erased-user-5c81d07e"
ANON = "zq-erased-anon-93b4aa1f"
EMAIL = "Zelda.Quorn-5c81@Example.org"
PHONE = "+44 7700 900461"
ADDRESS = "17 Quillfeather Straße, Nethercombe"  # non-ASCII: escaped forms are searched too
KEPT_USER = "zq-kept-user-0a61"
AUDIT_FILE = "audit.sqlite3"

CONFIG = {
    **TEST_CONFIG,
    "identity": {
        **TEST_CONFIG["identity"],
        "kinds": [
            {"name": "user_id", "source": "user_id", "priority": 1, "limit": 1},
            {"name": "email", "source": "traits.email", "priority": 2, "pii": True,
             "normalize": "email"},
            {"name": "phone", "source": "traits.phone", "priority": 3, "pii": True,
             "normalize": "phone"},
            {"name": "anonymous_id", "source": "anonymous_id", "priority": 10},
        ],
    },
}  # fmt: skip


@dataclass(frozen=True)
class Person:
    """What must not survive the erasure: name of each needle -> its text."""

    needles: dict[str, str]


def send(client: TestClient, *events: dict[str, Any], key: str = WRITE_KEY) -> int:
    response = client.post("/v1/batch", json={"batch": list(events)}, headers=basic(key))
    return response.status_code


def build(client: TestClient, workspace: Workspace) -> Person:
    """Simulated shop history, the person (events, decisions, a rejected event), trained
    models that learned from them; the needles to search for afterwards."""
    at = TEST_START - timedelta(days=3)
    stamp = isoformat(at)
    messages = list(
        simulate_visitors(
            120, seed=5, catalog=build_catalog(), start=TEST_START - timedelta(days=60), days=58
        )
    )
    for start in range(0, len(messages), 500):
        assert send(client, *messages[start : start + 500]) == 200
    products = [message["properties"]["product_id"] for message in messages
                if message.get("event") == "Product Viewed"][:6]  # fmt: skip
    person_events: list[dict[str, Any]] = [
        {"type": "page", "anonymousId": ANON, "name": "Home", "timestamp": stamp},
        {"type": "identify", "anonymousId": ANON, "userId": USER, "timestamp": stamp,
         "traits": {"email": EMAIL, "phone": PHONE, "address": ADDRESS, "name": "Zelda"}},
        *({"type": "track", "userId": USER, "event": "Product Viewed", "timestamp": stamp,
           "properties": {"product_id": product}} for product in products),
        {"type": "track", "userId": USER, "event": "Order Completed", "timestamp": stamp,
         "properties": {"revenue": 31.5, "product_id": products[0]}},
        {"type": "identify", "userId": KEPT_USER, "traits": {"name": "Kept"}},
    ]  # fmt: skip
    assert send(client, *person_events) == 200
    traits = {"email": EMAIL, "phone": PHONE, "address": ADDRESS}
    rejected = {"type": "track", "userId": USER, "event": "Order Completed",
                "properties": {"coupon": "X"}, "context": {"traits": traits}}  # fmt: skip
    assert send(client, rejected, key=STRICT_KEY) == 400
    drain(workspace)
    for subject in ({"user_id": USER}, {"anonymous_id": ANON}):
        decided = client.post(
            "/v1/decide", json={**subject, "placements": ["home_hero"]}, headers=ADMIN
        )
        assert decided.status_code == 200, decided.text
    assert workspace.warehouse is not None
    outcomes = Trainer(
        config=workspace.settings.config,
        warehouse=workspace.warehouse,
        registry=ModelRegistry(workspace.settings.data_dir / "models"),
        profiles=workspace.profiles,
        writer=workspace.warehouse_writer,
        clock=workspace.clock.now,
    ).run(as_of=TEST_START)
    promoted = {outcome.model for outcome in outcomes if outcome.status == "promoted"}
    assert "recommendations" in promoted, [(o.model, o.reason) for o in outcomes]
    profile = client.get(f"/v1/profiles/user_id/{USER}", headers=ADMIN).json()
    email = workspace.resolver.identity_for_lookup("email", EMAIL, workspace.hasher)
    phone = workspace.resolver.identity_for_lookup("phone", PHONE, workspace.hasher)
    assert email.value in profile["identities"]["email"]
    assert phone.value in profile["identities"]["phone"]
    needles = {
        "user id": USER,
        "anonymous id": ANON,
        "email": EMAIL,
        "phone": PHONE,
        "phone digits": "".join(c for c in PHONE if c.isdigit()),
        "address": ADDRESS,
        "hashed email": email.value.removeprefix("h1:"),
        "hashed phone": phone.value.removeprefix("h1:"),
    }
    return Person(needles={**needles, "profile id": profile["profile_id"]})


def forms(text: str) -> dict[str, bytes]:
    """The ways a store may write `text` down, lower-cased (the search is case-blind)."""
    lower = text.lower()
    escaped = json.dumps(lower, ensure_ascii=True)[1:-1]
    return {
        "utf-8": lower.encode(),
        "json-escaped": escaped.encode(),
        "utf-16-le": lower.encode("utf-16-le"),
        "utf-16-be": lower.encode("utf-16-be"),
        "utf-32-le": lower.encode("utf-32-le"),  # numpy's string arrays
    }


def views(path: Path) -> Iterator[tuple[str, bytes]]:
    """The file's bytes, and what compressed containers hold: Parquet column values and
    zip (npz) members, decoded."""
    data = path.read_bytes()
    yield "bytes", data
    if path.suffix == ".parquet" and data.startswith(b"PAR1"):
        table = pq.read_table(io.BytesIO(data))
        yield "parquet values", json.dumps(table.to_pylist(), default=str).encode()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                yield f"member {name}", archive.read(name)


def search(directory: Path, person: Person) -> list[str]:
    """Every (file, view, needle, form) where a needle is found."""
    patterns = {
        (name, form): pattern
        for name, text in person.needles.items()
        for form, pattern in forms(text).items()
    }
    found: list[str] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        for view, data in views(path):
            lower = data.lower()
            for (name, form), pattern in patterns.items():
                if name == "profile id" and path.name.startswith(AUDIT_FILE):
                    continue  # the job record (see the module docstring)
                if pattern in lower:
                    found.append(f"{path.relative_to(directory)} [{view}]: {name} ({form})")
    return found


@pytest.fixture
def opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Workspace, TestClient]]:
    connect = sqlite3.connect

    def connect_as_upstream_builds(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.execute("PRAGMA secure_delete = OFF")
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect_as_upstream_builds)
    settings = load_settings(
        write_config(tmp_path, CONFIG), tmp_path / "data", environ={}, enable_noop_endpoint=True
    )
    workspace = Workspace.open(settings, clock=ManualClock(TEST_START))
    try:
        yield workspace, TestClient(create_app(settings, workspace=workspace))
    finally:
        workspace.close()


def erase(client: TestClient) -> dict[str, Any]:
    response = client.delete(f"/v1/profiles/user_id/{USER}", headers=ADMIN)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "completed"
    return job


def test_no_file_holds_the_person_after_erasure_and_a_clean_stop(
    opened: tuple[Workspace, TestClient],
) -> None:
    workspace, client = opened
    person = build(client, workspace)
    data_dir = workspace.settings.data_dir
    assert search(data_dir, person), "the search finds a person who exists"

    erase(client)
    workspace.close()

    found = search(data_dir, person)
    assert found == [], "\n".join(found)


def test_no_file_holds_the_person_while_the_workspace_stays_open(
    opened: tuple[Workspace, TestClient],
) -> None:
    workspace, client = opened
    person = build(client, workspace)
    data_dir = workspace.settings.data_dir

    job = erase(client)

    found = search(data_dir, person)
    assert found == [], "\n".join(found)
    assert job["leftovers"] == []
