"""Compiling one definitions version: candidates, tiers, windows, caps, and the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_CONFIG
from touchpoint.core.errors import DefinitionError
from touchpoint.decide.catalog import Catalog
from touchpoint.definitions.model import Definitions, parse_definitions

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def config_definitions() -> Definitions:
    return parse_definitions(
        {"placements": TEST_CONFIG["placements"], "content": TEST_CONFIG["content"]}
    )


def catalog_of(placements: list[dict[str, Any]], content: list[dict[str, Any]]) -> Catalog:
    return Catalog.compile(parse_definitions({"placements": placements, "content": content}), 7)


def test_candidates_come_from_placements_and_tags_without_the_fallback() -> None:
    catalog = Catalog.compile(config_definitions(), 3)
    assert catalog.version == 3
    hero = catalog.placements["home_hero"]
    assert [item.id for item in hero.candidates] == ["hero_buyer", "hero_browser"]
    assert hero.fallback is not None and hero.fallback.id == "hero_default"
    recs = catalog.placements["product_recs"]
    assert [item.id for item in recs.candidates] == ["recs_recent"]  # by tag
    assert recs.fallback is not None and recs.fallback.id == "recs_default"
    assert hero.policy == "priority"


def test_tiers_hold_equal_priorities_highest_first_in_definition_order() -> None:
    catalog = catalog_of(
        [{"name": "slot"}],
        [
            {"id": "low", "placements": ["slot"], "priority": 1, "payload": {}},
            {"id": "high_b", "placements": ["slot"], "priority": 9, "payload": {}},
            {"id": "mid", "placements": ["slot"], "priority": 5, "payload": {}},
            {"id": "high_a", "placements": ["slot"], "priority": 9, "payload": {}},
        ],
    )
    tiers = catalog.placements["slot"].tiers
    assert [[item.id for item in tier] for tier in tiers] == [
        ["high_b", "high_a"],
        ["mid"],
        ["low"],
    ]


def test_conditions_templates_windows_and_caps_are_compiled_once() -> None:
    catalog = catalog_of(
        [{"name": "slot"}],
        [
            {
                "id": "sale",
                "placements": ["slot"],
                "eligibility": "traits.plan == 'pro'",
                "template": "<b>{{ traits.plan }}</b>",
                "start": "2026-06-01T00:00:00Z",
                "end": "2026-06-02T00:00:00+00:00",
                "caps": [{"max": 3, "per": "1d"}, {"max": 10, "per": "7d"}],
            },
            {
                "id": "other",
                "placements": ["slot"],
                "payload": {},
                "caps": [{"max": 1, "per": "1d"}],
            },
        ],
    )
    sale = catalog.content["sale"]
    assert sale.condition is not None
    assert sale.eligible({"traits": {"plan": "pro"}}, NOW)
    assert not sale.eligible({"traits": {"plan": "free"}}, NOW)
    assert sale.template is not None and sale.template.render({"traits": {"plan": "x"}}) == (
        "<b>x</b>"
    )
    assert [(cap.max, cap.window) for cap in sale.caps] == [
        (3, timedelta(days=1)),
        (10, timedelta(days=7)),
    ]
    assert catalog.cap_windows == {
        timedelta(days=1): frozenset({"sale", "other"}),
        timedelta(days=7): frozenset({"sale"}),
    }
    other = catalog.content["other"]
    assert other.condition is None and other.eligible({}, NOW)


def test_items_written_alike_share_one_condition() -> None:
    catalog = catalog_of(
        [{"name": "slot"}],
        [
            {"id": "a", "placements": ["slot"], "payload": {}, "eligibility": "traits.x == 1"},
            {
                "id": "b",
                "placements": ["slot"],
                "payload": {},
                "eligibility": {"field": "traits.x", "eq": 1},
            },
            {"id": "c", "placements": ["slot"], "payload": {}, "eligibility": "traits.x == 2"},
            {"id": "d", "placements": ["slot"], "payload": {}},
        ],
    )
    a, b, c, d = (catalog.content[name] for name in "abcd")
    assert a.condition is b.condition and a.condition_slot == b.condition_slot
    assert c.condition_slot not in (a.condition_slot, -1)
    assert d.condition is None and d.condition_slot == -1
    assert not a.windowed


def test_the_active_window_includes_its_start_and_excludes_its_end() -> None:
    catalog = catalog_of(
        [{"name": "slot"}],
        [
            {
                "id": "sale",
                "placements": ["slot"],
                "payload": {},
                "start": "2026-06-01T00:00:00Z",
                "end": "2026-06-02T00:00:00Z",
            },
            {"id": "open", "placements": ["slot"], "payload": {}, "start": "2026-06-01T00:00:00Z"},
        ],
    )
    sale, open_ended = catalog.content["sale"], catalog.content["open"]
    assert sale.windowed and open_ended.windowed
    assert not sale.active("2026-05-31T23:59:59.999Z")
    assert sale.active("2026-06-01T00:00:00.000Z")
    assert sale.active("2026-06-01T23:59:59.999Z")
    assert not sale.active("2026-06-02T00:00:00.000Z")
    assert open_ended.active("2099-01-01T00:00:00.000Z")
    assert not open_ended.active("2026-05-01T00:00:00.000Z")


def test_an_invalid_condition_names_its_path() -> None:
    definitions = Definitions.model_validate(
        {
            "placements": [{"name": "slot"}],
            "content": [
                {"id": "ok", "placements": ["slot"], "payload": {}},
                {"id": "bad", "placements": ["slot"], "payload": {}, "eligibility": "traits.x >>"},
            ],
        }
    )
    with pytest.raises(DefinitionError) as caught:
        Catalog.compile(definitions, 1)
    assert caught.value.path.startswith("content[1].eligibility")


def test_the_empty_catalog_knows_no_placement() -> None:
    empty = Catalog.empty()
    assert empty.version == 0
    assert not empty.placements
    assert empty.describe() == {"version": 0, "placements": []}


def test_describe_shows_content_as_written() -> None:
    described = Catalog.compile(config_definitions(), 2).describe()
    assert described["version"] == 2
    hero = described["placements"][0]
    assert hero["name"] == "home_hero"
    assert hero["fallback"]["id"] == "hero_default"
    assert [item["id"] for item in hero["content"]] == ["hero_buyer", "hero_browser"]
    browser = hero["content"][1]
    assert browser["eligibility"] == "features.views_7d >= 2"
    assert browser["caps"] == [{"max": 3, "per": "1d"}]
    assert browser["priority"] == 10


# -- the requirement index ---------------------------------------------------------------

INDEXED_CONTENT = [
    ("eq_string", "traits.plan == 'pro'"),
    ("eq_number", "traits.level == 2"),
    ("eq_time", "traits.since == '2026-01-01'"),  # a timestamp: never indexed
    ("eq_bool", {"field": "traits.vip", "eq": True}),
    ("in_strings", "traits.plan in ['pro', 'team']"),
    ("in_numbers", {"field": "traits.level", "in": [1, 2.5]}),
    ("in_with_null", {"field": "traits.plan", "in": ["pro", None]}),
    ("contains", "traits.tags contains 'x'"),
    ("segment", {"segment": "buyers"}),
    ("segments_contains", "segments contains 'vip'"),
    ("and_eq", "features.views >= 1 and context.page == 'home'"),
    ("nested_and", {"and": [{"and": [{"field": "context.page", "eq": "cart"}]}, True]}),
    ("or", "traits.plan == 'pro' or traits.level == 2"),
    ("not", "not (traits.plan == 'pro')"),
    ("ne", "traits.plan != 'pro'"),
    ("always", None),
]
VALUES = st.sampled_from(
    [
        None,
        "pro",
        "team",
        "free",
        "x",
        "xyz",
        "home",
        "cart",
        "buyers",
        "vip",
        1,
        2,
        2.0,
        2.5,
        True,
        False,
        "2026-01-01",
        "2026-01-01T00:00:00Z",
        datetime(2026, 1, 1, tzinfo=UTC),
        ["x", "y"],
        ["vip", "buyers"],
        ("x",),
        {"x": 1},
        [],
        {},
    ]
)


def indexed_catalog() -> Catalog:
    content = []
    for content_id, condition in INDEXED_CONTENT:
        item: dict[str, Any] = {"id": content_id, "placements": ["slot"], "payload": {}}
        if condition is not None:
            item["eligibility"] = condition
        content.append(item)
    return catalog_of([{"name": "slot"}], content)


CATALOG = indexed_catalog()


def test_the_index_files_only_terms_that_imply_a_lookup() -> None:
    placement = CATALOG.placements["slot"]
    unindexed = {item.id for _, item in placement.unindexed}
    assert unindexed == {"eq_time", "eq_bool", "in_with_null", "or", "not", "ne", "always"}
    kinds = {(index.kind, index.path) for index in placement.indexes}
    assert ("equals", "traits.plan") in kinds
    assert ("contains", "segments") in kinds
    assert ("equals", "context.page") in kinds


def test_the_shortlist_keeps_rank_order_and_drops_what_cannot_hold() -> None:
    placement = CATALOG.placements["slot"]
    document = {"traits": {"plan": "pro"}, "segments": ["buyers"], "context": {"page": "x"}}
    shortlist = [item.id for _, item in placement.shortlist(document)]
    ranks = [rank for rank, _ in placement.shortlist(document)]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert "eq_string" in shortlist and "in_strings" in shortlist and "segment" in shortlist
    assert "eq_number" not in shortlist and "and_eq" not in shortlist
    assert "segments_contains" not in shortlist
    # A string value may contain the operand as a substring: everything filed under the
    # field is kept.
    substring = placement.shortlist({"traits": {"tags": "axb"}})
    assert "contains" in [item.id for _, item in substring]


@settings(max_examples=300, deadline=None)
@given(
    plan=VALUES,
    level=VALUES,
    since=VALUES,
    vip=VALUES,
    tags=VALUES,
    segments=VALUES,
    page=VALUES,
    views=VALUES,
)
def test_the_shortlist_never_drops_an_eligible_item(**values: Any) -> None:
    document = {
        "traits": {key: values[key] for key in ("plan", "level", "since", "vip", "tags")},
        "segments": values["segments"],
        "features": {"views": values["views"]},
        "context": {"page": values["page"]},
    }
    placement = CATALOG.placements["slot"]
    shortlisted = {item.id for _, item in placement.shortlist(document)}
    eligible = {item.id for item in placement.candidates if item.eligible(document, NOW)}
    assert eligible <= shortlisted
