"""export_person on a real workspace (embedded stores in a temporary directory)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.conftest import STRICT_KEY, WRITE_KEY, drain
from touchpoint.core.errors import NotFound
from touchpoint.decide.decision_log.base import DecisionRecord, Outcome
from touchpoint.govern.export import EXPORT_ACTION, export_person
from touchpoint.profiles.model import Identity
from touchpoint.runtime import Workspace

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = "grace@example.com"


def collect(workspace: Workspace, *events: dict[str, Any], key: str = WRITE_KEY) -> None:
    source = workspace.settings.config.source_by_key(key)
    assert source is not None
    workspace.collector.collect(source, list(events))


def export(workspace: Workspace, kind: str, value: str) -> dict[str, Any]:
    return export_person(
        kind,
        value,
        people=workspace.people,
        decisions=workspace.decisions,
        rejected=workspace.rejected,
        audit=workspace.audit,
        actor="cli:test",
        clock=lambda: NOW,
    )


def test_export_holds_the_whole_timeline_oldest_first(workspace: Workspace) -> None:
    views = [
        {
            "type": "track",
            "anonymousId": "g-anon",
            "event": "Product Viewed",
            "messageId": f"view-{n:04d}",
            "timestamp": f"2026-02-{1 + n // 60:02d}T10:{n % 60:02d}:00Z",
            "properties": {"product_id": f"p{n}"},
        }
        for n in range(620)
    ]
    collect(workspace, *views)
    collect(
        workspace,
        {"type": "identify", "anonymousId": "g-anon", "userId": "grace",
         "traits": {"email": EMAIL, "name": "Grace"}, "timestamp": "2026-02-28T00:00:00Z"},
    )  # fmt: skip
    drain(workspace)
    document = export(workspace, "email", EMAIL)

    assert document["exported_at"] == "2026-03-01T12:00:00.000Z"
    assert len(document["events"]) == 621  # more than one page of the timeline
    stamps = [event["timestamp"] for event in document["events"]]
    assert stamps == sorted(stamps)
    assert document["events"][-1]["type"] == "identify"
    assert document["profile"]["traits"] == {"name": "Grace"}
    assert document["profile"]["features"]["recent_products"][0] == "p619"
    kinds = {identity["kind"]: identity["value"] for identity in document["identities"]}
    assert kinds["user_id"] == "grace"
    assert kinds["anonymous_id"] == "g-anon"
    assert kinds["email"].startswith("h1:")
    assert EMAIL not in orjson.dumps(document).decode()
    assert document["lineage"] == []
    assert document["decisions"] == document["outcomes"] == document["rejected_events"] == []


def test_export_includes_decisions_outcomes_rejections_and_segments(
    workspace: Workspace,
) -> None:
    collect(
        workspace,
        {"type": "identify", "userId": "grace", "traits": {"email": EMAIL}},
        {"type": "track", "userId": "grace", "event": "Order Completed",
         "properties": {"revenue": 30}},
        {"type": "track", "userId": "linus", "event": "Order Completed",
         "properties": {"revenue": 30}},
    )  # fmt: skip
    collect(
        workspace,
        {"type": "track", "userId": "grace", "event": "Order Completed", "properties": {}},
        {"type": "track", "userId": "linus", "event": "Order Completed", "properties": {}},
        key=STRICT_KEY,
    )
    drain(workspace)
    profile_id = workspace.profiles.find(Identity("user_id", "grace"))
    record = DecisionRecord(
        decision_id="d1",
        placement="home_hero",
        content_id="hero_buyer",
        profile_id=profile_id,
        subject="user_id:grace",
        policy="priority",
        definitions_version=1,
        reason="eligible",
        propensity=1.0,
        at="2026-03-01T11:00:00.000Z",
    )
    workspace.decisions.record([record])
    workspace.decisions.record_outcomes(
        [Outcome("o1", "d1", "home_hero", "hero_buyer", "click", "Decision Clicked",
                 profile_id, "2026-03-01T11:01:00.000Z")]
    )  # fmt: skip

    document = export(workspace, "user_id", "grace")
    assert [d["decision_id"] for d in document["decisions"]] == ["d1"]
    assert document["decisions"][0]["content_id"] == "hero_buyer"
    assert [o["message_id"] for o in document["outcomes"]] == ["o1"]
    assert [(c["segment"], c["change"]) for c in document["segment_history"]] == [
        ("buyers", "enter")
    ]
    assert document["profile"]["segments"] == ["buyers"]
    assert len(document["rejected_events"]) == 1
    assert document["rejected_events"][0]["event"]["userId"] == "grace"

    [entry] = workspace.audit.list(action=EXPORT_ACTION).items
    assert (entry.actor, entry.target) == ("cli:test", profile_id)
    assert entry.details == {"events": 2, "decisions": 1, "outcomes": 1, "rejected_events": 1}


def test_export_of_an_unknown_person_or_kind_is_not_found(workspace: Workspace) -> None:
    with pytest.raises(NotFound) as raised:
        export(workspace, "email", "nobody@example.com")
    assert "nobody" not in str(raised.value.to_dict())
    with pytest.raises(NotFound, match="shoe_size"):
        export(workspace, "shoe_size", "42")
    assert workspace.audit.list(action=EXPORT_ACTION).items == []
