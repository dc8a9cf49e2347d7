"""Propensity and churn: planted signal, calibration, determinism, time split from snapshots,
NotEnoughData, save/load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.calibration import reliability_table
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.labels import (
    FeaturesAt,
    LabelledFrame,
    churn_labels,
    churn_population,
    purchase_labels,
    time_split,
)
from touchpoint.models.propensity import PropensityModel, PropensityParams, train_propensity

FEATURES = ["views_7d", "frequency", "noise"]


def planted(n: int, seed: int) -> LabelledFrame:
    """Buyers have high `views_7d`: P(buy) = sigmoid(-2.5 + 0.6 views_7d + 0.2 frequency)."""
    rng = np.random.default_rng(seed)
    views = rng.poisson(3, n).astype(float)
    frequency = rng.poisson(1, n)
    probability = 1 / (1 + np.exp(-(-2.5 + 0.6 * views + 0.2 * frequency)))
    labels = (rng.random(n) < probability).astype(np.int8)
    features = pd.DataFrame(
        {
            "profile_id": [f"p{i}" for i in range(n)],
            "views_7d": views,
            "frequency": frequency,
            "noise": rng.normal(size=n),
        }
    )
    return LabelledFrame(features, labels)


@pytest.fixture(scope="module")
def trained() -> tuple[PropensityModel, LabelledFrame]:
    validation = planted(2000, seed=2)
    return train_propensity(planted(2000, seed=1), validation, features=FEATURES), validation


def test_planted_signal_is_found_and_calibrated(
    trained: tuple[PropensityModel, LabelledFrame],
) -> None:
    model, validation = trained
    report = model.report
    assert report is not None
    assert report.auc > 0.7
    assert report.expected_calibration_error < 0.06
    assert report.brier < report.brier_base_rate
    assert report.log_loss < report.log_loss_base_rate
    assert report.feature_importance[0][0] == "views_7d"
    assert report.validation_rows == 2000
    assert sum(item.count for item in report.reliability) == 2000
    probabilities = model.score(validation.features)
    assert probabilities.shape == (2000,)
    assert ((probabilities > 0) & (probabilities < 1)).all()
    # more views, higher propensity
    heavy = validation.features["views_7d"] >= 6
    assert probabilities[heavy].mean() > probabilities[~heavy].mean() + 0.3


def test_same_seed_same_model(trained: tuple[PropensityModel, LabelledFrame]) -> None:
    model, validation = trained
    again = train_propensity(planted(2000, seed=1), validation, features=FEATURES)
    assert again.model_text == model.model_text
    assert again.calibration == model.calibration
    np.testing.assert_array_equal(
        again.score(validation.features), model.score(validation.features)
    )


def test_save_and_load_predict_identically(
    trained: tuple[PropensityModel, LabelledFrame], tmp_path: Path
) -> None:
    model, validation = trained
    model.save(tmp_path / "propensity")
    assert {path.name for path in (tmp_path / "propensity").iterdir()} == {
        "model.txt",
        "propensity.json",
    }
    loaded = PropensityModel.load(tmp_path / "propensity")
    np.testing.assert_array_equal(
        loaded.score(validation.features), model.score(validation.features)
    )
    assert loaded.report == model.report
    assert loaded.feature_names == tuple(FEATURES)


def test_platt_scaling_is_also_calibrated() -> None:
    validation = planted(2000, seed=2)
    model = train_propensity(
        planted(2000, seed=1),
        validation,
        features=FEATURES,
        params=PropensityParams(calibration="platt"),
    )
    assert model.calibration.method == "platt"
    assert model.report is not None
    assert model.report.expected_calibration_error < 0.06
    assert model.report.auc > 0.7


def test_too_few_positives_is_not_enough_data() -> None:
    tiny = planted(30, seed=3)
    with pytest.raises(NotEnoughData, match="at least 20 of each"):
        train_propensity(tiny, planted(2000, seed=2), features=FEATURES)
    with pytest.raises(NotEnoughData, match="validation"):
        train_propensity(planted(2000, seed=1), tiny, features=FEATURES)


def test_missing_feature_column_is_named(trained: tuple[PropensityModel, LabelledFrame]) -> None:
    model, validation = trained
    with pytest.raises(InvalidInput) as caught:
        model.score(validation.features.drop(columns=["views_7d"]))
    assert caught.value.details["field"] == "views_7d"


def test_labels_align_by_id_and_absent_people_are_negatives() -> None:
    features = pd.DataFrame({"profile_id": ["a", "b", "c"], "views_7d": [1, 2, 3]})
    frame = LabelledFrame.from_labels(features, pd.Series({"c": True, "a": False}))
    assert frame.labels.tolist() == [0, 0, 1]
    with pytest.raises(InvalidInput):
        LabelledFrame.from_labels(features, pd.Series({"a": 3}))
    with pytest.raises(InvalidInput, match="twice"):
        LabelledFrame.from_labels(features, pd.Series([1, 0], index=["a", "a"]))


def test_reliability_table_and_calibration_error() -> None:
    probabilities = np.array([0.05, 0.05, 0.95, 0.95])
    table, error = reliability_table(probabilities, np.array([0, 0, 1, 0], dtype=np.int8))
    assert [(item.lower, item.count, item.observed_rate) for item in table] == [
        (0.0, 2, 0.0),
        (0.9, 2, 0.5),
    ]
    assert error == pytest.approx(0.5 * 0.05 + 0.5 * 0.45)


# -- a simulated shop: snapshots of the feature table, labels from two snapshots ------------

START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 120


def simulated_shop(n: int = 1500, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Daily views and orders per person. Each person drifts in and out of an interested
    state (about 80 days on average); interested people view a lot and often buy."""
    rng = np.random.default_rng(seed)
    interested = np.zeros((n, DAYS), dtype=bool)
    state = rng.random(n) < 0.3
    for day in range(DAYS):
        flip = rng.random(n) < np.where(state, 1 / 80, 1 / 120)
        state = state ^ flip
        interested[:, day] = state
    views = rng.poisson(np.where(interested, 1.5, 0.08))
    orders = (rng.random((n, DAYS)) < np.where(interested, 0.06, 0.001)).astype(int)
    return views, orders


def features_at_factory(views: np.ndarray, orders: np.ndarray) -> FeaturesAt:
    @cache
    def features_at(as_of: datetime) -> pd.DataFrame:
        cutoff = (as_of - START).days
        active = (views[:, :cutoff] + orders[:, :cutoff]) > 0
        seen = active.any(axis=1)
        last_day = np.where(seen, cutoff - 1 - np.argmax(active[:, ::-1], axis=1), -1)
        bought = orders[:, :cutoff] > 0
        last_order = np.where(
            bought.any(axis=1), cutoff - 1 - np.argmax(bought[:, ::-1], axis=1), -1
        )
        frame = pd.DataFrame(
            {
                "profile_id": [f"p{i}" for i in range(len(views))],
                "recency_days": cutoff - last_day - 0.5,
                "frequency": orders[:, :cutoff].sum(axis=1),
                "days_since_last_order": np.where(
                    last_order >= 0, cutoff - last_order - 0.5, np.nan
                ),
                "views_7d": views[:, cutoff - 7 : cutoff].sum(axis=1),
                "views_30d": views[:, cutoff - 30 : cutoff].sum(axis=1),
            }
        )
        return frame[seen].reset_index(drop=True)

    return features_at


def test_time_split_from_snapshots_finds_the_planted_intent() -> None:
    views, orders = simulated_shop()
    features_at = features_at_factory(views, orders)
    end, horizon = START + timedelta(days=DAYS), timedelta(days=30)
    split = time_split(features_at, purchase_labels(features_at), end=end, horizon=horizon)
    assert split.train.as_of == START + timedelta(days=60)
    assert split.validation.as_of == START + timedelta(days=90)
    people = split.validation.features["profile_id"].str[1:].astype(int).to_numpy()
    expected = (orders[people, 90:120].sum(axis=1) > 0).astype(np.int8)
    np.testing.assert_array_equal(split.validation.labels, expected)

    features = ["recency_days", "frequency", "days_since_last_order", "views_7d", "views_30d"]
    model = train_propensity(split.train, split.validation, features=features, seed=1)
    assert model.report is not None
    assert model.report.auc > 0.75
    assert model.report.expected_calibration_error < 0.06
    assert model.report.validation_as_of == (START + timedelta(days=90)).isoformat()
    assert model.report.feature_importance[0][0] in {"views_7d", "views_30d"}


def test_churn_labels_and_population() -> None:
    views, orders = simulated_shop(n=300, seed=6)
    features_at = features_at_factory(views, orders)
    cutoff, horizon = START + timedelta(days=60), timedelta(days=30)
    customers = churn_population(basis="orders")(features_at(cutoff))
    table = features_at(cutoff)
    people = table["profile_id"].str[1:].astype(int).to_numpy()
    np.testing.assert_array_equal(customers, orders[people, :60].sum(axis=1) > 0)

    no_order = churn_labels(features_at, basis="orders")(cutoff, horizon)
    later = features_at(cutoff + horizon)["profile_id"].str[1:].astype(int).to_numpy()
    np.testing.assert_array_equal(
        no_order.to_numpy(), (orders[later, 60:90].sum(axis=1) == 0).astype(np.int8)
    )
    no_activity = churn_labels(features_at, basis="activity")(cutoff, horizon)
    idle = (views[later, 60:90] + orders[later, 60:90]).sum(axis=1) == 0
    np.testing.assert_array_equal(no_activity.to_numpy(), idle.astype(np.int8))

    recent = churn_population(basis="activity", active_within_days=7)(table)
    np.testing.assert_array_equal(recent, table["recency_days"].to_numpy() <= 7)


def test_churn_split_keeps_only_the_population() -> None:
    views, orders = simulated_shop(n=600, seed=8)
    features_at = features_at_factory(views, orders)
    split = time_split(
        features_at,
        churn_labels(features_at),
        end=START + timedelta(days=DAYS),
        horizon=timedelta(days=30),
        population=churn_population(),
    )
    assert (split.train.features["frequency"] > 0).all()
    assert (split.validation.features["frequency"] > 0).all()
    people = split.train.features["profile_id"].str[1:].astype(int).to_numpy()
    expected = (orders[people, 60:90].sum(axis=1) == 0).astype(np.int8)
    np.testing.assert_array_equal(split.train.labels, expected)


def test_a_snapshot_without_the_label_column_is_named() -> None:
    def features_at(as_of: datetime) -> pd.DataFrame:
        return pd.DataFrame({"profile_id": ["a"], "views_7d": [1]})

    with pytest.raises(InvalidInput) as caught:
        purchase_labels(features_at)(START, timedelta(days=30))
    assert caught.value.details["field"] == "frequency"
