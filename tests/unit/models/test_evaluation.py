"""Ranking metrics against hand-computed values, the per-person split, `evaluate`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.evaluation import (
    evaluate,
    held_out,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    split_per_person,
)
from touchpoint.models.interactions import Interactions
from touchpoint.models.recommend.base import Scored
from touchpoint.models.recommend.popular import MostPopular

RECOMMENDED = {"u1": ["a", "b", "c"], "u2": ["x", "y", "z"], "u3": ["p"]}
# u3 has nothing held out: not judged. u4 was never recommended anything: all zeros.
RELEVANT = {"u1": {"a", "c"}, "u2": {"q"}, "u3": set(), "u4": {"m"}}


def test_precision_recall_by_hand() -> None:
    assert precision_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx((2 / 3) / 3)
    assert recall_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx((2 / 2) / 3)
    assert precision_at_k(RECOMMENDED, RELEVANT, 1) == pytest.approx(1 / 3)


def test_ndcg_by_hand() -> None:
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx((dcg / ideal) / 3)
    assert ndcg_at_k({"u": ["x", "a"]}, {"u": {"a"}}, 2) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k({"u": ["a", "b"]}, {"u": {"a", "b", "c"}}, 2) == pytest.approx(1.0)


def test_map_by_hand() -> None:
    # u1: hits at ranks 1 and 3: (1/1 + 2/3) / min(3, 2).
    assert map_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx(((1 + 2 / 3) / 2) / 3)
    assert map_at_k({"u": ["x", "a"]}, {"u": {"a", "b", "c"}}, 2) == pytest.approx((1 / 2) / 2)


def test_only_the_top_k_counts() -> None:
    assert precision_at_k({"u": ["x", "y", "a"]}, {"u": {"a"}}, 2) == 0.0
    assert ndcg_at_k({"u": ["x", "y", "a"]}, {"u": {"a"}}, 2) == 0.0


def test_ranking_metrics_reports_all_and_the_people_judged() -> None:
    metrics = ranking_metrics(RECOMMENDED, RELEVANT, 3)
    assert set(metrics) == {"ndcg@3", "precision@3", "recall@3", "map@3", "people"}
    assert metrics["people"] == 3
    assert metrics["ndcg@3"] == ndcg_at_k(RECOMMENDED, RELEVANT, 3)
    assert ranking_metrics({}, {}, 3)["ndcg@3"] == 0.0
    with pytest.raises(InvalidInput):
        ranking_metrics(RECOMMENDED, RELEVANT, 0)


def frame_of_counts(counts: dict[str, int]) -> pd.DataFrame:
    rows = [(person, f"{person}_{j}") for person, n in counts.items() for j in range(n)]
    return pd.DataFrame(rows, columns=["person_id", "item_id"])


def test_split_rounds_each_persons_share_half_up() -> None:
    frame = frame_of_counts({"p1": 1, "p2": 2, "p3": 3, "p4": 4, "p8": 8})
    train, test = split_per_person(frame)
    sizes = train.groupby("person_id").size().to_dict()
    assert sizes == {"p1": 1, "p2": 2, "p3": 2, "p4": 3, "p8": 6}
    assert test.groupby("person_id").size().to_dict() == {"p3": 1, "p4": 1, "p8": 2}
    assert sorted([*train.index, *test.index]) == list(frame.index)


def test_split_is_reproducible_and_seeded() -> None:
    frame = frame_of_counts({f"p{i}": 12 for i in range(10)})
    original = frame.copy()
    first, _ = split_per_person(frame, seed=7)
    again, _ = split_per_person(frame, seed=7)
    other, _ = split_per_person(frame, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert set(first.index) != set(other.index)
    pd.testing.assert_frame_equal(frame, original)
    assert len(split_per_person(frame, 0.5, person="person_id")[0]) == 60


def test_split_names_bad_arguments() -> None:
    frame = frame_of_counts({"p1": 3})
    with pytest.raises(InvalidInput) as raised:
        split_per_person(frame, fraction=1.0)
    assert raised.value.details == {"field": "fraction"}
    with pytest.raises(InvalidInput) as raised:
        split_per_person(frame, person="user_id")
    assert raised.value.details == {"field": "user_id"}


TRAIN = Interactions.from_rows([("p1", "a"), ("p2", "a"), ("p2", "b"), ("p3", "a")])
TRAIN_MORE = Interactions.from_rows(
    [("p1", "a"), ("p2", "a"), ("p2", "b"), ("p3", "a"), ("p3", "b"), ("p3", "c")]
)


def test_evaluate_by_hand() -> None:
    # Popularity: a (3) > b (2) > c (1). p1 gets [b, c]: hit at 1. p2 gets [c]: d is
    # unknown, a miss. p3's held-out a is in training: p3 is not judged.
    test = pd.DataFrame({"person_id": ["p1", "p2", "p3"], "item_id": ["b", "d", "a"]})
    model = MostPopular().fit(TRAIN_MORE)
    metrics = evaluate(model, TRAIN_MORE, test, k=2)
    assert metrics == pytest.approx(
        {"ndcg@2": 0.5, "precision@2": 0.25, "recall@2": 0.5, "map@2": 0.5, "people": 2}
    )


class LeakyRecommender:
    """Recommends training items too: evaluate must drop them."""

    name = "leaky"

    def recommend_many(self, people: Sequence[str], k: int) -> dict[str, list[Scored]]:
        return {person: [Scored("a", 2.0), Scored("b", 1.0)][:k] for person in people}


def test_evaluate_never_counts_training_items() -> None:
    test = pd.DataFrame({"person_id": ["p1", "p2"], "item_id": ["b", "c"]})
    assert held_out(TRAIN, test) == {"p1": {"b"}, "p2": {"c"}}
    metrics = evaluate(LeakyRecommender(), TRAIN, test, k=2)  # type: ignore[arg-type]
    # p1: "a" is dropped (seen), "b" is a hit at rank 1; p2 gets nothing unseen.
    assert metrics["precision@2"] == pytest.approx((1 / 2) / 2)
    assert metrics["ndcg@2"] == pytest.approx(0.5)
