"""Pareto/NBD: BG/NBD's older sibling, where people may drop out at any time.

Schmittlein, Morrison & Colombo (1987); likelihood as in Fader, Hardie & Lee (2005), "A
note on deriving the Pareto/NBD model and related expressions". While active, a person
buys at Poisson rate lambda ~ Gamma(r, alpha) and drops out at exponential rate mu ~ Gamma(s, beta),
at any time (not only after a purchase). So, unlike BG/NBD, a one-time buyer who has
been silent for long is probably gone: its `p_alive` is what `p_active` should mean.

Fitted by maximum likelihood on log-parameters; the likelihood's integral uses the
Gaussian hypergeometric closed form in log space. Times are in the summary's unit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

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

# (r, alpha, s, beta) starts, alpha and beta in units of the data's mean age.
STARTS = ((1.0, 1.0, 1.0, 1.0), (0.5, 0.3, 0.6, 0.3), (0.25, 0.1, 2.0, 2.0))


@dataclass(frozen=True)
class ParetoNbdParameters:
    """r, alpha: the Gamma prior of purchase rates; s, beta: the Gamma prior of drop-out rates."""

    r: float
    alpha: float
    s: float
    beta: float


def _log_integral(
    params: ParetoNbdParameters, x: FloatArray, t_x: FloatArray, big_t: FloatArray
) -> FloatArray:
    """The note's log A0: log of (r+s+x) times the integral from t_x to T of
    (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau."""
    from scipy.special import hyp2f1

    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    second: float | FloatArray
    if alpha >= beta:
        larger, second = alpha, s + 1.0
    else:
        larger, second = beta, r + x
    gap = abs(alpha - beta)
    total = r + s + x
    near = larger + t_x
    far = larger + big_t
    at_recency = hyp2f1(total, second, total + 1.0, gap / near)
    at_age = hyp2f1(total, second, total + 1.0, gap / far)
    # log(F1/near^k - F2/far^k), computed as log(F1 far^k - F2 near^k) - k log(near far).
    first = np.log(at_recency) + total * np.log(far)
    second_term = np.log(at_age) + total * np.log(near)
    with np.errstate(divide="ignore", invalid="ignore"):
        difference = first + np.log1p(-np.exp(np.minimum(second_term - first, 0.0)))
    return np.asarray(difference - total * (np.log(near) + np.log(far)), dtype=np.float64)


def log_likelihood(
    params: ParetoNbdParameters, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Each person's log-likelihood of their (frequency, recency, age) under `params`."""
    from scipy.special import gammaln

    x, t_x, big_t = float_arrays(frequency, recency, age)
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    # Extreme trial parameters can overflow the hypergeometric function; the result is then
    # not finite and the optimizer steps back, so the warnings are noise.
    with np.errstate(all="ignore"):
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        active = -(r + x) * np.log(alpha + big_t) - s * np.log(beta + big_t)
        dropped = np.log(s) - np.log(r + s + x) + _log_integral(params, x, t_x, big_t)
        return np.asarray(common + np.logaddexp(active, dropped), dtype=np.float64)


@dataclass(frozen=True)
class ParetoNbdModel(StoredPurchaseModel):
    """A fitted Pareto/NBD: conditional expectations and the chance a person is active."""

    KIND: ClassVar[str] = "pareto_nbd"
    LABEL: ClassVar[str] = "Pareto/NBD"
    PARAMETERS: ClassVar[type[Any]] = ParetoNbdParameters

    params: ParetoNbdParameters
    unit_days: float = 7.0
    log_likelihood: float = float("nan")
    people: int = 0

    @classmethod
    def fit(cls, data: CustomerSummary, /, *, seed: int = 0) -> ParetoNbdModel:
        """`fit_pareto_nbd` on the summary (deterministic: `seed` is accepted for the `Scorer`
        protocol and unused)."""
        return fit_pareto_nbd(data)

    def score(self, frame: pd.DataFrame) -> FloatArray:
        """The probability each row's person is still active (reads `frequency`, `recency`
        and `age`, in the model's time unit); `expected_purchases` gives counts over a
        horizon."""
        columns = (frame[name].to_numpy(np.float64) for name in ("frequency", "recency", "age"))
        return self.p_alive(*columns)

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike) -> FloatArray:
        """P(still active at `age`) given the history."""
        from scipy.special import expit

        x, t_x, big_t = float_arrays(frequency, recency, age)
        r, alpha, s, beta = self.params.r, self.params.alpha, self.params.s, self.params.beta
        log_odds = (
            np.log(s)
            - np.log(r + s + x)
            + (r + x) * np.log(alpha + big_t)
            + s * np.log(beta + big_t)
            + _log_integral(self.params, x, t_x, big_t)
        )
        return np.asarray(expit(-np.nan_to_num(log_odds, nan=-np.inf)), dtype=np.float64)

    def expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
    ) -> FloatArray:
        """Expected purchases in the next `t` units for people with this history."""
        x, t_x, big_t = float_arrays(frequency, recency, age)
        if t <= 0:
            return np.zeros_like(x)
        r, alpha, s, beta = self.params.r, self.params.alpha, self.params.s, self.params.beta
        # The integral over the horizon of ((beta+T)/(beta+T+tau))^s, divided by (beta+T),
        # written so that s = 1 needs no division by s - 1.
        log_growth = np.log1p(t / (beta + big_t))
        shrink = s - 1.0
        if abs(shrink) < 1e-9:
            horizon_factor = log_growth
        else:
            horizon_factor = -np.expm1(-shrink * log_growth) / shrink
        rate = (r + x) / (alpha + big_t)
        active_total = rate * (beta + big_t) * horizon_factor
        return np.asarray(active_total * self.p_alive(x, t_x, big_t), dtype=np.float64)


def fit_pareto_nbd(summary: CustomerSummary) -> ParetoNbdModel:
    """Maximum-likelihood Pareto/NBD on a customer summary. Deterministic (fixed starts).
    Fewer than 20 people or no repeat buyer → `NotEnoughData`."""
    x, t_x, big_t = summary.frequency, summary.recency, summary.age
    check_summary_arrays(x, t_x, big_t)
    check_enough_history("Pareto/NBD", x, big_t)
    scale = max(float(np.mean(big_t)), 1e-9)
    unique_x, unique_t_x, unique_t, weights = distinct_histories(x, t_x, big_t)
    weights = weights / weights.sum()

    def objective(log_params: FloatArray) -> float:
        r, alpha, s, beta = np.exp(log_params)
        params = ParetoNbdParameters(r, alpha * scale, s, beta * scale)
        return -float(weights @ log_likelihood(params, unique_x, unique_t_x, unique_t))

    r, alpha, s, beta = (float(v) for v in maximize_from_starts(objective, STARTS))
    params = ParetoNbdParameters(r=r, alpha=alpha * scale, s=s, beta=beta * scale)
    total = float(np.sum(log_likelihood(params, x, t_x, big_t)))
    logger.info("Pareto/NBD fitted on %d people: %s (log-likelihood %.1f)", len(x), params, total)
    return ParetoNbdModel(params, summary.unit_days, total, len(x))
