"""MovieLens 100k top-10 recommendations, our models beside their peers in the same run.

Protocol (BENCHMARKS.md, "Recommendations — MovieLens 100k"):
1. Every rating is an interaction (the rating is the interaction's weight, which only the
   models that use weights read); per-user random 75/25 split: each user's ratings
   shuffled with seed 42 (one generator, users in id order), the first 75% rounded to the
   nearest integer (halves up) for training (`touchpoint.models.evaluation.split_per_person`).
2. Each model is fitted on the training 75% and recommends its top 10 over all items,
   items seen in training removed; nDCG@10 (binary relevance, log2 discount),
   Precision@10, Recall@10, MAP@10 averaged over users with at least one test item
   (`touchpoint.models.evaluation.evaluate`). Training time is the wall time of `fit`.
3. Peers in the same run: most popular, implicit ALS (64 factors, implicit's defaults
   otherwise: untuned), item-kNN cosine (our co-occurrence, cosine, all neighbours),
   EASE λ=500; content-based (genres and release year) for information.
4. Our best (`blend`): tuned only on validation splits carved from the training 75%
   (each a further per-user 75/25 split with seeds 7, 8, 9), then refitted on the whole
   training 75% and scored on the test 25% once.
5. The batch command's engine (`recommend_file`) on the training 75% written as CSV:
   end-to-end wall time (read, fit the default model, score 943 users, write).
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.common import Figure, Options, Section
from bench.datasets import movielens_100k, movielens_items
from touchpoint.models.evaluation import evaluate, split_per_person
from touchpoint.models.interactions import Interactions
from touchpoint.models.recommend.als import ImplicitALS
from touchpoint.models.recommend.base import Recommender
from touchpoint.models.recommend.batch import recommend_file
from touchpoint.models.recommend.blend import Blend, default_members
from touchpoint.models.recommend.catalog import DEFAULT_RECOMMENDER
from touchpoint.models.recommend.content import ContentBased
from touchpoint.models.recommend.cooccurrence import CoOccurrence
from touchpoint.models.recommend.ease import EASE
from touchpoint.models.recommend.popular import MostPopular

logger = logging.getLogger(__name__)

K = 10
GOAL_NDCG = 0.50
GOAL_TRAIN_SECONDS = 10.0
VALIDATION_SEEDS = (7, 8, 9)
# BENCHMARKS.md's peer table (nDCG@10, Precision@10), measured earlier on this protocol.
PUBLISHED = {
    "popular": (0.243, 0.222),
    "item_knn": (0.399, 0.346),
    "als": (0.363, 0.317),
    "ease": (0.487, 0.421),
}
# The blend's grid (the rest of its recipe, weights**0.5, popularity discount 0.1, and
# co-occurrence within 3 steps, was fixed by an exploration on the same validation folds).
GRID = {
    "regularization": (250.0, 500.0, 1000.0),
    "popularity_regularization": (0.0, 1.0, 2.0, 3.0),
    "window_weight": (0.0, 0.25, 0.5, 0.75),
}
QUICK_GRID = {
    "regularization": (500.0,),
    "popularity_regularization": (0.0, 2.0),
    "window_weight": (0.0, 0.5),
}


@dataclass(frozen=True)
class Measured:
    """One model's test metrics and training time."""

    label: str
    metrics: dict[str, float]
    train_seconds: float


def ratings_frame() -> pd.DataFrame:
    """MovieLens as the models take it: person_id, item_id, weight (the rating), timestamp."""
    frame = movielens_100k().rename(columns={"user_id": "person_id", "rating": "weight"})
    return frame[["person_id", "item_id", "weight", "timestamp"]]


def blend(regularization: float, popularity_regularization: float, window_weight: float) -> Blend:
    """The blend recipe at one grid point."""
    ease = EASE(
        regularization=regularization,
        popularity_regularization=popularity_regularization,
        weight_power=0.5,
        popularity_discount=0.1,
    )
    members: list[tuple[EASE | CoOccurrence, float]] = [(ease, 1.0)]
    if window_weight:
        window = CoOccurrence(similarity="cosine", neighbors=None, window=3)
        members.append((window, window_weight))
    return Blend(members)


def measure(
    label: str,
    model: Recommender,
    train: Interactions,
    test: pd.DataFrame,
    items: pd.DataFrame | None = None,
) -> Measured:
    """Fit on train (timed), score on test."""
    started = time.perf_counter()
    model.fit(train, items)
    seconds = time.perf_counter() - started
    metrics = evaluate(model, train, test, K)
    logger.info("movielens %s: %s in %.2f s", label, metrics, seconds)
    return Measured(label, metrics, seconds)


def tune(train: pd.DataFrame, quick: bool) -> tuple[dict[str, float], float, int, float]:
    """The grid point with the best mean validation nDCG@10 over folds carved from train:
    (parameters, its mean validation nDCG@10, grid size, EASE λ=500's on the same folds)."""
    grid = QUICK_GRID if quick else GRID
    seeds = VALIDATION_SEEDS[:1] if quick else VALIDATION_SEEDS
    folds = []
    for seed in seeds:
        fit_part, validation = split_per_person(train, seed=seed)
        folds.append((Interactions.from_frame(fit_part), validation))
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    best: tuple[float, dict[str, float]] = (-1.0, points[0])
    for point in points:
        scores = [
            evaluate(blend(**point).fit(fit_part), fit_part, validation, K)[f"ndcg@{K}"]
            for fit_part, validation in folds
        ]
        mean = sum(scores) / len(scores)
        logger.info("movielens validation %s: nDCG@10 %.4f", point, mean)
        if mean > best[0]:
            best = (mean, point)
    baseline = [
        evaluate(EASE(regularization=500.0).fit(fit_part), fit_part, validation, K)[f"ndcg@{K}"]
        for fit_part, validation in folds
    ]
    return best[1], best[0], len(points), sum(baseline) / len(baseline)


def summary(result: Measured) -> str:
    m = result.metrics
    return (
        f"nDCG {m[f'ndcg@{K}']:.4f} · P {m[f'precision@{K}']:.4f} · "
        f"R {m[f'recall@{K}']:.4f} · MAP {m[f'map@{K}']:.4f} · train {result.train_seconds:.2f} s"
    )


def published(key: str) -> str:
    ndcg, precision = PUBLISHED[key]
    return f"BENCHMARKS.md: nDCG {ndcg:.3f} · P {precision:.3f}"


def batch_seconds(train: pd.DataFrame, work: Path) -> tuple[float, int]:
    """`recommend_file` end to end on the training split as CSV: (seconds, rows out)."""
    source = work / "movielens_train.csv"
    train.to_csv(source, index=False)
    started = time.perf_counter()
    result = recommend_file(source, work / "recommendations.csv", k=K)
    return time.perf_counter() - started, result.recommendations


def run(options: Options) -> Section:
    """Every model on the split, the tuned blend, the batch engine; see the docstring."""
    started = time.perf_counter()
    frame = ratings_frame()
    train, test = split_per_person(frame, 0.75, 42)
    interactions = Interactions.from_frame(train)
    items = movielens_items()[["item_id", "class", "release_year"]]
    peers = {
        "popular": measure("most popular", MostPopular(), interactions, test),
        "item_knn": measure(
            "item-kNN cosine",
            CoOccurrence(similarity="cosine", neighbors=None),
            interactions,
            test,
        ),
        "als": measure("implicit ALS, 64 factors", ImplicitALS(factors=64), interactions, test),
        "ease": measure("EASE λ=500", EASE(regularization=500.0), interactions, test),
        "content": measure("content (genres, year)", ContentBased(), interactions, test, items),
    }
    chosen, validation_ndcg, grid_size, baseline_validation = tune(train, options.quick)
    seeds = VALIDATION_SEEDS[:1] if options.quick else VALIDATION_SEEDS
    best = measure("blend (tuned)", blend(**chosen), interactions, test)
    default_matches = _same_recipe(blend(**chosen), Blend(default_members()))
    with tempfile.TemporaryDirectory() as work:
        seconds, rows = batch_seconds(train, Path(work))
    ease_ndcg = peers["ease"].metrics[f"ndcg@{K}"]
    best_ndcg = best.metrics[f"ndcg@{K}"]
    met = best_ndcg >= GOAL_NDCG and best.train_seconds < GOAL_TRAIN_SECONDS
    figures = [
        Figure("most popular", summary(peers["popular"]), published("popular")),
        Figure(
            "item-kNN cosine (co-occurrence, all neighbours)",
            summary(peers["item_knn"]),
            published("item_knn"),
        ),
        Figure("implicit ALS (64 factors, untuned)", summary(peers["als"]), published("als")),
        Figure("EASE λ=500", summary(peers["ease"]), published("ease")),
        Figure(
            "content-based (genres + release year)",
            summary(peers["content"]),
            "no peer; for information",
        ),
        Figure(
            "**our best: blend (tuned on validation)**",
            summary(best),
            f"goal nDCG@10 ≥ {GOAL_NDCG:.2f} with training < {GOAL_TRAIN_SECONDS:.0f} s: "
            f"{'met' if met else 'MISSED'}; EASE in this run {ease_ndcg:.4f} "
            f"({(best_ndcg / ease_ndcg - 1) * 100:+.1f}%)",
        ),
        Figure(
            "blend: mean validation nDCG@10 of the chosen point",
            f"{validation_ndcg:.4f}",
            f"{grid_size} grid points x {len(seeds)} folds, none from the test 25%",
        ),
        Figure(
            "`models recommend` engine, 943 users, k=10, CSV in and out",
            f"{seconds:.2f} s end to end ({rows} rows, model {DEFAULT_RECOMMENDER})",
            "goal: well under 10 s",
        ),
    ]
    notes = (
        "Split: per user, one numpy generator seeded 42 permutes each user's ratings in user "
        "id order; first round(0.75·n) (halves up) train. Equally literal shuffles move EASE "
        "λ=500 between 0.475 and 0.488 nDCG@10 on this data, so ±0.01 is split noise.",
        "Tuned for the blend, on validation folds only (per-user 75/25 splits of the "
        f"training 75%, seeds {', '.join(map(str, seeds))}): "
        f"EASE λ, EASE κ (popularity-proportional regularization) and the weight of the "
        f"windowed co-occurrence, over {grid_size} points; chosen {chosen}. Fixed before this "
        "grid by an exploration on folds carved the same way (seeds 7-11): ratings enter "
        "EASE as rating**0.5 (rescaled to mean 1), EASE scores divided by (takers+1)**0.1, "
        "co-occurrence counted within 3 steps of each other in a user's time-ordered "
        "ratings.",
        "Our best is then refitted on the whole training 75% and scored on the test 25% once; "
        "peers use their stated parameters, untuned. Validation overstates the gain: the "
        "chosen point beat EASE λ=500 by "
        f"{(validation_ndcg / baseline_validation - 1) * 100:+.1f}% on validation.",
        f"The catalog's default (`{DEFAULT_RECOMMENDER}`, `Blend()` with no arguments) "
        f"{'is' if default_matches else 'is NOT'} the chosen grid point.",
        "Tried on validation and dropped: a LightGBM LambdaRank re-rank of EASE's top 100 "
        "(with scores, popularity and time features) lost to plain EASE once trained on a "
        "split and applied to the refitted models (nested validation); RP3beta, GF-CF, "
        "tuned ALS and time-local popularity blended with EASE gained under 1%.",
        "What the windowed co-occurrence exploits: in a per-user random split the held-out "
        "ratings were given in the same sittings as the training ones, so items rated next "
        "to each other are good guesses; in production the same signal is 'taken in the "
        "same session'.",
    )
    return Section(
        "Recommendations — MovieLens 100k top-10",
        tuple(figures),
        notes,
        seconds=time.perf_counter() - started,
    )


def _same_recipe(first: Blend, second: Blend) -> bool:
    """Whether two blends have the same members, parameters and weights."""
    if len(first.members) != len(second.members):
        return False
    for (a, weight_a), (b, weight_b) in zip(first.members, second.members, strict=True):
        if type(a) is not type(b) or weight_a != weight_b:
            return False
        if a._params() != b._params():
            return False
    return True
