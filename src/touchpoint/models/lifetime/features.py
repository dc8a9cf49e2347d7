"""Per-person features of a purchase history for the boosted purchase model.

Beyond the summary's three numbers: time since the last purchase against the person's
own rhythm, how regular their gaps are, recent activity, spend, and what the base model
(BG/NBD or Pareto/NBD) says. Everything is computed from purchase days up to the
summary's end, never after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput

if TYPE_CHECKING:
    from touchpoint.models.lifetime.bgnbd import BgNbdModel
    from touchpoint.models.lifetime.pareto_nbd import ParetoNbdModel
    from touchpoint.models.lifetime.summary import CustomerSummary, PurchaseDays

FloatArray = npt.NDArray[np.float64]

# No absolute age or recency: the people predicted are always `window` older than any
# the booster trained on, so trees would only see ages beyond their range.
FEATURES = (
    "frequency",
    "since_last",
    "since_last_over_mean_gap",
    "gap_variation",
    "last_gap",
    "recent_quarter_window",
    "recent_half_window",
    "recent_window",
    "monetary_value",
    "first_amount",
    "mean_amount",
    "base_p_alive",
    "base_log_expected_window",
)


def purchase_features(
    purchases: PurchaseDays,
    summary: CustomerSummary,
    base: BgNbdModel | ParetoNbdModel,
    window: float,
) -> FloatArray:
    """One row per person of `summary` (same order), columns `FEATURES`, from purchase
    days up to `summary.end`; `window` (units) sets the recent-activity spans."""
    seen = purchases.until(summary.end)
    ids, start = np.unique(seen.person_ids, return_index=True)
    if len(ids) != len(summary) or not np.array_equal(ids, summary.person_ids):
        raise InvalidInput("the summary does not match the purchases", details={"field": "end"})
    counts = np.diff(np.append(start, len(seen.person_ids)))
    owner = np.repeat(np.arange(len(ids)), counts)
    unit = summary.unit_days
    ago = (summary.end - seen.days).astype(np.float64) / unit  # units before the end

    gaps = -np.diff(ago, prepend=np.nan)  # time since the previous purchase day
    gaps[start] = np.nan
    has_gap = np.isfinite(gaps)
    squares = np.bincount(owner, weights=np.where(has_gap, gaps**2, 0.0), minlength=len(ids))
    frequency = summary.frequency
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_gap = np.where(frequency > 0, summary.recency / frequency, np.nan)
        variance = np.maximum(squares / frequency - mean_gap**2, 0.0)
        gap_variation = np.where(frequency > 1, np.sqrt(variance) / mean_gap, np.nan)
        since_last = summary.age - summary.recency
        since_last_over_gap = since_last / mean_gap
    last_gap = np.where(frequency > 0, gaps[start + counts - 1], np.nan)

    def recent(span: float) -> FloatArray:
        inside = (ago < span).astype(np.float64)
        return np.bincount(owner, weights=inside, minlength=len(ids)).astype(np.float64)

    mean_amount = np.bincount(owner, weights=seen.amounts, minlength=len(ids)) / counts
    expected_window = base.expected_purchases(
        window, summary.frequency, summary.recency, summary.age
    )
    columns = [
        frequency,
        since_last,
        since_last_over_gap,
        gap_variation,
        last_gap,
        recent(window / 4),
        recent(window / 2),
        recent(window),
        summary.monetary_value,
        seen.amounts[start],
        mean_amount,
        base.p_alive(summary.frequency, summary.recency, summary.age),
        np.log(np.maximum(expected_window, 1e-9)),
    ]
    return np.column_stack(columns).astype(np.float64)
