"""Segmentation jobs: RFM, clustering and lifecycle, written to profiles as batch segment
families (`rfm_*`, `cluster_*`, `value_*`, `lifecycle_*`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchpoint.models.jobs.common import people_of, write_json
from touchpoint.models.registry import ModelVersion

if TYPE_CHECKING:
    from touchpoint.models.training import Fitted, Trainer, TrainingData


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
    from touchpoint.models.segmentation.rfm import RFM_SEGMENT_NAMES, rfm_scores

    frame = people_of(data)
    scores = rfm_scores(frame)
    members = {
        str(pid): f"rfm_{segment}"
        for pid, segment in zip(scores["profile_id"], scores["segment"], strict=True)
    }

    def save(directory: Path) -> None:
        summary = scores.groupby("segment").size().to_dict()
        write_json(directory / "rfm.json", {"segments": summary, "bins": 5})

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
    from touchpoint.models.segmentation.clusters import fit_clusters

    frame = people_of(data)
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
    from touchpoint.models.segmentation.lifecycle import (
        LIFECYCLE_STAGES,
        VALUE_TIERS,
        LifecycleThresholds,
        lifecycle_segments,
    )

    frame = people_of(data)
    thresholds = LifecycleThresholds()
    tiers = lifecycle_segments(frame, thresholds=thresholds)
    ids = [str(pid) for pid in tiers["profile_id"]]
    value = {pid: f"value_{tier}" for pid, tier in zip(ids, tiers["value_tier"], strict=True)}
    stage = {
        pid: f"lifecycle_{name}" for pid, name in zip(ids, tiers["lifecycle_stage"], strict=True)
    }
    params = {key: getattr(thresholds, key) for key in thresholds.__dataclass_fields__}

    def save(directory: Path) -> None:
        write_json(directory / "lifecycle.json", params)

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
