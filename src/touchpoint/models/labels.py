"""Time-split training and validation frames for propensity and churn, and the labels and
population that define them, built from snapshots of the person feature table.

Why a module of its own: what a model learns is decided here, before any fitting. The split
is by time, never by row, so a model is always judged on a later horizon than it learned
from:

- `time_split(features_at, labels_at, end=..., horizon=...)`: the training frame is the
  feature table as of `end - 2 * horizon` labelled with what happened in the following
  horizon, the validation frame the table as of `end - horizon` labelled with the last
  horizon.
- `purchase_labels`, `churn_labels` and `churn_population` build the labels and the churn
  population from two snapshots of the feature table, so `features_at` alone is enough.

Everything here is pandas and numpy only; the learners live in `touchpoint.models.propensity`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from touchpoint.core.errors import InvalidInput
from touchpoint.models.frames import numeric_column

FeaturesAt = Callable[[datetime], pd.DataFrame]
LabelsAt = Callable[[datetime, timedelta], pd.Series]
Population = Callable[[pd.DataFrame], npt.NDArray[np.bool_]]
ChurnBasis = Literal["orders", "activity"]


@dataclass(frozen=True)
class LabelledFrame:
    """Feature rows and their 0/1 labels, row for row, as of one cutoff."""

    features: pd.DataFrame
    labels: npt.NDArray[np.int8]
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.features):
            raise InvalidInput(
                f"{len(self.labels)} labels for {len(self.features)} rows",
                details={"field": "labels"},
            )

    @classmethod
    def from_labels(
        cls,
        features: pd.DataFrame,
        labels: pd.Series,
        *,
        id_column: str = "profile_id",
        as_of: datetime | None = None,
    ) -> LabelledFrame:
        """Align labels indexed by person id with the feature rows; a person absent from
        `labels` is a negative (a labels function may list only the positives)."""
        if id_column not in features.columns:
            raise InvalidInput(f"column {id_column!r} is missing", details={"field": id_column})
        if labels.index.has_duplicates:
            raise InvalidInput("labels list a person twice", details={"field": "labels"})
        aligned = labels.reindex(features[id_column].to_numpy()).fillna(0)
        values = pd.to_numeric(aligned, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isin(values, (0.0, 1.0)).all():
            raise InvalidInput("labels must be 0/1 or booleans", details={"field": "labels"})
        return cls(features.reset_index(drop=True), values.astype(np.int8), as_of)


@dataclass(frozen=True)
class TimeSplit:
    """Training and validation frames at two cutoffs one horizon apart."""

    train: LabelledFrame
    validation: LabelledFrame
    horizon: timedelta


def time_split(
    features_at: FeaturesAt,
    labels_at: LabelsAt,
    *,
    end: datetime,
    horizon: timedelta,
    population: Population | None = None,
    id_column: str = "profile_id",
) -> TimeSplit:
    """Train at `end - 2 * horizon`, validate at `end - horizon`, each labelled with the
    horizon after its cutoff; `population` keeps only the rows it accepts (the churn
    population). `features_at` is called for each cutoff (and by snapshot labels again):
    wrap it in `functools.lru_cache` when it is expensive."""
    if horizon <= timedelta(0):
        raise InvalidInput("horizon must be positive", details={"field": "horizon"})
    frames = []
    for as_of in (end - 2 * horizon, end - horizon):
        features = features_at(as_of)
        if population is not None:
            features = features[np.asarray(population(features), dtype=bool)]
        labels = labels_at(as_of, horizon)
        frames.append(LabelledFrame.from_labels(features, labels, id_column=id_column, as_of=as_of))
    return TimeSplit(train=frames[0], validation=frames[1], horizon=horizon)


def purchase_labels(
    features_at: FeaturesAt, *, id_column: str = "profile_id", frequency: str = "frequency"
) -> LabelsAt:
    """Labels from two snapshots: 1 when a person's order count grew between `as_of` and
    `as_of + horizon`."""

    def labels_at(as_of: datetime, horizon: timedelta) -> pd.Series:
        before = _by_person(features_at(as_of), id_column, frequency)
        after = _by_person(features_at(as_of + horizon), id_column, frequency)
        grown = after.fillna(0) - before.reindex(after.index).fillna(0)
        return (grown > 0).astype(np.int8)

    return labels_at


def churn_labels(
    features_at: FeaturesAt,
    *,
    basis: ChurnBasis = "orders",
    id_column: str = "profile_id",
    frequency: str = "frequency",
    recency_days: str = "recency_days",
) -> LabelsAt:
    """Labels from two snapshots: 1 when a person placed no order (`basis="orders"`) or had
    no event at all (`basis="activity"`) between `as_of` and `as_of + horizon`."""
    ordered = purchase_labels(features_at, id_column=id_column, frequency=frequency)

    def labels_at(as_of: datetime, horizon: timedelta) -> pd.Series:
        if basis == "orders":
            return (1 - ordered(as_of, horizon)).astype(np.int8)
        after = _by_person(features_at(as_of + horizon), id_column, recency_days)
        active = after <= horizon / timedelta(days=1)
        return (~active).astype(np.int8)

    return labels_at


def churn_population(
    *,
    basis: ChurnBasis = "orders",
    active_within_days: float | None = None,
    frequency: str = "frequency",
    days_since_last_order: str = "days_since_last_order",
    recency_days: str = "recency_days",
) -> Population:
    """Who can churn: buyers (`basis="orders"`) or everyone seen (`"activity"`), optionally
    only those whose last order (or event) is within `active_within_days` of the cutoff."""

    def accepts(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        keep = np.ones(len(frame), dtype=bool)
        if basis == "orders":
            keep &= np.nan_to_num(numeric_column(frame, frequency), nan=0.0) > 0
        if active_within_days is not None:
            days = numeric_column(
                frame, days_since_last_order if basis == "orders" else recency_days
            )
            keep &= np.nan_to_num(days, nan=np.inf) <= active_within_days
        return keep

    return accepts


def _by_person(frame: pd.DataFrame, id_column: str, column: str) -> pd.Series:
    """One numeric column of a snapshot as float64, indexed by person id."""
    if id_column not in frame.columns:
        raise InvalidInput(f"column {id_column!r} is missing", details={"field": id_column})
    return pd.Series(numeric_column(frame, column), index=frame[id_column].to_numpy())
