"""BG/NBD: how many purchases a person will make, and whether they are still a customer.

Fader, Hardie & Lee (2005), "Counting your customers the easy way". While active, a
person buys as a Poisson process of rate lambda ~ Gamma(r, alpha); after each purchase they drop
out with probability p ~ Beta(a, b). Fitted by maximum likelihood on the repeat-purchase
summary (`summary.CustomerSummary`), with the parameters on a log scale so the optimizer
cannot leave the valid region. The conditional expectation uses Euler's transformation
of the hypergeometric function so it stays finite for heavy buyers.

Times are in the summary's unit (weeks by default): alpha and every `t` share it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from touchpoint.core.errors import InvalidInput
from touchpoint.models.lifetime.fitting import (
    ArrayLike,
    FloatArray,
    check_enough_history,
    check_summary_arrays,
    distinct_histories,
    float_arrays,
    maximize_from_starts,
)
from touchpoint.models.lifetime.stored import StoredPurchaseModel

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.lifetime.summary import CustomerSummary

logger = logging.getLogger(__name__)

# Starting points (r, alpha, a, b) tried in turn; the best likelihood wins. alpha is searched in
# units of the data's mean age, so the same starts serve days and weeks.
STARTS = ((1.0, 1.0, 1.0, 1.0), (0.25, 0.1, 0.8, 2.5), (2.0, 0.5, 0.3, 1.0))


@dataclass(frozen=True)
class BgNbdParameters:
    """r, alpha: the Gamma prior of purchase rates; a, b: the Beta prior of drop-out chances."""

    r: float
    alpha: float
    a: float
    b: float


def log_likelihood(
    params: BgNbdParameters, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Each person's log-likelihood of their (frequency, recency, age) under `params`."""
    from scipy.special import betaln, gammaln

    x, t_x, big_t = float_arrays(frequency, recency, age)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    still_active = -(r + x) * np.log(alpha + big_t)
    repeat = x > 0
    dropped = np.full_like(x, -np.inf)
    dropped[repeat] = (
        np.log(a) - np.log(b + x[repeat] - 1) - (r + x[repeat]) * np.log(alpha + t_x[repeat])
    )
    return np.asarray(common + np.logaddexp(still_active, dropped), dtype=np.float64)


@dataclass(frozen=True)
class BgNbdModel(StoredPurchaseModel):
    """A fitted BG/NBD: conditional expectations and the chance a person is still active.
    `unit_days` says what one unit of time is (7: weeks)."""

    KIND: ClassVar[str] = "bgnbd"
    LABEL: ClassVar[str] = "BG/NBD"
    PARAMETERS: ClassVar[type[Any]] = BgNbdParameters

    params: BgNbdParameters
    unit_days: float = 7.0
    log_likelihood: float = float("nan")
    people: int = 0

    @classmethod
    def fit(cls, data: CustomerSummary, /, *, seed: int = 0, penalty: float = 0.0) -> BgNbdModel:
        """`fit_bgnbd` on the summary (deterministic: `seed` is accepted for the `Scorer`
        protocol and unused)."""
        return fit_bgnbd(data, penalty=penalty)

    def score(self, frame: pd.DataFrame) -> FloatArray:
        """The probability each row's person is still active (reads `frequency`, `recency`
        and `age`, in the model's time unit); `expected_purchases` gives counts over a
        horizon."""
        columns = (frame[name].to_numpy(np.float64) for name in ("frequency", "recency", "age"))
        return self.p_alive(*columns)

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike) -> FloatArray:
        """P(still active at `age`): 1 for people with no repeat purchase (in BG/NBD one can
        only drop out right after a purchase)."""
        from scipy.special import expit

        x, t_x, big_t = float_arrays(frequency, recency, age)
        r, alpha, a, b = self.params.r, self.params.alpha, self.params.a, self.params.b
        repeat = x > 0
        log_odds = np.full_like(x, -np.inf)
        xr = x[repeat]
        log_odds[repeat] = (
            np.log(a)
            - np.log(b + xr - 1)
            + (r + xr) * (np.log(alpha + big_t[repeat]) - np.log(alpha + t_x[repeat]))
        )
        return np.asarray(expit(-log_odds), dtype=np.float64)

    def expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
    ) -> FloatArray:
        """Expected purchases in the next `t` units for people with this history."""
        from scipy.special import hyp2f1

        x, _, big_t = float_arrays(frequency, recency, age)
        if t <= 0:
            return np.zeros_like(x)
        r, alpha, a, b = self.params.r, self.params.alpha, self.params.a, self.params.b
        a = a if abs(a - 1.0) > 1e-6 else 1.0 + 1e-6  # the limit a → 1 is finite
        z = t / (alpha + big_t + t)
        # (1 - z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z), Euler-transformed (no huge powers).
        tail = (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
        active_total = (a + b + x - 1.0) / (a - 1.0) * (1.0 - tail)
        return np.asarray(active_total * self.p_alive(x, *float_arrays(recency, age)), np.float64)

    def expected_purchases_new(self, t: ArrayLike) -> FloatArray:
        """Expected purchases of a person in their first `t` units after a first purchase
        at time 0 (the repeat purchases a new customer will make)."""
        from scipy.special import hyp2f1

        (times,) = float_arrays(t)
        r, alpha, a, b = self.params.r, self.params.alpha, self.params.a, self.params.b
        a = a if abs(a - 1.0) > 1e-6 else 1.0 + 1e-6
        z = times / (alpha + times)
        tail = (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b - 1.0, z)
        return np.asarray((a + b - 1.0) / (a - 1.0) * (1.0 - tail), dtype=np.float64)


def fit_bgnbd_arrays(
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    *,
    unit_days: float = 7.0,
    penalty: float = 0.0,
) -> BgNbdModel:
    """Maximum-likelihood BG/NBD on summary arrays. Deterministic (fixed starting points,
    no randomness). `penalty` (≥ 0) adds an L2 pull of the log-parameters towards 0, for
    tiny samples. Fewer than 20 people or no repeat buyer → `NotEnoughData`."""
    x, t_x, big_t = float_arrays(frequency, recency, age)
    if not (len(x) == len(t_x) == len(big_t)):
        raise InvalidInput("frequency, recency and age differ in length", details={"field": "age"})
    check_summary_arrays(x, t_x, big_t)
    check_enough_history("BG/NBD", x, big_t)
    scale = max(float(np.mean(big_t)), 1e-9)  # alpha in units of the mean age during the search
    unique_x, unique_t_x, unique_t, weights = distinct_histories(x, t_x, big_t)
    weights = weights / weights.sum()

    def objective(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        params = BgNbdParameters(r, alpha * scale, a, b)
        value = -float(weights @ log_likelihood(params, unique_x, unique_t_x, unique_t))
        return value + penalty * float(np.sum(log_params**2)) / len(x)

    r, alpha, a, b = (float(v) for v in maximize_from_starts(objective, STARTS))
    params = BgNbdParameters(r=r, alpha=alpha * scale, a=a, b=b)
    total = float(np.sum(log_likelihood(params, x, t_x, big_t)))
    logger.info("BG/NBD fitted on %d people: %s (log-likelihood %.1f)", len(x), params, total)
    return BgNbdModel(params, unit_days=unit_days, log_likelihood=total, people=len(x))


def fit_bgnbd(summary: CustomerSummary, *, penalty: float = 0.0) -> BgNbdModel:
    """Maximum-likelihood BG/NBD on a customer summary (see `fit_bgnbd_arrays`)."""
    return fit_bgnbd_arrays(
        summary.frequency,
        summary.recency,
        summary.age,
        unit_days=summary.unit_days,
        penalty=penalty,
    )
