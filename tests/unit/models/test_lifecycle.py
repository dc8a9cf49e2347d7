"""Value tiers and lifecycle stages from the person feature table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.segmentation.lifecycle import (
    LIFECYCLE_STAGES,
    VALUE_TIERS,
    LifecycleThresholds,
    lifecycle_segments,
)


def people() -> pd.DataFrame:
    rows = [
        # profile_id, frequency, monetary, days_since_last_order
        ("prospect", 0, 0.0, np.nan),
        ("new", 1, 40.0, 5.0),
        ("active", 1, 60.0, 45.0),
        ("repeat", 4, 300.0, 10.0),
        ("at_risk", 3, 150.0, 120.0),
        ("lapsed", 2, 80.0, 365.0),
    ]
    return pd.DataFrame(
        rows, columns=["profile_id", "frequency", "monetary", "days_since_last_order"]
    )


def test_each_stage_on_a_planted_person() -> None:
    result = lifecycle_segments(people())
    assert result["lifecycle_stage"].tolist() == result["profile_id"].tolist()
    assert set(result["lifecycle_stage"]) == set(LIFECYCLE_STAGES)


def test_thresholds_move_the_boundaries() -> None:
    result = lifecycle_segments(
        people(), thresholds=LifecycleThresholds(new_days=60, active_days=150, lapsed_days=400)
    ).set_index("profile_id")
    assert result.loc["active", "lifecycle_stage"] == "new"
    assert result.loc["at_risk", "lifecycle_stage"] == "repeat"
    assert result.loc["lapsed", "lifecycle_stage"] == "at_risk"
    stricter = lifecycle_segments(people(), thresholds=LifecycleThresholds(repeat_orders=5))
    assert stricter.set_index("profile_id").loc["repeat", "lifecycle_stage"] == "active"


def test_value_tiers_split_buyers_by_monetary_quantiles() -> None:
    frame = pd.DataFrame(
        {
            "profile_id": [f"p{i}" for i in range(12)],
            "frequency": [1] * 10 + [0, 0],
            "monetary": [10.0 * (i + 1) for i in range(10)] + [0.0, 0.0],
            "days_since_last_order": [5.0] * 10 + [np.nan, np.nan],
        }
    )
    tiers = lifecycle_segments(frame)["value_tier"].tolist()
    assert tiers == ["low"] * 5 + ["medium"] * 3 + ["high"] * 2 + ["none"] * 2
    assert set(tiers) == set(VALUE_TIERS)


def test_equal_spend_shares_a_tier_and_row_order_does_not_matter() -> None:
    frame = pd.DataFrame(
        {
            "profile_id": [f"p{i}" for i in range(8)],
            "frequency": [2] * 8,
            "monetary": [50.0, 50.0, 50.0, 50.0, 80.0, 90.0, 100.0, 100.0],
            "days_since_last_order": np.linspace(1, 200, 8),
        }
    )
    result = lifecycle_segments(frame).set_index("profile_id")
    assert result.loc[["p0", "p1", "p2", "p3"], "value_tier"].nunique() == 1
    assert result.loc["p6", "value_tier"] == result.loc["p7", "value_tier"] == "high"
    shuffled = lifecycle_segments(frame.sample(frac=1.0, random_state=3)).set_index("profile_id")
    pd.testing.assert_frame_equal(result, shuffled.loc[result.index])


def test_a_buyer_without_days_since_last_order_is_named() -> None:
    frame = people()
    frame.loc[1, "days_since_last_order"] = np.nan
    with pytest.raises(InvalidInput) as caught:
        lifecycle_segments(frame)
    assert caught.value.details["field"] == "days_since_last_order"


def test_missing_column_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        lifecycle_segments(people().drop(columns=["monetary"]))
    assert caught.value.details["field"] == "monetary"


@pytest.mark.parametrize(
    "arguments",
    [
        {"high_quantile": 0.4, "medium_quantile": 0.5},
        {"new_days": 100.0, "active_days": 90.0},
        {"repeat_orders": 1},
    ],
)
def test_inconsistent_thresholds_are_rejected(arguments: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        LifecycleThresholds(**arguments)
