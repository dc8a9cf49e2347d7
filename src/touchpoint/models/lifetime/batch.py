"""`touchpoint models predict-purchases`: a file of purchases in, one row per person out.

Input: CSV, Parquet or JSON lines with `person_id, date, amount` (other columns ignored;
several purchases of a person on one day count as one purchase of their summed amount).
The end of observation is the last purchase day in the file. Output (CSV, Parquet or JSON
lines, by the extension of `out`): `person_id, expected_purchases, p_active,
expected_value` for every person in the input, sorted by person id:

- `expected_purchases`: expected purchase days in the next `horizon_days`,
- `p_active`: the purchase model's probability that the person is still a customer,
- `expected_value`: expected spend over the horizon (expected purchases times the
  Gamma-Gamma expected amount per purchase, optionally discounted month by month).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from touchpoint.core.errors import InvalidInput
from touchpoint.core.tables import detect_format, read_frame, write_frame
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.lifetime.boosted import (
    BASE_MODELS,
    BaseModel,
    PurchasePrediction,
    fit_base,
    fit_boosted,
    predict_with_base,
)
from touchpoint.models.lifetime.fitting import MIN_PEOPLE
from touchpoint.models.lifetime.gamma_gamma import fit_gamma_gamma, lifetime_value
from touchpoint.models.lifetime.summary import CustomerSummary, purchase_days, summarize

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

UNIT_DAYS = 7.0  # the models work in weeks, the unit of the published fits
MODELS = ("auto", *BASE_MODELS)
OUTPUT_COLUMNS = ("person_id", "expected_purchases", "p_active", "expected_value")


@dataclass(frozen=True)
class PurchaseSummary:
    """What a predict-purchases run did: how many people, which models, the totals."""

    people: int
    repeat_buyers: int
    model: str
    spend_model: str
    horizon_days: int
    observation_end: str
    expected_purchases_total: float
    expected_value_total: float
    out: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the path as a string)."""
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def average_values(summary: CustomerSummary) -> tuple[np.ndarray[Any, np.dtype[np.float64]], str]:
    """Expected amount per future purchase for each person, and how it was obtained:
    Gamma-Gamma when it can be fitted, else each person's mean purchase amount blended
    with the overall mean (one purchase's weight) - with the reason logged."""
    try:
        spend = fit_gamma_gamma(summary.frequency, summary.monetary_value)
        if spend.params.q > 1.0:
            values = spend.expected_average_value(summary.frequency, summary.monetary_value)
            return values, "gamma_gamma"
        reason = f"Gamma-Gamma q = {spend.params.q:.3f} <= 1 (no finite mean)"
    except NotEnoughData as error:
        reason = error.reason
    logger.warning("spend model: %s; using blended mean amounts instead", reason)
    repeat_total = summary.monetary_value * summary.frequency
    overall = float(np.sum(repeat_total) / max(np.sum(summary.frequency), 1.0))
    values = (repeat_total + overall) / (summary.frequency + 1.0)
    return np.asarray(values, dtype=np.float64), f"blended mean amount ({reason})"


def _predict(
    purchases: Any, summary: CustomerSummary, model: str, horizon: float, seed: int
) -> tuple[PurchasePrediction, BaseModel, str]:
    if model == "auto":
        fitted = fit_boosted(purchases, horizon=horizon, unit_days=UNIT_DAYS, seed=seed)
        return fitted.predict(purchases, horizon), fitted.base, fitted.description
    base = fit_base(model, summary)
    return predict_with_base(base, summary, horizon), base, model


def predict_purchases_file(
    transactions: Path,
    out: Path,
    *,
    horizon_days: int,
    model: str = "auto",
    seed: int = 0,
    monthly_discount_rate: float = 0.0,
) -> PurchaseSummary:
    """Predict purchases and spend over the next `horizon_days` for every person in the
    `transactions` file and write them to `out` (module docstring). `model`: `auto`
    (chosen by validation inside the file's own history: BG/NBD or Pareto/NBD, with or
    without a boosted correction), `bgnbd` or `pareto_nbd`. Same file and seed → the same
    output. Bad rows → `InvalidInput` naming the column and row; fewer than 20 people or
    no repeat buyer → `NotEnoughData`."""
    if model not in MODELS:
        raise InvalidInput(
            f"unknown model {model!r}; choose one of {', '.join(MODELS)}",
            details={"field": "model"},
        )
    if horizon_days <= 0:
        raise InvalidInput("horizon_days must be positive", details={"field": "horizon_days"})
    detect_format(out, field="out")  # refuse an unknown output type before any work
    frame, header_lines = read_frame(transactions, field="transactions", text_columns="all")
    if len(frame) == 0:
        raise NotEnoughData(f"{transactions} has no purchases")
    purchases = purchase_days(frame, header_lines=header_lines)
    summary = summarize(purchases, unit_days=UNIT_DAYS)
    if len(summary) < MIN_PEOPLE:
        raise NotEnoughData(
            f"{len(summary)} people in {transactions}; purchase models need at least {MIN_PEOPLE}"
        )
    if summary.repeat_buyers == 0:
        raise NotEnoughData(f"nobody in {transactions} bought on more than one day")

    horizon = horizon_days / UNIT_DAYS
    prediction, base, description = _predict(purchases, summary, model, horizon, seed)
    values, spend_model = average_values(summary)
    if monthly_discount_rate == 0.0:
        expected_value = prediction.expected_purchases * values
    else:
        # The horizon's purchases spread over months as the base model spreads them.
        base_total = base.expected_purchases(
            horizon, summary.frequency, summary.recency, summary.age
        )
        scale = prediction.expected_purchases / np.maximum(base_total, 1e-12)
        expected_value = lifetime_value(
            lambda t: (
                scale * base.expected_purchases(t, summary.frequency, summary.recency, summary.age)
            ),
            values,
            horizon_days=horizon_days,
            unit_days=UNIT_DAYS,
            monthly_discount_rate=monthly_discount_rate,
        )
    import pandas as pd

    output = pd.DataFrame(
        {
            "person_id": summary.person_ids,
            "expected_purchases": prediction.expected_purchases,
            "p_active": prediction.p_alive,
            "expected_value": expected_value,
        }
    )
    write_frame(output, out)
    result = PurchaseSummary(
        people=len(summary),
        repeat_buyers=summary.repeat_buyers,
        model=description,
        spend_model=spend_model,
        horizon_days=horizon_days,
        observation_end=str(summary.end),
        expected_purchases_total=float(np.sum(prediction.expected_purchases)),
        expected_value_total=float(np.sum(expected_value)),
        out=out,
    )
    logger.info("predicted purchases for %d people with %s", result.people, description)
    return result
