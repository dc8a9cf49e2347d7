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
from datetime import timedelta
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


JOBS: dict[str, Callable[[Trainer, TrainingData], Fitted]] = {
    "rfm": train_rfm,
    "clusters": train_clusters,
    "lifecycle": train_lifecycle,
    "propensity": train_propensity_job,
    "churn": train_churn,
}
