"""Content filled from a recommender: eligible only with enough items, items in the payload
and the template, a failing recommender never breaks a decision."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from tests.unit.decide.test_engine import apply, browser, decider_for
from touchpoint.core.errors import DefinitionError
from touchpoint.decide.results import DecideRequest
from touchpoint.definitions.model import parse_definitions
from touchpoint.models.recommend.source import RecommendedItems
from touchpoint.runtime import Workspace

PLACEMENTS = [{"name": "recs", "fallback": "recs_default"}]
CONTENT = [
    {"id": "recs_default", "placements": ["recs"], "payload": {"items": []}},
    {
        "id": "recs_for_you",
        "placements": ["recs"],
        "priority": 10,
        "recommendations": {"model": "recommendations", "k": 3, "min_items": 2},
        "template": "{% for item in items %}<li>{{ item.name }}</li>{% endfor %}",
    },
]


class CatalogSource:
    """A recommendation source over a fixed list, recording what it was asked."""

    def __init__(self, items: list[dict[str, Any]], *, fail: bool = False) -> None:
        self.items = items
        self.fail = fail
        self.asked: list[tuple[str | None, str, int]] = []

    def recommend(
        self, *, profile_id: str | None, document: Mapping[str, Any], model: str, k: int
    ) -> RecommendedItems | None:
        self.asked.append((profile_id, model, k))
        if self.fail:
            raise RuntimeError("model file unreadable")
        return RecommendedItems(self.items[:k], source="model", model=model, version=2)


ITEMS = [
    {"item_id": "shoe", "score": 0.9, "name": "Red shoe"},
    {"item_id": "hat", "score": 0.5, "name": "Hat <b>"},
    {"item_id": "bag", "score": 0.2, "name": "Bag"},
    {"item_id": "belt", "score": 0.1, "name": "Belt"},
]


def decide(workspace: Workspace, source: CatalogSource | None, anonymous_id: str = "v1") -> Any:
    apply(workspace, PLACEMENTS, CONTENT)
    decider = decider_for(workspace, recommendations=source)
    return decider.decide(DecideRequest({"anonymous_id": anonymous_id}, ["recs"]))


def test_the_items_fill_the_payload_and_the_template(workspace: Workspace) -> None:
    browser(workspace, "v1")
    source = CatalogSource(ITEMS)
    result = decide(workspace, source).placements["recs"]
    assert result.content_id == "recs_for_you" and result.reason == "eligible"
    assert [item["item_id"] for item in result.payload["items"]] == ["shoe", "hat", "bag"]
    assert result.payload["recommender"] == {
        "model": "recommendations",
        "version": 2,
        "source": "model",
    }
    assert result.html == "<li>Red shoe</li><li>Hat &lt;b&gt;</li><li>Bag</li>"
    assert source.asked and source.asked[0][1:] == ("recommendations", 3)
    assert source.asked[0][0] is not None  # the person's profile id


def test_too_few_items_make_the_content_ineligible(workspace: Workspace) -> None:
    result = decide(workspace, CatalogSource(ITEMS[:1])).placements["recs"]
    assert (result.content_id, result.reason) == ("recs_default", "fallback")


def test_without_a_recommender_the_fallback_shows(workspace: Workspace) -> None:
    result = decide(workspace, None).placements["recs"]
    assert (result.content_id, result.reason) == ("recs_default", "fallback")


def test_a_failing_recommender_is_logged_not_raised(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        result = decide(workspace, CatalogSource(ITEMS, fail=True)).placements["recs"]
    assert result.content_id == "recs_default"
    assert "recommender recommendations failed" in caplog.text


def test_recommendations_are_checked_when_definitions_are_parsed() -> None:
    with pytest.raises(DefinitionError, match="min_items"):
        parse_definitions(
            {"content": [{"id": "x", "recommendations": {"k": 2, "min_items": 3}, "template": "x"}]}
        )
    parsed = parse_definitions({"content": [{"id": "x", "recommendations": {"k": 2}}]})
    assert parsed.content[0].recommendations is not None
