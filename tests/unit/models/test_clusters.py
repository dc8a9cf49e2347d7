"""K-Means segments: silhouette picks the planted k, descriptions name the planted features,
determinism under a seed, save/load, and the NotEnoughData / InvalidInput outcomes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.segmentation.clusters import ClusterModel, fit_clusters

FEATURES = ["frequency", "views_30d", "recency_days", "noise"]
LOGGED = ["frequency", "views_30d", "recency_days"]


def planted(n: int = 300, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Three groups: 50% dormant (recency ~100 days), 33% frequent buyers, 17% heavy
    browsers; `noise` carries no group signal."""
    rng = np.random.default_rng(seed)
    group = np.repeat([0, 1, 2], [n // 2, n // 3, n - n // 2 - n // 3])
    frame = pd.DataFrame(
        {
            "profile_id": [f"p{i}" for i in range(n)],
            "frequency": np.where(group == 1, rng.poisson(30, n), rng.poisson(1, n)),
            "views_30d": np.where(group == 2, rng.poisson(200, n), rng.poisson(3, n)),
            "recency_days": rng.uniform(0, 5, n) + np.where(group == 0, 100.0, 0.0),
            "noise": rng.normal(0, 1, n),
        }
    )
    return frame, group


def fit(
    frame: pd.DataFrame, *, silhouette_sample: int = 10_000, selection_sample: int = 50_000
) -> ClusterModel:
    return fit_clusters(
        frame,
        features=FEATURES,
        log_features=LOGGED,
        seed=3,
        silhouette_sample=silhouette_sample,
        selection_sample=selection_sample,
    )


def test_silhouette_picks_the_planted_three_and_recovers_the_groups() -> None:
    frame, group = planted()
    model = fit(frame)
    assert model.k == 3
    scores = dict(model.silhouettes)
    assert scores[3] == max(scores.values())
    assignment = model.assign(frame)
    table = pd.crosstab(group, assignment)
    assert (table.max(axis=1) == table.sum(axis=1)).all()  # every group in one cluster


def test_clusters_are_named_and_described_by_their_planted_feature() -> None:
    frame, _ = planted()
    model = fit(frame)
    assert [cluster.size for cluster in model.clusters] == [150, 100, 50]
    assert model.names == (
        "cluster_1_high_recency_days",
        "cluster_2_high_frequency",
        "cluster_3_high_views_30d",
    )
    browsers = model.clusters[2]
    assert browsers.distinguishing[0].feature == "views_30d"
    assert browsers.distinguishing[0].deviation > 2
    assert browsers.description.startswith("high views_30d")
    assert all(item.feature != "noise" for c in model.clusters for item in c.distinguishing)
    assert sum(cluster.share for cluster in model.clusters) == pytest.approx(1.0)


def test_same_seed_same_model_and_row_order_does_not_change_the_names() -> None:
    frame, _ = planted()
    first, second = fit(frame), fit(frame)
    np.testing.assert_array_equal(first.centers, second.centers)
    assert first.clusters == second.clusters
    assert first.silhouettes == second.silhouettes
    shuffled = fit(frame.sample(frac=1.0, random_state=5))
    assert shuffled.names == first.names


def test_sampled_selection_still_picks_three_and_assigns_every_row() -> None:
    frame, group = planted(n=600)
    model = fit(frame, selection_sample=300, silhouette_sample=150)
    assert model.k == 3
    assert sum(cluster.size for cluster in model.clusters) == 600
    table = pd.crosstab(group, model.assign(frame))
    assert (table.max(axis=1) == table.sum(axis=1)).all()
    again = fit(frame, selection_sample=300, silhouette_sample=150)
    assert again.silhouettes == model.silhouettes
    assert again.clusters == model.clusters


def test_save_and_load_assign_identically(tmp_path: Path) -> None:
    frame, _ = planted()
    model = fit(frame)
    model.save(tmp_path / "clusters")
    loaded = ClusterModel.load(tmp_path / "clusters")
    assert loaded.clusters == model.clusters
    assert loaded.feature_names == model.feature_names
    fresh, _ = planted(n=120, seed=9)
    np.testing.assert_array_equal(loaded.assign(fresh), model.assign(fresh))
    segments = loaded.segments(fresh)
    assert list(segments.columns) == ["profile_id", "cluster", "segment"]
    assert set(segments["segment"]) <= set(model.names)


def test_constant_features_are_dropped_and_recorded() -> None:
    frame, _ = planted()
    frame["cart_adds_30d"] = 0
    model = fit_clusters(frame, features=[*FEATURES, "cart_adds_30d"], log_features=LOGGED, seed=3)
    assert model.dropped_features == ("cart_adds_30d",)
    assert "cart_adds_30d" not in model.feature_names
    assert model.k == 3


def test_too_few_rows_or_nothing_varying_is_not_enough_data() -> None:
    frame, _ = planted()
    with pytest.raises(NotEnoughData, match="at least 20 rows"):
        fit(frame.head(10))
    constant = frame.assign(frequency=1, views_30d=2, recency_days=3.0, noise=0.0)
    with pytest.raises(NotEnoughData, match="constant"):
        fit(constant)
    two_points = frame.assign(frequency=np.arange(len(frame)) % 2, views_30d=1, noise=0.0)
    two_points["recency_days"] = 1.0
    with pytest.raises(NotEnoughData, match="distinct rows"):
        fit(two_points)


def test_bad_feature_values_are_named() -> None:
    frame, _ = planted()
    with pytest.raises(InvalidInput) as caught:
        fit(frame.assign(noise=np.where(np.arange(len(frame)) == 3, np.nan, 0.5)))
    assert caught.value.details["field"] == "noise"
    with pytest.raises(InvalidInput) as caught:
        fit(frame.assign(frequency=-1))
    assert caught.value.details["field"] == "frequency"
    with pytest.raises(InvalidInput) as caught:
        fit(frame.drop(columns=["views_30d"]))
    assert caught.value.details["field"] == "views_30d"
