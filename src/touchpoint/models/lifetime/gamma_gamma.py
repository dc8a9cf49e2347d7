"""Gamma-Gamma: how much a person spends per purchase, and lifetime value over a horizon.

Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer base
analysis", after Colombo & Jiang (1999). A person's purchase amounts are Gamma(p, nu)
around their own mean p/nu, and nu ~ Gamma(q, gamma) across people. Fitted on repeat buyers
only (their mean repeat amount and how many repeat purchases it averages), it gives each
person's expected amount per purchase: their own mean shrunk towards the population's,
more for people with few purchases. The model assumes spend does not depend on how often
someone buys.

`lifetime_value` multiplies that amount by a purchase model's expected purchases month
by month over a horizon, optionally discounted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.lifetime.fitting import (
    ArrayLike,
    FloatArray,
    float_arrays,
    maximize_from_starts,
)
from touchpoint.models.lifetime.stored import MODEL_FILE

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.lifetime.summary import CustomerSummary

logger = logging.getLogger(__name__)

MIN_REPEAT_BUYERS = 10
DAYS_PER_MONTH = 365.25 / 12
STARTS = ((1.0, 1.0, 1.0), (5.0, 3.0, 1.0), (0.5, 2.0, 0.1))


@dataclass(frozen=True)
class GammaGammaParameters:
    """p: shape of a person's amounts; q, gamma: the Gamma prior of their rate nu (gamma is in
    units of the amounts' scale)."""

    p: float
    q: float
    gamma: float


def log_likelihood(
    params: GammaGammaParameters, frequency: ArrayLike, monetary_value: ArrayLike
) -> FloatArray:
    """Each repeat buyer's log-likelihood of their mean repeat amount (`frequency` > 0 and
    `monetary_value` > 0 only)."""
    from scipy.special import gammaln

    x, mean = float_arrays(frequency, monetary_value)
    p, q, gamma = params.p, params.q, params.gamma
    shape = p * x
    return np.asarray(
        gammaln(shape + q)
        - gammaln(shape)
        - gammaln(q)
        + q * np.log(gamma)
        + (shape - 1.0) * np.log(mean)
        + shape * np.log(x)
        - (shape + q) * np.log(gamma + mean * x),
        dtype=np.float64,
    )


@dataclass(frozen=True)
class GammaGammaModel:
    """A fitted Gamma-Gamma spend model."""

    params: GammaGammaParameters
    log_likelihood: float = float("nan")
    repeat_buyers: int = 0

    @property
    def population_mean(self) -> float:
        """Expected amount per purchase of someone we know nothing about (p gamma / (q - 1));
        infinite when q ≤ 1 (amounts too heavy-tailed for a mean)."""
        p, q, gamma = self.params.p, self.params.q, self.params.gamma
        return p * gamma / (q - 1.0) if q > 1.0 else math.inf

    def expected_average_value(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """Expected amount per future purchase given `frequency` repeat purchases of mean
        `monetary_value` (people with none get the population mean)."""
        x, mean = float_arrays(frequency, monetary_value)
        p, q, gamma = self.params.p, self.params.q, self.params.gamma
        if q <= 1.0:
            raise InvalidInput(
                f"Gamma-Gamma q = {q:.3f} ≤ 1: amounts too heavy-tailed for an expected value",
                details={"field": "q"},
            )
        mean = np.where(x > 0, mean, 0.0)
        return np.asarray(p * (gamma + x * mean) / (p * x + q - 1.0), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready description."""
        return {
            "model": "gamma_gamma",
            "params": asdict(self.params),
            "log_likelihood": self.log_likelihood,
            "repeat_buyers": self.repeat_buyers,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GammaGammaModel:
        """The model `to_dict` described; a wrong kind or missing parameter is
        `InvalidInput`."""
        if data.get("model") != "gamma_gamma":
            raise InvalidInput("not a Gamma-Gamma model file", details={"field": "model"})
        try:
            params = GammaGammaParameters(**{k: float(v) for k, v in data["params"].items()})
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInput(
                f"bad Gamma-Gamma parameters: {error}", details={"field": "params"}
            ) from error
        return cls(
            params,
            log_likelihood=float(data.get("log_likelihood", float("nan"))),
            repeat_buyers=int(data.get("repeat_buyers", 0)),
        )

    @classmethod
    def fit(cls, data: CustomerSummary, /, *, seed: int = 0) -> GammaGammaModel:
        """`fit_gamma_gamma` on the summary's repeat buyers (deterministic: `seed` is
        accepted for the `Scorer` protocol and unused)."""
        return fit_gamma_gamma(data.frequency, data.monetary_value)

    def score(self, frame: pd.DataFrame) -> FloatArray:
        """Expected amount per future purchase of every row (reads `frequency` and
        `monetary_value`); see `expected_average_value`."""
        return self.expected_average_value(
            frame["frequency"].to_numpy(np.float64), frame["monetary_value"].to_numpy(np.float64)
        )

    def save(self, directory: Path) -> None:
        """Write the model as JSON (`model.json`, never pickle) into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2)
        (directory / MODEL_FILE).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> GammaGammaModel:
        """Read a model `save` wrote."""
        return cls.from_dict(json.loads((directory / MODEL_FILE).read_text(encoding="utf-8")))


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike) -> GammaGammaModel:
    """Maximum-likelihood Gamma-Gamma on the repeat buyers among the given people (those
    with `frequency` > 0 and a positive mean amount). Deterministic. Fewer than 10 such
    buyers → `NotEnoughData`."""
    x, mean = float_arrays(frequency, monetary_value)
    if len(x) != len(mean):
        raise InvalidInput(
            "frequency and monetary_value differ in length", details={"field": "monetary_value"}
        )
    keep = (x > 0) & (mean > 0) & np.isfinite(mean)
    x, mean = x[keep], mean[keep]
    if len(x) < MIN_REPEAT_BUYERS:
        raise NotEnoughData(
            f"Gamma-Gamma needs at least {MIN_REPEAT_BUYERS} repeat buyers with a positive "
            f"amount, got {len(x)}"
        )
    scale = float(np.mean(mean))  # gamma searched in units of the mean amount

    def objective(log_params: FloatArray) -> float:
        p, q, gamma = np.exp(log_params)
        params = GammaGammaParameters(p, q, gamma * scale)
        return -float(np.mean(log_likelihood(params, x, mean)))

    p, q, gamma = (float(v) for v in maximize_from_starts(objective, STARTS))
    params = GammaGammaParameters(p=p, q=q, gamma=gamma * scale)
    total = float(np.sum(log_likelihood(params, x, mean)))
    logger.info("Gamma-Gamma fitted on %d repeat buyers: %s", len(x), params)
    return GammaGammaModel(params, log_likelihood=total, repeat_buyers=len(x))


def lifetime_value(
    cumulative_purchases: Callable[[float], FloatArray],
    average_value: FloatArray,
    *,
    horizon_days: float,
    unit_days: float = 7.0,
    monthly_discount_rate: float = 0.0,
) -> FloatArray:
    """Expected (discounted) spend over the next `horizon_days`: month by month, the
    expected purchases of that month (`cumulative_purchases(t)` gives expected purchases
    in the next `t` units for every person) times the expected amount per purchase,
    divided by (1 + rate)^month. The last month may be partial. With rate 0 it is
    expected purchases over the horizon * average value."""
    if horizon_days < 0:
        raise InvalidInput("horizon_days must be ≥ 0", details={"field": "horizon_days"})
    if monthly_discount_rate < 0:
        raise InvalidInput(
            "the monthly discount rate must be ≥ 0", details={"field": "monthly_discount_rate"}
        )
    values = np.zeros_like(np.asarray(average_value, dtype=np.float64))
    previous = np.zeros_like(values)
    months = math.ceil(horizon_days / DAYS_PER_MONTH - 1e-9)
    for month in range(1, months + 1):
        days = min(month * DAYS_PER_MONTH, horizon_days)
        current = np.asarray(cumulative_purchases(days / unit_days), dtype=np.float64)
        values += (current - previous) * average_value / (1.0 + monthly_discount_rate) ** month
        previous = current
    return values
