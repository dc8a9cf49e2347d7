"""The models `touchpoint train` fits, one function each: training data from the
warehouse, the fitted model, its version record, and what it writes into profiles.

Segments (`rfm_*`, `cluster_*`, `lifecycle_*`, `value_*`) become batch segment families:
usable in conditions (`segments contains 'rfm_champions'`) like real-time ones. Scores
land in `profile.scores` (`score.propensity_30d > 0.6`). Recommendations are precomputed
into `profile.recommendations` for the people active recently, and computed on demand for
the others (models.serving).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchpoint.models.errors import NotEnoughData
from touchpoint.models.registry import ModelVersion

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.training import Fitted, Trainer, TrainingData

MIN_PEOPLE = 20


def _people(data: TrainingData, minimum: int = MIN_PEOPLE) -> pd.DataFrame:
    frame = data.features
    if len(frame) < minimum:
        raise NotEnoughData(
            f"{len(frame)} people in the warehouse before {data.as_of:%Y-%m-%d %H:%M}; "
            f"at least {minimum} are needed"
        )
    return frame


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def _segments_job(
    trainer: Trainer,
    data: TrainingData,
    *,
    model: str,
    kind: str,
    families: dict[str, dict[str, str]],
    names: dict[str, list[str]],
    params: dict[str, Any],
    save: Callable[[Path], None],
    metrics: dict[str, float] | None = None,
    metric: str | None = None,
) -> Fitted:
    """A segmentation's Fitted: `families` maps a segment prefix to {profile_id: segment}."""
    from touchpoint.models.training import Fitted

    sizes: dict[str, float] = {}
    for members in families.values():
        for segment in members.values():
            sizes[f"size.{segment}"] = sizes.get(f"size.{segment}", 0) + 1
    version = trainer.new_version(
        model,
        kind,
        data,
        params=params,
        metrics={**sizes, **(metrics or {})},
        metric=metric,
        rows=len(data.features),
    )

    def apply(_: ModelVersion) -> dict[str, int]:
        written: dict[str, int] = {}
        for prefix, members in families.items():
            family = trainer.segment_family(prefix, names[prefix])
            counts = trainer.counts(trainer.outputs.write_segments(family, members))
            for key, value in counts.items():
                written[key] = written.get(key, 0) + value
        return written

    return Fitted(version, save, apply, data.features)


def train_rfm(trainer: Trainer, data: TrainingData) -> Fitted:
    """RFM quantile scores and their named groups (`rfm_champions`, `rfm_at_risk`…)."""
    from touchpoint.segments.rfm import RFM_SEGMENT_NAMES, rfm_scores

    frame = _people(data)
    scores = rfm_scores(frame)
    members = {
        str(pid): f"rfm_{segment}"
        for pid, segment in zip(scores["profile_id"], scores["segment"], strict=True)
    }

    def save(directory: Path) -> None:
        summary = scores.groupby("segment").size().to_dict()
        _write_json(directory / "rfm.json", {"segments": summary, "bins": 5})

    return _segments_job(
        trainer,
        data,
        model="rfm",
        kind="rfm_quantiles",
        families={"rfm_": members},
        names={"rfm_": [f"rfm_{name}" for name in RFM_SEGMENT_NAMES]},
        params={"bins": 5},
        save=save,
    )


def train_clusters(trainer: Trainer, data: TrainingData) -> Fitted:
    """K-Means over standardized behaviour, k chosen by silhouette (`cluster_*` segments,
    each named and described by its distinguishing features)."""
    from touchpoint.segments.clusters import fit_clusters

    frame = _people(data)
    model = fit_clusters(frame, seed=trainer.seed)
    assigned = model.segments(frame)
    members = {
        str(pid): str(segment)
        for pid, segment in zip(assigned["profile_id"], assigned["segment"], strict=True)
    }
    chosen = dict(model.silhouettes).get(model.k)
    metrics = {"k": float(model.k)}
    if chosen is not None:
        metrics["silhouette"] = float(chosen)
    params = {
        "features": list(model.feature_names),
        "descriptions": {cluster.name: cluster.description for cluster in model.clusters},
    }
    return _segments_job(
        trainer,
        data,
        model="clusters",
        kind="kmeans",
        families={"cluster_": members},
        names={"cluster_": list(model.names)},
        params=params,
        save=model.save,
        metrics=metrics,
    )


def train_lifecycle(trainer: Trainer, data: TrainingData) -> Fitted:
    """Who a person is: value tier (`value_high`…) and lifecycle stage (`lifecycle_new`,
    `lifecycle_at_risk`…), the first tier of the two-tier view (the second is what they do
    now: real-time segments over computed features)."""
    from touchpoint.segments.lifecycle import (
        LIFECYCLE_STAGES,
        VALUE_TIERS,
        LifecycleThresholds,
        lifecycle_segments,
    )

    frame = _people(data)
    thresholds = LifecycleThresholds()
    tiers = lifecycle_segments(frame, thresholds=thresholds)
    ids = [str(pid) for pid in tiers["profile_id"]]
    value = {pid: f"value_{tier}" for pid, tier in zip(ids, tiers["value_tier"], strict=True)}
    stage = {
        pid: f"lifecycle_{name}" for pid, name in zip(ids, tiers["lifecycle_stage"], strict=True)
    }
    params = {key: getattr(thresholds, key) for key in thresholds.__dataclass_fields__}

    def save(directory: Path) -> None:
        _write_json(directory / "lifecycle.json", params)

    return _segments_job(
        trainer,
        data,
        model="lifecycle",
        kind="lifecycle_rules",
        families={"value_": value, "lifecycle_": stage},
        names={
            "value_": [f"value_{tier}" for tier in VALUE_TIERS],
            "lifecycle_": [f"lifecycle_{name}" for name in LIFECYCLE_STAGES],
        },
        params=params,
        save=save,
    )


def _classifier(trainer: Trainer, data: TrainingData, target: str) -> Fitted:
    """Purchase propensity or churn over the models' horizon: LightGBM trained at
    `as_of - 2h` and validated at `as_of - h` (h the horizon), calibrated; the score
    `<target>_<h>d` for everyone in the feature table as of now."""
    import numpy as np

    from touchpoint.models.propensity import (
        PropensityModel,
        churn_labels,
        churn_population,
        purchase_labels,
        time_split,
        train_propensity,
    )
    from touchpoint.models.training import Fitted

    days = trainer.config.models.horizon_days
    window = timedelta(days=days)
    frame = _people(data)
    if target == "purchase":
        labels, population, score = purchase_labels(data.features_at), None, f"propensity_{days}d"
    else:
        labels = churn_labels(data.features_at)
        population, score = churn_population(), f"churn_{days}d"
    split = time_split(
        data.features_at, labels, end=data.as_of, horizon=window, population=population
    )
    model = train_propensity(split.train, split.validation, target=target, seed=trainer.seed)
    assert model.report is not None
    report = model.report
    metrics = {
        "auc": report.auc,
        "brier": report.brier,
        "brier_base_rate": report.brier_base_rate,
        "log_loss": report.log_loss,
        "expected_calibration_error": report.expected_calibration_error,
        "train_rows": float(report.train_rows),
        "validation_rows": float(report.validation_rows),
        "validation_positives": float(report.validation_positives),
    }
    scored = frame
    if population is not None:
        scored = frame[np.asarray(population(frame), dtype=bool)]
    version = trainer.new_version(
        "propensity" if target == "purchase" else "churn",
        "lightgbm",
        data,
        window={
            "train_as_of": data.as_of - 2 * window,
            "validation_as_of": data.as_of - window,
        },
        params={**dict(model.params), "horizon_days": days, "score": score},
        metrics=metrics,
        metric="auc",
        rows=report.train_rows,
    )

    def apply(stored: ModelVersion) -> dict[str, int]:
        loaded = PropensityModel.load(trainer.registry.path(stored.model, stored.version))
        values = loaded.predict(scored) if len(scored) else np.zeros(0)
        scores = {
            str(pid): {score: float(value)}
            for pid, value in zip(scored["profile_id"], values, strict=True)
        }
        return trainer.counts(trainer.outputs.write_scores(scores))

    return Fitted(version, model.save, apply, frame)


def train_propensity_job(trainer: Trainer, data: TrainingData) -> Fitted:
    """Purchase propensity: the probability of an order within the horizon."""
    return _classifier(trainer, data, "purchase")


def train_churn(trainer: Trainer, data: TrainingData) -> Fitted:
    """Churn: the probability that a buyer places no order within the horizon."""
    return _classifier(trainer, data, "churn")


def train_lifetime(trainer: Trainer, data: TrainingData) -> Fitted:
    """Expected purchases, probability of being active and expected spend over the horizon
    (BG/NBD or Pareto/NBD with a boosted correction, chosen by forward validation; Gamma-
    Gamma for spend). Validated by fitting on the purchases up to one horizon before the
    cutoff and comparing with the purchase days that followed (MAE per person)."""
    import numpy as np

    from touchpoint.models.lifetime.batch import UNIT_DAYS, average_values
    from touchpoint.models.lifetime.boosted import fit_boosted
    from touchpoint.models.lifetime.summary import as_day, count_purchase_days, purchase_days
    from touchpoint.models.training import Fitted

    days = trainer.config.models.horizon_days
    frame = trainer.warehouse.frame(
        "SELECT profile_id AS person_id, timestamp AS date, coalesce(value, 0.0) AS amount "
        "FROM events WHERE event = $1 AND profile_id IS NOT NULL AND timestamp < $2 "
        "ORDER BY person_id, date, amount",
        [trainer.config.models.purchase_event, data.as_of],
    )
    if len(frame) == 0:
        raise NotEnoughData(f"no {trainer.config.models.purchase_event!r} events yet")
    frame["amount"] = frame["amount"].clip(lower=0.0)
    purchases = purchase_days(frame)
    end = as_day(data.as_of.strftime("%Y-%m-%d"))
    cut = end - np.timedelta64(days, "D")
    horizon = days / UNIT_DAYS
    earlier = purchases.until(cut)
    if len(earlier.days) == 0:
        raise NotEnoughData(f"no purchases before {cut}, one horizon ({days} days) back")
    checked = fit_boosted(earlier, horizon=horizon, end=cut, seed=trainer.seed)
    predicted = checked.predict(earlier, horizon)
    actual = count_purchase_days(purchases, predicted.person_ids, after=cut, until=end)
    expected = predicted.expected_purchases
    metrics = {
        "mae": float(np.mean(np.abs(expected - actual))),
        "predicted_total": float(expected.sum()),
        "actual_total": float(actual.sum()),
        "validation_people": float(len(actual)),
    }
    model = fit_boosted(purchases, horizon=horizon, end=end, seed=trainer.seed)
    prediction = model.predict(purchases, horizon)
    values, spend_model = average_values(prediction.summary)
    value = prediction.expected_purchases * values
    version = trainer.new_version(
        "lifetime",
        model.description,
        data,
        window={"validation_cut": _datetime(cut)},
        params={"horizon_days": days, "spend_model": spend_model, "unit_days": UNIT_DAYS},
        metrics=metrics,
        metric="mae",
        higher_is_better=False,
        rows=len(frame),
    )
    scores = {
        str(pid): {
            f"expected_purchases_{days}d": float(purchases_expected),
            "p_active": float(alive),
            f"expected_value_{days}d": float(spend),
        }
        for pid, purchases_expected, alive, spend in zip(
            prediction.person_ids,
            prediction.expected_purchases,
            prediction.p_alive,
            value,
            strict=True,
        )
    }

    def apply(_: ModelVersion) -> dict[str, int]:
        return trainer.counts(trainer.outputs.write_scores(scores))

    return Fitted(version, model.save, apply)


def _datetime(day: Any) -> datetime:
    return datetime.fromisoformat(str(day)).replace(tzinfo=UTC)


MIN_INTERACTIONS = 50


def _interactions_frame(trainer: Trainer, data: TrainingData) -> pd.DataFrame:
    """Every interaction before the cutoff with its weight from `models.interaction_weights`
    (interactions with other events are left out)."""
    import pandas as pd

    weights = trainer.config.models.interaction_weights
    frame = trainer.warehouse.frame(
        "SELECT profile_id AS person_id, item_id, event, timestamp FROM interactions "
        "WHERE timestamp < $1 ORDER BY person_id, timestamp, item_id, event",
        [data.as_of],
    )
    frame = frame[frame["event"].isin(list(weights))]
    frame = frame.assign(weight=frame["event"].map(weights).astype("float64"))
    return pd.DataFrame(frame[["person_id", "item_id", "weight", "timestamp"]])


def train_recommendations(trainer: Trainer, data: TrainingData) -> Fitted:
    """The workspace recommender (`models.recommender.algorithm`, default the benchmark's
    best), validated by nDCG@10 on a per-person holdout of 20% of each person's
    interactions, then refit on all of them; its top `k` precomputed for every profile
    active within `active_days`."""
    from touchpoint.models.evaluation import evaluate, split_per_person
    from touchpoint.models.interactions import Interactions
    from touchpoint.models.recommend.catalog import DEFAULT_RECOMMENDER, build_recommender
    from touchpoint.models.serving import RECOMMENDATIONS_MODEL
    from touchpoint.models.training import Fitted

    settings = trainer.config.models.recommender
    frame = _interactions_frame(trainer, data)
    people, items = frame["person_id"].nunique(), frame["item_id"].nunique()
    if len(frame) < MIN_INTERACTIONS or people < 10 or items < 5:
        raise NotEnoughData(
            f"{len(frame)} interactions of {people} people with {items} items before "
            f"{data.as_of:%Y-%m-%d %H:%M}; at least {MIN_INTERACTIONS} interactions, 10 people "
            "and 5 items are needed"
        )
    catalog = trainer.warehouse.frame("SELECT * FROM items")
    catalog = catalog if len(catalog) else None
    name = settings.algorithm or DEFAULT_RECOMMENDER
    train, test = split_per_person(frame, 0.8, seed=trainer.seed)
    validation_model = build_recommender(name, seed=trainer.seed)
    train_interactions = Interactions.from_frame(train)
    validation_model.fit(train_interactions, catalog)
    metrics = evaluate(validation_model, train_interactions, test, k=10)
    model = build_recommender(name, seed=trainer.seed).fit(Interactions.from_frame(frame), catalog)
    active = data.features
    active = active[active["recency_days"] <= settings.active_days]
    version = trainer.new_version(
        RECOMMENDATIONS_MODEL,
        name,
        data,
        window={"start": frame["timestamp"].min().to_pydatetime()},
        params={
            "algorithm": name,
            "k": settings.k,
            "weights": trainer.config.models.interaction_weights,
        },
        metrics={**metrics, "people": float(people), "items": float(items)},
        metric="ndcg@10",
        rows=len(frame),
    )

    def apply(stored: ModelVersion) -> dict[str, int]:
        ids = [str(pid) for pid in active["profile_id"]]
        picks = model.recommend_many(ids, settings.k)
        lists = {
            pid: [(pick.item_id, pick.score) for pick in picks.get(pid, [])]
            for pid in ids
            if picks.get(pid)
        }
        written = trainer.outputs.write_recommendations(
            lists, model=stored.model, version=stored.version
        )
        return trainer.counts(written)

    return Fitted(version, model.save, apply)


JOBS: dict[str, Callable[[Trainer, TrainingData], Fitted]] = {
    "rfm": train_rfm,
    "clusters": train_clusters,
    "lifecycle": train_lifecycle,
    "propensity": train_propensity_job,
    "churn": train_churn,
    "lifetime": train_lifetime,
    "recommendations": train_recommendations,
}
