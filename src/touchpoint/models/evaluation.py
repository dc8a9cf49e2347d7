"""Offline ranking evaluation: the held-out protocol of the MovieLens bench, for any model.

Protocol (../shared/BENCHMARKS.md, "Recommendations"): each person's rows are shuffled with
the seed and the first round(fraction·n) go to training (`split_per_person`); a model
fitted on training recommends `k` items per person, training items excluded; relevance
is binary (the item is among the person's held-out items); metrics are averaged over the
people with at least one held-out item:

- precision@k = hits in the top k / k;
- recall@k = hits in the top k / held-out items;
- nDCG@k = Σ_hits 1/log2(rank + 1) / Σ_{r ≤ min(k, held-out)} 1/log2(r + 1);
- MAP@k = Σ_hits precision@rank / min(k, held-out).

A held-out item the person also has in training is not counted as relevant (it can never
be recommended).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from touchpoint.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.interactions import Interactions
    from touchpoint.models.recommend.base import Recommender

Recommended = Mapping[str, Sequence[str]]
Relevant = Mapping[str, Collection[str]]


def _judged(recommended: Recommended, relevant: Relevant) -> list[tuple[Sequence[str], set[str]]]:
    return [
        (recommended.get(person, ()), set(items)) for person, items in relevant.items() if items
    ]


def _hits(picks: Sequence[str], relevant: set[str], k: int) -> list[bool]:
    return [item in relevant for item in list(picks)[:k]]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _check_k(k: int) -> None:
    if k < 1:
        raise InvalidInput("k must be >= 1", details={"field": "k"})


def precision_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Mean over people with ≥ 1 relevant item of (relevant items in the top k) / k."""
    _check_k(k)
    return _mean([sum(_hits(picks, rel, k)) / k for picks, rel in _judged(recommended, relevant)])


def recall_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Mean over people with ≥ 1 relevant item of (relevant items in the top k) / relevant."""
    _check_k(k)
    return _mean(
        [sum(_hits(picks, rel, k)) / len(rel) for picks, rel in _judged(recommended, relevant)]
    )


def ndcg_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Mean nDCG@k with binary relevance and a log2 discount (see the module docstring)."""
    _check_k(k)
    scores = []
    for picks, rel in _judged(recommended, relevant):
        gain = sum(
            1.0 / math.log2(rank + 2) for rank, hit in enumerate(_hits(picks, rel, k)) if hit
        )
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(rel))))
        scores.append(gain / ideal)
    return _mean(scores)


def map_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Mean average precision at k: Σ over hits of precision at the hit's rank, divided by
    min(k, relevant items)."""
    _check_k(k)
    scores = []
    for picks, rel in _judged(recommended, relevant):
        found = 0
        total = 0.0
        for rank, hit in enumerate(_hits(picks, rel, k), start=1):
            if hit:
                found += 1
                total += found / rank
        scores.append(total / min(k, len(rel)))
    return _mean(scores)


def ranking_metrics(recommended: Recommended, relevant: Relevant, k: int) -> dict[str, float]:
    """All four metrics at once, keyed `ndcg@k`, `precision@k`, `recall@k`, `map@k`, plus
    `people` (how many people were judged)."""
    return {
        f"ndcg@{k}": ndcg_at_k(recommended, relevant, k),
        f"precision@{k}": precision_at_k(recommended, relevant, k),
        f"recall@{k}": recall_at_k(recommended, relevant, k),
        f"map@{k}": map_at_k(recommended, relevant, k),
        "people": float(len(_judged(recommended, relevant))),
    }


def split_per_person(
    frame: pd.DataFrame,
    fraction: float = 0.75,
    seed: int = 42,
    *,
    person: str = "person_id",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): for each person in sorted id order, their rows (in frame order) are
    permuted by one generator seeded with `seed`, and the first round(fraction·n) (halves
    rounded up) go to train, the rest to test. Neither input nor row contents change."""
    if not 0 < fraction < 1:
        raise InvalidInput("fraction must be between 0 and 1", details={"field": "fraction"})
    if person not in frame.columns:
        raise InvalidInput(f"no {person!r} column to split by", details={"field": person})
    generator = np.random.default_rng(seed)
    groups = frame.groupby(person, sort=True).indices
    train_rows: list[np.ndarray] = []
    test_rows: list[np.ndarray] = []
    for key in sorted(groups):
        rows = groups[key]
        shuffled = rows[generator.permutation(rows.size)]
        cut = math.floor(fraction * rows.size + 0.5)
        train_rows.append(shuffled[:cut])
        test_rows.append(shuffled[cut:])
    train = np.sort(np.concatenate(train_rows)) if train_rows else np.empty(0, dtype=np.int64)
    test = np.sort(np.concatenate(test_rows)) if test_rows else np.empty(0, dtype=np.int64)
    return frame.iloc[train], frame.iloc[test]


def held_out(train: Interactions, test: Interactions | pd.DataFrame) -> dict[str, set[str]]:
    """Person -> held-out items, minus items the person already has in training."""
    from touchpoint.models.interactions import Interactions

    pairs = test if isinstance(test, Interactions) else Interactions.from_frame(test)
    relevant: dict[str, set[str]] = {}
    for person_index, item_index in zip(pairs.person_index, pairs.item_index, strict=True):
        person = str(pairs.people[person_index])
        relevant.setdefault(person, set()).add(str(pairs.items[item_index]))
    seen = _seen_by_person(train)
    for person, items in relevant.items():
        items -= seen.get(person, set())
    return relevant


def _seen_by_person(interactions: Interactions) -> dict[str, set[str]]:
    matrix = interactions.matrix()
    items = [str(item) for item in interactions.items]
    return {
        str(person): {items[j] for j in matrix.indices[matrix.indptr[i] : matrix.indptr[i + 1]]}
        for i, person in enumerate(interactions.people)
    }


def evaluate(
    recommender: Recommender,
    train: Interactions,
    test: Interactions | pd.DataFrame,
    k: int = 10,
) -> dict[str, float]:
    """The four metrics of a recommender already fitted on `train`, judged on `test`
    (a frame with `person_id`, `item_id`, or `Interactions`). Picks come from
    `recommend_many`; any training item a model lets through is dropped, never counted."""
    _check_k(k)
    relevant = held_out(train, test)
    people = sorted(person for person, items in relevant.items() if items)
    answers = recommender.recommend_many(people, k)
    seen = _seen_by_person(train)
    recommended: dict[str, list[str]] = {}
    for person in people:
        taken = seen.get(person, set())
        recommended[person] = [
            pick.item_id for pick in answers.get(person, []) if pick.item_id not in taken
        ][:k]
    return ranking_metrics(recommended, relevant, k)
