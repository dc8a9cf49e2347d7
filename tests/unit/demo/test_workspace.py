"""The demo's retail workspace: it validates, its rules compile, and they mean what they say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from liquid import Environment

from touchpoint.config.settings import load_settings
from touchpoint.config.workspace import load_config_file, parse_config
from touchpoint.core.conditions import compile_condition
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.content import (
    DEMO_PLACEMENTS,
    RUNNING_SHOES,
    demo_content,
    featured,
    product_promotions,
)
from touchpoint.demo.workspace import demo_workspace, existing_write_key, write_workspace

CATALOG = build_catalog()
WRITE_KEY = "wk_demo_unit_test"


def config_data(**options: Any) -> dict[str, Any]:
    return demo_workspace(CATALOG, write_key=WRITE_KEY, **options)


def test_the_workspace_validates_and_every_rule_compiles() -> None:
    config = parse_config(config_data())
    assert [placement.name for placement in config.placements] == list(DEMO_PLACEMENTS)
    source = config.sources[0]
    assert source.allow_client_decisions and source.write_key == WRITE_KEY
    ids = {item.id for item in config.content}
    for placement in config.placements:
        assert placement.fallback in ids, placement.name
    environment = Environment()
    for index, item in enumerate(config.content):
        if item.eligibility is not None:
            compile_condition(item.eligibility, path=f"content[{index}].eligibility")
        assert item.template is not None
        environment.parse(item.template)
        assert item.description, item.id
    for index, segment in enumerate(config.segments):
        compile_condition(segment.condition, path=f"segments[{index}].condition")
    names = {feature.name for feature in config.features}
    assert {"visits", "running_shoe_views_7d", "cart", "orders", "lifetime_revenue"} <= names


def test_the_catalog_has_a_few_hundred_products_with_running_shoes() -> None:
    assert 200 <= len(CATALOG) <= 1000
    assert len(CATALOG.in_category(RUNNING_SHOES)) >= 20
    running = featured(CATALOG, RUNNING_SHOES)
    assert len(running) == 4 and [p.price for p in running] == sorted(p.price for p in running)


def _eligibility(content_id: str) -> Any:
    item = next(item for item in demo_content(CATALOG) if item["id"] == content_id)
    return compile_condition(item["eligibility"], path=content_id)


def _document(**features: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "visits": 1,
        "running_shoe_views_7d": 0,
        "orders": 0,
        "lifetime_revenue": 0,
        "cart": {"items": [], "count": 0, "value": 0, "updated_at": None},
    }
    base.update(features)
    return {"traits": {}, "features": base, "segments": [], "scores": {}}


@pytest.mark.parametrize(
    ("content_id", "document", "expected"),
    [
        ("hero_running", _document(running_shoe_views_7d=2), True),
        ("hero_running", _document(running_shoe_views_7d=1), False),
        ("recs_running_week", _document(running_shoe_views_7d=1), True),
        ("recs_tents", _document(last_viewed_category="Tents"), True),
        ("recs_tents", _document(last_viewed_category="Jackets"), False),
        ("hero_spring_sale", _document(visits=1), True),
        ("hero_spring_sale", _document(visits=0), False),
        ("cart_free_shipping", _document(cart={"count": 1, "value": 40.0}), True),
        ("cart_free_shipping", _document(cart={"count": 2, "value": 140.0}), False),
        ("cart_in_cart", _document(cart={"count": 2, "value": 140.0}), True),
        ("hero_vip", {**_document(), "segments": ["vip", "buyer"]}, True),
        ("hero_cart_reminder", {**_document(), "segments": ["cart_abandoner"]}, True),
        ("hero_cart_reminder", _document(), False),
    ],
)
def test_eligibility_reads_like_the_brief(
    content_id: str, document: dict[str, Any], expected: bool
) -> None:
    assert _eligibility(content_id)(document) is expected


def test_segments_say_what_their_names_say() -> None:
    config = parse_config(config_data())
    conditions = {
        segment.name: compile_condition(segment.condition, path=segment.name)
        for segment in config.segments
    }
    abandoned = {"count": 2, "value": 80.0, "updated_at": "2020-01-01T00:00:00.000Z"}
    assert conditions["cart_abandoner"](_document(cart=abandoned))
    assert not conditions["cart_abandoner"](_document())
    assert conditions["vip"](_document(lifetime_revenue=800.0, orders=1))
    assert conditions["vip"](_document(lifetime_revenue=90.0, orders=3))
    assert not conditions["vip"](_document(lifetime_revenue=90.0, orders=1))
    assert conditions["returning_visitor"](_document(visits=2))
    assert not conditions["returning_visitor"](_document(visits=1))


def test_promotions_make_a_500_item_catalog_that_validates() -> None:
    catalog = build_catalog(500)
    base = len(demo_content(catalog))
    promotions = product_promotions(catalog, 500 - base)
    config = parse_config(demo_workspace(catalog, write_key=WRITE_KEY, extra_content=promotions))
    assert len(config.content) == 500
    placed = {item.placements[0] for item in config.content if item.id.startswith("promo_")}
    assert placed == set(DEMO_PLACEMENTS)
    assert all(item.eligibility for item in config.content if item.id.startswith("promo_"))


def test_the_file_round_trips_and_keeps_its_write_key(tmp_path: Path) -> None:
    path = write_workspace(tmp_path / "demo" / "touchpoint.yaml", config_data())
    assert path.read_text(encoding="utf-8").startswith("# The `touchpoint demo`")
    loaded = load_config_file(path)
    assert loaded.workspace == "demo-shop" and len(loaded.content) == len(demo_content(CATALOG))
    assert existing_write_key(path) == WRITE_KEY
    assert existing_write_key(tmp_path / "missing.yaml") is None
    (tmp_path / "bad.yaml").write_text("sources: [", encoding="utf-8")
    assert existing_write_key(tmp_path / "bad.yaml") is None


def test_settings_generate_the_keys_the_file_leaves_out(tmp_path: Path) -> None:
    path = write_workspace(tmp_path / "touchpoint.yaml", config_data())
    settings = load_settings(path, tmp_path / "data", environ={})
    again = load_settings(path, tmp_path / "data", environ={})
    assert settings.config.sources[0].write_key == WRITE_KEY
    assert settings.secret_key == again.secret_key and settings.secret_key not in path.read_text()
