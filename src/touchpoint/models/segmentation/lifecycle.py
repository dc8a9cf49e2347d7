"""Who a person is: value tier and lifecycle stage, the first tier of the two-tier view.

Both come from the person feature table alone (no randomness, no fitted state), so a job can
recompute them after every materialization and write them to profiles. The second tier,
what a person is doing now, is the real-time segments' job.

Value tier, among buyers by total order value (`monetary`), with mid-rank percentiles
(`touchpoint.models.segmentation.rfm.rank_percentiles`; equal spend shares a tier, and a tied group
counts where its middle lies, so a tie at the top stays `high`): `high` at or above
the `high_quantile` percentile, `medium` at or above `medium_quantile`, else `low`;
people without orders are `none`.

Lifecycle stage, first match wins (days are days since the last order):

    prospect  no order yet
    new       one order, placed within `new_days`
    active    ordered within `active_days` (one order, placed after `new_days`)
    repeat    ordered within `active_days`, `repeat_orders` orders or more
    at_risk   last order within `lapsed_days`, but after `active_days`
    lapsed    last order more than `lapsed_days` ago
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from touchpoint.core.errors import InvalidInput
from touchpoint.models.frames import numeric_column
from touchpoint.models.segmentation.rfm import rank_percentiles

logger = logging.getLogger(__name__)

VALUE_TIERS: tuple[str, ...] = ("high", "medium", "low", "none")
LIFECYCLE_STAGES: tuple[str, ...] = ("prospect", "new", "active", "repeat", "at_risk", "lapsed")


@dataclass(frozen=True, slots=True)
class LifecycleThresholds:
    """The cut points of value tiers and lifecycle stages (see the module docstring)."""

    high_quantile: float = 0.8
    medium_quantile: float = 0.5
    new_days: float = 30.0
    active_days: float = 90.0
    lapsed_days: float = 180.0
    repeat_orders: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.medium_quantile < self.high_quantile < 1.0:
            raise InvalidInput(
                "quantiles must satisfy 0 < medium_quantile < high_quantile < 1, not "
                f"{self.medium_quantile} and {self.high_quantile}",
                details={"field": "high_quantile"},
            )
        if not 0.0 <= self.new_days <= self.active_days <= self.lapsed_days:
            raise InvalidInput(
                "days must satisfy 0 <= new_days <= active_days <= lapsed_days, not "
                f"{self.new_days}, {self.active_days}, {self.lapsed_days}",
                details={"field": "active_days"},
            )
        if self.repeat_orders < 2:
            raise InvalidInput(
                f"repeat_orders must be at least 2, not {self.repeat_orders}",
                details={"field": "repeat_orders"},
            )


def lifecycle_segments(
    frame: pd.DataFrame,
    *,
    thresholds: LifecycleThresholds | None = None,
    id_column: str = "profile_id",
    frequency: str = "frequency",
    monetary: str = "monetary",
    days_since_last_order: str = "days_since_last_order",
) -> pd.DataFrame:
    """The value tier and lifecycle stage of every row of a person feature table.

    A row is a buyer when `frequency` is above 0; a buyer must have `days_since_last_order`.
    Returns a frame on the input's index with the id column, `value_tier` (one of
    `VALUE_TIERS`) and `lifecycle_stage` (one of `LIFECYCLE_STAGES`).
    """
    limits = thresholds or LifecycleThresholds()
    if id_column not in frame.columns:
        raise InvalidInput(f"column {id_column!r} is missing", details={"field": id_column})
    orders = np.nan_to_num(numeric_column(frame, frequency), nan=0.0)
    value = np.nan_to_num(numeric_column(frame, monetary), nan=0.0)
    days = numeric_column(frame, days_since_last_order)
    buyers = orders > 0
    missing_days = buyers & np.isnan(days)
    if missing_days.any():
        raise InvalidInput(
            f"column {days_since_last_order!r} is missing for {int(missing_days.sum())} buyer(s)",
            details={"field": days_since_last_order},
        )

    percentile = np.zeros(len(frame), dtype=np.float64)
    percentile[buyers] = rank_percentiles(value[buyers], ties="average")
    tier = np.select(
        [~buyers, percentile >= limits.high_quantile, percentile >= limits.medium_quantile],
        ["none", "high", "medium"],
        default="low",
    )

    days_or_zero = np.nan_to_num(days, nan=0.0)
    stage = np.select(
        [
            ~buyers,
            (orders < 2) & (days_or_zero <= limits.new_days),
            (orders < limits.repeat_orders) & (days_or_zero <= limits.active_days),
            days_or_zero <= limits.active_days,
            days_or_zero <= limits.lapsed_days,
        ],
        ["prospect", "new", "active", "repeat", "at_risk"],
        default="lapsed",
    )
    logger.debug("lifecycle segments for %d rows, %d buyers", len(frame), int(buyers.sum()))
    return pd.DataFrame(
        {
            id_column: frame[id_column].to_numpy(),
            "value_tier": tier.astype(object),
            "lifecycle_stage": stage.astype(object),
        },
        index=frame.index,
    )
