"""RFM segments: recency, frequency and monetary scores, and the named groups they make.

Each buyer gets three scores from 1 to `bins` (5 by default) by rank among the buyers:
recency (most recent = `bins`), frequency and monetary value (most = `bins`). Scores are
rank-based quantiles, a tied group taking its lowest rank (see `percentile_scores`): equal
values always share a score, and nothing depends on row order or on randomness.

The named group comes from the recency and frequency scores through `RFM_SEGMENT_TABLE`,
a table of score ranges read top to bottom (first match wins), the usual map:

    R \\ F  1               2                    3                    4          5
    5      new_customers   potential_loyalists  potential_loyalists  champions  champions
    4      promising       potential_loyalists  potential_loyalists  loyal      loyal
    3      about_to_sleep  about_to_sleep       need_attention       loyal      loyal
    2      hibernating     hibernating          at_risk              at_risk    cannot_lose_them
    1      lost            hibernating          at_risk              at_risk    cannot_lose_them

People with no orders (frequency 0 or missing) are not ranked: their scores are 0, their
code "000" and their segment `no_orders` (`NO_ORDERS_SEGMENT`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from touchpoint.core.errors import InvalidInput
from touchpoint.models.frames import numeric_column

logger = logging.getLogger(__name__)

NO_ORDERS_SEGMENT = "no_orders"
TABLE_SCALE = 5  # the segment table is written on the 1-5 scale


@dataclass(frozen=True, slots=True)
class SegmentRule:
    """One row of the segment table: a name for the recency and frequency scores (on the
    1-5 scale) inside these inclusive ranges."""

    name: str
    recency: tuple[int, int]
    frequency: tuple[int, int]

    def matches(self, recency: int, frequency: int) -> bool:
        """Whether a (recency, frequency) pair of 1-5 scores falls in this rule's ranges."""
        low_r, high_r = self.recency
        low_f, high_f = self.frequency
        return low_r <= recency <= high_r and low_f <= frequency <= high_f


# Read top to bottom, first match wins; covers every cell of the 5 x 5 grid.
RFM_SEGMENT_TABLE: tuple[SegmentRule, ...] = (
    SegmentRule("champions", recency=(5, 5), frequency=(4, 5)),
    SegmentRule("loyal", recency=(3, 4), frequency=(4, 5)),
    SegmentRule("potential_loyalists", recency=(4, 5), frequency=(2, 3)),
    SegmentRule("new_customers", recency=(5, 5), frequency=(1, 1)),
    SegmentRule("promising", recency=(4, 4), frequency=(1, 1)),
    SegmentRule("need_attention", recency=(3, 3), frequency=(3, 3)),
    SegmentRule("about_to_sleep", recency=(3, 3), frequency=(1, 2)),
    SegmentRule("cannot_lose_them", recency=(1, 2), frequency=(5, 5)),
    SegmentRule("at_risk", recency=(1, 2), frequency=(3, 4)),
    SegmentRule("lost", recency=(1, 1), frequency=(1, 1)),
    SegmentRule("hibernating", recency=(1, 2), frequency=(1, 2)),
)

RFM_SEGMENT_NAMES: tuple[str, ...] = (
    *dict.fromkeys(rule.name for rule in RFM_SEGMENT_TABLE),
    NO_ORDERS_SEGMENT,
)


def rank_percentiles(
    values: npt.NDArray[np.float64], *, ties: Literal["min", "average"] = "min"
) -> npt.NDArray[np.float64]:
    """Each value's percentile in [0, 1), larger values higher; equal values always share
    one. `ties="min"`: the share of values strictly smaller, so the smallest value is always
    at 0. `ties="average"`: the mid-rank percentile `(average rank - 0.5) / n`, a tied group
    sitting at its middle."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.float64)
    ranks: npt.NDArray[np.float64] = pd.Series(values).rank(method=ties).to_numpy(dtype=np.float64)
    return (ranks - (1.0 if ties == "min" else 0.5)) / len(values)


def percentile_scores(values: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.int64]:
    """Scores 1..`bins` by rank, larger values scoring higher.

    Each value's percentile (`rank_percentiles` with `ties="min"`, the share of values below
    it) falls in one of `bins` equal bands. Equal values always share a score: a tied group
    takes the band of its lowest member, so the smallest value always scores 1 (with 60% of
    buyers at one order, they all score 1, which keeps `new_customers` and `lost` alive, and
    two orders score 4). Without ties each score holds n / bins values (the top score needs
    at least `bins` values).
    """
    percentiles = rank_percentiles(values)
    return np.clip(np.floor(percentiles * bins).astype(np.int64) + 1, 1, bins)


def to_table_scale(score: int, bins: int) -> int:
    """A score on a 1..`bins` scale mapped to the 1-5 scale of the segment table, through the
    middle of its band (with `bins` = 5 it is unchanged)."""
    return min(TABLE_SCALE, 1 + math.floor((score - 0.5) / bins * TABLE_SCALE))


def segment_for(
    recency: int, frequency: int, table: Sequence[SegmentRule] = RFM_SEGMENT_TABLE
) -> str:
    """The named group of a (recency, frequency) pair of 1-5 scores: the first rule that
    matches; `InvalidInput` when the table leaves the pair out."""
    for rule in table:
        if rule.matches(recency, frequency):
            return rule.name
    raise InvalidInput(
        f"the segment table has no rule for recency {recency}, frequency {frequency}",
        details={"field": "table"},
    )


def rfm_scores(
    frame: pd.DataFrame,
    *,
    id_column: str = "profile_id",
    recency: str = "days_since_last_order",
    frequency: str = "frequency",
    monetary: str = "monetary",
    bins: int = 5,
    table: Sequence[SegmentRule] = RFM_SEGMENT_TABLE,
) -> pd.DataFrame:
    """RFM scores and the named group of every row of a person feature table.

    `recency` is days since the last order (smaller is better), `frequency` the number of
    orders and `monetary` their total value. A row is a buyer when its frequency is above 0;
    a buyer must have a recency. Returns a frame on the input's index with the id column,
    `r`, `f`, `m` (int, 0 for non-buyers), `rfm_code` (e.g. "543") and `segment`.
    """
    if not 2 <= bins <= 9:
        raise InvalidInput(f"bins must be from 2 to 9, not {bins}", details={"field": "bins"})
    if id_column not in frame.columns:
        raise InvalidInput(f"column {id_column!r} is missing", details={"field": id_column})
    recency_values = numeric_column(frame, recency)
    frequency_values = numeric_column(frame, frequency)
    monetary_values = numeric_column(frame, monetary)

    buyers = np.nan_to_num(frequency_values, nan=0.0) > 0
    missing_recency = buyers & np.isnan(recency_values)
    if missing_recency.any():
        raise InvalidInput(
            f"column {recency!r} is missing for {int(missing_recency.sum())} buyer(s)",
            details={"field": recency},
        )

    r = np.zeros(len(frame), dtype=np.int64)
    f = np.zeros(len(frame), dtype=np.int64)
    m = np.zeros(len(frame), dtype=np.int64)
    r[buyers] = percentile_scores(-recency_values[buyers], bins)
    f[buyers] = percentile_scores(frequency_values[buyers], bins)
    m[buyers] = percentile_scores(np.nan_to_num(monetary_values[buyers], nan=0.0), bins)

    # Every (r, f) cell is named once, then looked up, so large frames cost one table scan.
    names = {
        (rs, fs): segment_for(to_table_scale(rs, bins), to_table_scale(fs, bins), table)
        for rs in range(1, bins + 1)
        for fs in range(1, bins + 1)
    }
    segments = [
        names[(int(rs), int(fs))] if buyer else NO_ORDERS_SEGMENT
        for rs, fs, buyer in zip(r, f, buyers, strict=True)
    ]
    result = pd.DataFrame(
        {
            id_column: frame[id_column].to_numpy(),
            "r": r,
            "f": f,
            "m": m,
            "rfm_code": [f"{a}{b}{c}" for a, b, c in zip(r, f, m, strict=True)],
            "segment": segments,
        },
        index=frame.index,
    )
    logger.debug("rfm scores for %d rows, %d buyers", len(frame), int(buyers.sum()))
    return result
