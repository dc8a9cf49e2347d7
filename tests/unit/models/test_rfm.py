"""RFM scores and named groups: rank-based quantiles, ties, non-buyers, the segment table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.segmentation.rfm import (
    NO_ORDERS_SEGMENT,
    RFM_SEGMENT_NAMES,
    RFM_SEGMENT_TABLE,
    percentile_scores,
    rfm_scores,
    segment_for,
    to_table_scale,
)


def buyers_frame(n: int = 10) -> pd.DataFrame:
    """Person i ordered last 10 * i + 1 days ago (p0 most recently) and i + 1 times, for
    25 * (i + 1): the oldest customer orders most."""
    return pd.DataFrame(
        {
            "profile_id": [f"p{i}" for i in range(n)],
            "days_since_last_order": np.arange(n, dtype=float) * 10 + 1,
            "frequency": np.arange(n) + 1,
            "monetary": (np.arange(n) + 1) * 25.0,
        }
    )


def test_distinct_values_fill_each_score_equally_and_recent_scores_high() -> None:
    scores = rfm_scores(buyers_frame())
    assert scores["r"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scores["f"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scores["m"].tolist() == scores["f"].tolist()
    assert scores["rfm_code"].iloc[0] == "511"
    assert scores["profile_id"].tolist() == buyers_frame()["profile_id"].tolist()


def test_named_groups_on_planted_people() -> None:
    frame = pd.DataFrame(
        {
            "profile_id": ["champion", "lost", "whale_gone", "newbie"]
            + [f"filler{i}" for i in range(16)],
            "days_since_last_order": [1.0, 400.0, 380.0, 2.0, *np.linspace(20, 300, 16)],
            "frequency": [30, 1, 40, 1] + [2, 3, 4, 5] * 4,
            "monetary": [900.0, 10.0, 2000.0, 15.0] + [100.0] * 16,
        }
    )
    segments = rfm_scores(frame).set_index("profile_id")["segment"]
    assert segments["champion"] == "champions"
    assert segments["lost"] == "lost"
    assert segments["whale_gone"] == "cannot_lose_them"
    assert segments["newbie"] == "new_customers"


def test_ties_share_a_score_and_row_order_does_not_matter() -> None:
    frame = buyers_frame()
    frame["frequency"] = [1, 1, 1, 1, 1, 1, 2, 2, 3, 4]
    scores = rfm_scores(frame).set_index("profile_id")
    assert scores.loc[[f"p{i}" for i in range(6)], "f"].nunique() == 1
    shuffled = rfm_scores(frame.sample(frac=1.0, random_state=7)).set_index("profile_id")
    pd.testing.assert_frame_equal(scores, shuffled.loc[scores.index])


def test_people_without_orders_get_zero_scores_and_their_own_segment() -> None:
    frame = buyers_frame(6)
    frame.loc[4, ["frequency", "monetary", "days_since_last_order"]] = [0, 0.0, np.nan]
    frame.loc[5, ["frequency", "monetary", "days_since_last_order"]] = [np.nan, np.nan, np.nan]
    scores = rfm_scores(frame)
    assert scores.loc[4, "rfm_code"] == "000"
    assert scores.loc[[4, 5], "segment"].tolist() == [NO_ORDERS_SEGMENT] * 2
    # the four buyers are ranked among themselves only
    assert scores.loc[:3, "r"].tolist() == [4, 3, 2, 1]


def test_segment_table_covers_every_cell_with_the_usual_names() -> None:
    cells = {(r, f): segment_for(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert set(cells.values()) == {rule.name for rule in RFM_SEGMENT_TABLE}
    assert len(set(cells.values())) == 11
    assert cells[(5, 5)] == "champions"
    assert cells[(1, 1)] == "lost"
    assert cells[(2, 1)] == "hibernating"
    assert cells[(1, 5)] == "cannot_lose_them"
    assert cells[(2, 3)] == "at_risk"
    assert cells[(3, 3)] == "need_attention"
    assert set(RFM_SEGMENT_NAMES) == set(cells.values()) | {NO_ORDERS_SEGMENT}


def test_other_bin_counts_map_onto_the_table_scale() -> None:
    assert [to_table_scale(score, 5) for score in range(1, 6)] == [1, 2, 3, 4, 5]
    assert [to_table_scale(score, 3) for score in (1, 2, 3)] == [1, 3, 5]
    scores = rfm_scores(buyers_frame(9), bins=3)
    assert sorted(set(scores["r"])) == [1, 2, 3]
    assert scores.loc[0, "segment"] == "new_customers"  # most recent, fewest orders


def test_a_heavily_tied_lowest_value_scores_one() -> None:
    values = np.array([1.0] * 6 + [2.0, 2.0, 3.0, 4.0])
    assert percentile_scores(values, 5).tolist() == [1] * 6 + [4, 4, 5, 5]
    assert percentile_scores(np.zeros(0), 5).tolist() == []


def test_empty_frame_gives_an_empty_result() -> None:
    scores = rfm_scores(buyers_frame().iloc[:0])
    assert len(scores) == 0
    assert list(scores.columns) == ["profile_id", "r", "f", "m", "rfm_code", "segment"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda frame: frame.drop(columns=["monetary"]), "monetary"),
        (lambda frame: frame.assign(frequency=["x"] * len(frame)), "frequency"),
        (lambda frame: frame.assign(days_since_last_order=np.nan), "days_since_last_order"),
        (lambda frame: frame.drop(columns=["profile_id"]), "profile_id"),
    ],
)
def test_bad_columns_are_named(change: Callable[[pd.DataFrame], pd.DataFrame], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        rfm_scores(change(buyers_frame()))
    assert caught.value.details["field"] == field


def test_bins_out_of_range_are_rejected() -> None:
    with pytest.raises(InvalidInput):
        rfm_scores(buyers_frame(), bins=1)
