"""The storefront's visitor list: states computed from journeys, one of each story."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.content import demo_content
from touchpoint.demo.showcase import (
    DISPLAY_ORDER,
    KINDS,
    VISITORS_FILE,
    identity_of,
    journey_state,
    pick_showcase,
    showcase_document,
    write_showcase,
)
from touchpoint.demo.simulate import simulate_journeys

START = datetime(2025, 3, 1, tzinfo=UTC)
NOW = START + timedelta(days=14)
CATALOG = build_catalog()
JOURNEYS = list(simulate_journeys(400, seed=42, catalog=CATALOG, start=START, days=14))


def test_states_follow_the_messages() -> None:
    for journey in JOURNEYS[:80]:
        state = journey_state(journey, NOW)
        events = [m.get("event") for m in journey.messages]
        assert state.orders == events.count("Order Completed")
        assert state.visits >= 1
        assert state.devices == len(journey.visitor.anonymous_ids)
        assert state.favourites == journey.visitor.favourite_categories
        if "Order Completed" not in events and "Product Added" not in events:
            assert state.cart_items == 0 and state.revenue == 0
        if journey.visitor.user_id is None:
            assert state.name is None
        else:
            assert state.name


def test_the_showcase_has_one_of_each_story_each_visitor_once() -> None:
    showcase = pick_showcase(JOURNEYS, NOW)
    groups = [visitor.group for visitor in showcase]
    labels = dict(KINDS)
    assert groups == sorted(groups, key=[labels[kind] for kind in DISPLAY_ORDER].index)
    assert set(groups) == set(labels.values()), "400 visitors have every kind"
    assert groups[-1] == labels["no_consent"]
    assert len({visitor.value for visitor in showcase}) == len(showcase)
    assert max(groups.count(group) for group in set(groups)) <= 3
    by_value = {identity_of(journey)[1]: journey for journey in JOURNEYS}
    for visitor in showcase:
        journey = by_value[visitor.value]
        assert (visitor.kind, visitor.value) == identity_of(journey)
        assert visitor.description and visitor.tags
        if visitor.group == labels["cart_abandoner"]:
            assert "left in the cart" in visitor.description
        if visitor.group == labels["no_consent"]:
            assert "said no to personalization" in visitor.description


def test_signed_in_visitors_are_named_by_user_id() -> None:
    for journey in JOURNEYS[:50]:
        kind, value = identity_of(journey)
        if journey.visitor.user_id is not None:
            assert (kind, value) == ("user_id", journey.visitor.user_id)
        else:
            assert (kind, value) == ("anonymous_id", journey.visitor.anonymous_ids[-1])


def test_the_document_is_written_as_json(tmp_path: Path) -> None:
    showcase = pick_showcase(JOURNEYS, NOW)
    document = showcase_document(
        showcase,
        CATALOG,
        workspace="demo-shop",
        placements=("home_hero", "product_recs"),
        generated_at=NOW,
        content=demo_content(CATALOG),
    )
    path = write_showcase(tmp_path / "data", document)
    assert path.name == VISITORS_FILE
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert loaded["placements"] == ["home_hero", "product_recs"]
    assert len(loaded["visitors"]) == len(showcase)
    assert {"key", "label", "kind", "value", "group", "description"} <= set(loaded["visitors"][0])
    assert len(loaded["catalog"]["categories"]) == len(CATALOG.categories)
    assert all(len(c["products"]) == 8 for c in loaded["catalog"]["categories"])
    notes = {item["id"]: item["description"] for item in loaded["content"]}
    assert "VIP" in notes["hero_vip"]
    assert not list((tmp_path / "data").glob("*.tmp"))
