"""Applying definitions: the diff, whole-or-nothing validation, audit, sync and item edits."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from touchpoint.audit.sqlite import SqliteAuditLog
from touchpoint.core.errors import DefinitionError, InvalidInput, NotFound
from touchpoint.definitions.apply import (
    APPLY_ACTION,
    ChangedItem,
    apply_definitions,
    delete_content,
    delete_placement,
    diff_definitions,
    edit_definitions,
    put_content,
    put_placement,
    sync_definitions,
)
from touchpoint.definitions.content import ContentConfig
from touchpoint.definitions.model import Definitions
from touchpoint.definitions.placements import PlacementConfig
from touchpoint.definitions.store.sqlite import SqliteDefinitionStore


def raw(**changes: Any) -> dict[str, Any]:
    """A valid set as a mapping; `changes` replace top-level fields of `hero_sale`."""
    sale: dict[str, Any] = {
        "id": "hero_sale",
        "placements": ["home_hero"],
        "priority": 10,
        "eligibility": "features.views_7d >= 2",
        "template": "<h1>Sale{% if traits.name %}, {{ traits.name }}{% endif %}</h1>",
    }
    sale.update(changes)
    return {
        "placements": [
            {"name": "home_hero", "fallback": "hero_default"},
            {"name": "email_banner", "channel": "email"},
        ],
        "content": [
            {"id": "hero_default", "placements": ["home_hero"], "payload": {"h": "Welcome"}},
            sale,
        ],
    }


def parsed(**changes: Any) -> Definitions:
    return Definitions.model_validate(raw(**changes))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteDefinitionStore]:
    opened = SqliteDefinitionStore(tmp_path / "definitions.sqlite3")
    yield opened
    opened.close()


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[SqliteAuditLog]:
    opened = SqliteAuditLog(tmp_path / "audit.sqlite3")
    yield opened
    opened.close()


# --- the diff


def test_against_nothing_everything_is_added() -> None:
    diff = diff_definitions(None, parsed())
    assert diff.placements.added == ("home_hero", "email_banner")
    assert diff.content.added == ("hero_default", "hero_sale")
    assert not diff.empty


def test_equal_sets_have_an_empty_diff() -> None:
    diff = diff_definitions(parsed(), parsed())
    assert diff.empty
    assert diff.to_dict()["content"] == {
        "added": [],
        "removed": [],
        "changed": {},
        "reordered": False,
    }


def test_changed_items_name_their_changed_fields() -> None:
    diff = diff_definitions(parsed(), parsed(priority=30, tags=["summer"]))
    assert diff.content.changed == (ChangedItem("hero_sale", ("priority", "tags")),)
    assert diff.placements.empty
    assert diff.summary() == {
        "placements": {"added": 0, "removed": 0, "changed": 0},
        "content": {"added": 0, "removed": 0, "changed": 1},
    }
    assert diff.to_dict()["content"]["changed"] == {"hero_sale": ["priority", "tags"]}


def test_removed_and_added_items() -> None:
    old = parsed()
    data = raw()
    data["placements"] = data["placements"][:1]
    data["content"].append({"id": "hero_new", "placements": ["home_hero"], "payload": {}})
    diff = diff_definitions(old, Definitions.model_validate(data))
    assert diff.placements.removed == ("email_banner",)
    assert diff.content.added == ("hero_new",)
    assert diff.content.removed == ()


def test_a_new_order_alone_is_a_change_since_it_changes_the_digest() -> None:
    data = raw()
    data["content"].reverse()
    reordered = Definitions.model_validate(data)
    diff = diff_definitions(parsed(), reordered)
    assert diff.content.reordered and not diff.empty
    assert diff.content.added == diff.content.removed == diff.content.changed == ()
    assert reordered.digest() != parsed().digest()


# --- apply


def test_apply_stores_a_version_and_audits_it(
    store: SqliteDefinitionStore, audit: SqliteAuditLog
) -> None:
    version, diff = apply_definitions(store, raw(), audit=audit, actor="cli:ann", note="first")
    assert version.version == 1 and version.actor == "cli:ann" and version.note == "first"
    assert diff.content.added == ("hero_default", "hero_sale")
    [entry] = audit.list().items
    assert entry.action == APPLY_ACTION and entry.target == "definitions"
    assert entry.actor == "cli:ann"
    assert entry.details["version"] == 1
    assert entry.details["digest"] == version.digest
    assert entry.details["summary"]["content"]["added"] == 2
    assert entry.details["diff"]["placements"]["added"] == ["home_hero", "email_banner"]


def test_applying_the_current_set_stores_and_audits_nothing(
    store: SqliteDefinitionStore, audit: SqliteAuditLog
) -> None:
    first, _ = apply_definitions(store, raw(), audit=audit, actor="a")
    again, diff = apply_definitions(store, parsed(), audit=audit, actor="b")
    assert again == first and diff.empty
    assert store.latest_version() == 1
    assert len(audit.list().items) == 1


def test_a_change_is_the_next_version_with_its_diff(
    store: SqliteDefinitionStore, audit: SqliteAuditLog
) -> None:
    apply_definitions(store, raw(), audit=audit, actor="a")
    version, diff = apply_definitions(store, raw(priority=5), audit=audit, actor="b")
    assert version.version == 2
    assert diff.content.changed == (ChangedItem("hero_sale", ("priority",)),)
    latest = audit.list().items[0]
    assert latest.details["diff"]["content"]["changed"] == {"hero_sale": ["priority"]}


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"eligibility": "features.views_7d >>= 2"}, "content[1].eligibility"),
        ({"template": "{% if %}"}, "content[1].template"),
        ({"caps": [{"max": 0, "per": "1d"}]}, "content[1].caps[0].max"),
        ({"start": "not a time"}, "content[1].start"),
    ],
)
def test_an_invalid_set_is_refused_whole_with_its_path(
    store: SqliteDefinitionStore, audit: SqliteAuditLog, changes: dict[str, Any], path: str
) -> None:
    apply_definitions(store, raw(), audit=audit, actor="a")
    with pytest.raises(DefinitionError) as caught:
        apply_definitions(store, raw(**changes), audit=audit, actor="b")
    assert caught.value.path == path
    assert store.latest_version() == 1
    assert len(audit.list().items) == 1


def test_a_model_built_in_code_is_checked_too(
    store: SqliteDefinitionStore, audit: SqliteAuditLog
) -> None:
    # A Definitions model validates its shape but cannot compile conditions itself.
    bad = parsed(eligibility="traits.plan === 'pro'")
    with pytest.raises(DefinitionError) as caught:
        apply_definitions(store, bad, audit=audit, actor="a")
    assert caught.value.path == "content[1].eligibility"
    assert store.latest_version() == 0


def test_a_broken_reference_is_refused(store: SqliteDefinitionStore, audit: SqliteAuditLog) -> None:
    data = raw()
    data["placements"][0]["fallback"] = "missing"
    with pytest.raises(DefinitionError, match="missing"):
        apply_definitions(store, data, audit=audit, actor="a")
    assert store.current() is None and audit.list().items == []


# --- sync at start-up


def test_sync_applies_a_new_file_then_does_nothing(
    store: SqliteDefinitionStore, audit: SqliteAuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="touchpoint.definitions.apply")
    first = sync_definitions(store, parsed(), audit=audit, actor="config:touchpoint.yaml")
    assert first is not None and first.version == 1
    assert "applied as version 1" in caplog.text
    assert sync_definitions(store, parsed(), audit=audit, actor="config:touchpoint.yaml") is None
    assert "are current (version 1)" in caplog.text
    assert len(audit.list().items) == 1


def test_sync_replaces_an_api_version_with_a_warning(
    store: SqliteDefinitionStore, audit: SqliteAuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    sync_definitions(store, parsed(), audit=audit, actor="config:touchpoint.yaml")
    apply_definitions(store, raw(priority=99), audit=audit, actor="secret_key")
    caplog.set_level(logging.INFO, logger="touchpoint.definitions.apply")
    version = sync_definitions(store, parsed(), audit=audit, actor="config:touchpoint.yaml")
    assert version is not None and version.version == 3
    assert "applied by secret_key" in caplog.text


# --- item edits


def test_put_content_adds_or_replaces_in_place() -> None:
    base = parsed()
    added = put_content(base, "hero_new", {"placements": ["home_hero"], "payload": {"x": 1}})
    assert [item.id for item in added.content] == ["hero_default", "hero_sale", "hero_new"]
    replaced = put_content(base, "hero_sale", {"id": "hero_sale", "payload": {"x": 2}})
    assert [item.id for item in replaced.content] == ["hero_default", "hero_sale"]
    assert replaced.content[1] == ContentConfig(id="hero_sale", payload={"x": 2})


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"id": "other", "payload": {}}, "id"),
        ({"payload": {}, "priority": "high"}, "priority"),
        ({"payload": {}, "template": "{% for %}"}, "template"),
        ({"payload": {}, "eligibility": {"field": "x", "bogus": 1}}, "eligibility"),
        ({"payload": {}, "placements": ["nowhere"]}, "placements"),
        ({"payload": {}, "caps": [{"max": 1, "per": "soon"}]}, "caps[0].per"),
        ({"description": "neither payload nor template"}, "<root>"),
    ],
)
def test_put_content_errors_name_the_path_inside_the_item(body: dict[str, Any], path: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        put_content(parsed(), "hero_x", body)
    assert caught.value.path == path


def test_put_content_refuses_an_id_the_pattern_rejects() -> None:
    with pytest.raises(DefinitionError) as caught:
        put_content(parsed(), "bad id!", {"payload": {}})
    assert caught.value.path == "id"


def test_delete_content() -> None:
    removed = delete_content(parsed(), "hero_sale")
    assert [item.id for item in removed.content] == ["hero_default"]
    with pytest.raises(NotFound):
        delete_content(parsed(), "nope")
    with pytest.raises(InvalidInput) as caught:
        delete_content(parsed(), "hero_default")
    assert caught.value.details["placements"] == ["home_hero"]
    assert "home_hero" in caught.value.message


def test_put_placement_adds_or_replaces() -> None:
    added = put_placement(parsed(), "product_recs", {"tags": ["recs"]})
    assert added.placements[-1] == PlacementConfig(name="product_recs", tags=["recs"])
    replaced = put_placement(parsed(), "home_hero", {"name": "home_hero", "fallback": None})
    assert replaced.placements[0].fallback is None
    assert len(replaced.placements) == 2


@pytest.mark.parametrize(
    ("name", "body", "path"),
    [
        ("home_hero", {"name": "email_banner"}, "name"),
        ("home_hero", {"fallback": "missing"}, "fallback"),
        ("Bad-Name", {}, "name"),
        ("home_hero", {"policy": "bandit"}, "policy"),
        ("home_hero", {"unknown_field": 1}, "unknown_field"),
    ],
)
def test_put_placement_errors_name_the_path(name: str, body: dict[str, Any], path: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        put_placement(parsed(), name, body)
    assert caught.value.path == path


def test_delete_placement() -> None:
    removed = delete_placement(parsed(), "email_banner")
    assert [p.name for p in removed.placements] == ["home_hero"]
    with pytest.raises(NotFound):
        delete_placement(parsed(), "nope")
    with pytest.raises(InvalidInput) as caught:
        delete_placement(parsed(), "home_hero")
    assert caught.value.details["content"] == ["hero_default", "hero_sale"]


def test_edit_definitions_builds_on_the_current_version(
    store: SqliteDefinitionStore, audit: SqliteAuditLog
) -> None:
    version, diff = edit_definitions(
        store,
        lambda current: put_placement(current, "home_hero", {}),
        audit=audit,
        actor="secret_key",
        note="PUT placement home_hero",
    )
    assert version.version == 1 and diff.placements.added == ("home_hero",)
    apply_definitions(store, raw(), audit=audit, actor="a")
    version, diff = edit_definitions(
        store,
        lambda current: delete_content(current, "hero_sale"),
        audit=audit,
        actor="secret_key",
    )
    assert version.version == 3 and diff.content.removed == ("hero_sale",)
    assert [p.name for p in version.definitions.placements] == ["home_hero", "email_banner"]
