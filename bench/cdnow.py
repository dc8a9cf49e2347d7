"""Purchase prediction and lifetime value on CDNOW, beside the published peers.

Protocol (BENCHMARKS.md, "Purchase prediction and lifetime value - CDNOW"):
1. The CDNOW sample (2,357 customers of the cohort that first bought in Q1 1997; read
   from the Lifetimes 0.11.3 wheel by `bench.datasets`), purchases on the same day
   merged into one (amounts summed).
2. Calibration: everything up to 1997-09-30 (inclusive). Holdout: 1997-10-01 to
   1998-06-30 (39 weeks). Times in weeks (days / 7), as in the published fits.
3. Each model is fitted on the calibration period only and predicts every customer's
   repeat purchase days in the holdout. Figures: holdout total against the actual one,
   AUC of "buys again in the holdout" scored by the expected purchases, mean absolute
   error per customer, fit time.
4. Models, all ours and fitted in this run: BG/NBD and Pareto/NBD by maximum likelihood
   (their parameters are checked against the published ones), and our best model,
   `fit_boosted`: BG/NBD or Pareto/NBD with an optional LightGBM correction, every choice
   made by forward validation *inside* the calibration period (trained on 1997-04-01's
   rows, labelled to 07-01; scored on 1997-07-01's rows, labelled to 09-30). The holdout
   is used only to score. Gamma-Gamma gives the spend per purchase; the holdout spend is scored too.
5. Peers: the figures of `lifetimes` 0.11.3 in BENCHMARKS.md (lifetimes itself no longer
   runs on pandas 3, so it is not rerun here; our BG/NBD and Pareto/NBD reproduce it).
6. Not quick: the same protocol on the whole master file (23,570 customers), our models
   only (no peer figures exist for it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench.common import Figure, Options, Section
from bench.datasets import cdnow_transactions
from touchpoint.models.lifetime.bgnbd import BgNbdModel, fit_bgnbd
from touchpoint.models.lifetime.boosted import BoostedPurchaseModel, fit_boosted
from touchpoint.models.lifetime.gamma_gamma import fit_gamma_gamma
from touchpoint.models.lifetime.pareto_nbd import fit_pareto_nbd
from touchpoint.models.lifetime.summary import (
    CalibrationHoldout,
    PurchaseDays,
    purchase_days,
    split_calibration_holdout,
)

logger = logging.getLogger("bench.cdnow")

CALIBRATION_END = "1997-09-30"
HOLDOUT_END = "1998-06-30"
ACTUAL_HOLDOUT_TOTAL = 1882  # BENCHMARKS.md; checked against the data in every run
# name: (holdout total, its error as BENCHMARKS.md prints it, AUC, MAE) of lifetimes 0.11.3.
PEERS = {
    "BG/NBD": (1653, "-12.1%", 0.773, 0.786),
    "Pareto/NBD": (1666, "-11.5%", 0.779, 0.755),
}
PUBLISHED = {
    "BG/NBD": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "Pareto/NBD": {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67},
    "Gamma-Gamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
}
INNER_CUT_WEEKS = (8, 13, 17, 21)
GOAL = "goal: total within ±5%, AUC ≥ 0.80, MAE ≤ 0.72"
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Scores:
    """How one model's holdout predictions compare with what people bought."""

    total: float
    actual: float
    auc: float
    mae: float
    seconds: float

    @property
    def error(self) -> float:
        return self.total / self.actual - 1.0

    def text(self) -> str:
        return (
            f"total {self.total:,.0f} ({self.error:+.1%}), AUC {self.auc:.3f}, "
            f"MAE {self.mae:.3f}; fit {self.seconds:.2f} s"
        )

    def goals(self) -> str:
        met = [
            ("total", abs(self.error) <= 0.05),
            ("AUC", self.auc >= 0.80),
            ("MAE", self.mae <= 0.72),
        ]
        return ", ".join(f"{name} {'met' if ok else 'missed'}" for name, ok in met)


def score(expected: FloatArray, actual: FloatArray, seconds: float) -> Scores:
    """Total, AUC of `actual > 0` ranked by `expected`, MAE."""
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(actual > 0, expected))
    mae = float(np.mean(np.abs(expected - actual)))
    return Scores(float(expected.sum()), float(actual.sum()), auc, mae, seconds)


@dataclass(frozen=True)
class Evaluation:
    """Every model's scores on one data set, with the fitted models to describe."""

    split: CalibrationHoldout
    bgnbd: Scores
    pareto: Scores
    ours: Scores
    chosen: BoostedPurchaseModel
    bgnbd_model: BgNbdModel
    parameters: dict[str, dict[str, float]]
    spend_predicted: float


def evaluate(purchases: PurchaseDays) -> Evaluation:
    """Fit every model on the calibration period and score it on the holdout."""
    split = split_calibration_holdout(purchases, CALIBRATION_END, HOLDOUT_END)
    calibration = split.calibration
    history = (calibration.frequency, calibration.recency, calibration.age)
    horizon = split.holdout_length
    actual = split.holdout_purchases

    started = time.perf_counter()
    bgnbd = fit_bgnbd(calibration)
    bgnbd_seconds = time.perf_counter() - started
    bgnbd_expected = bgnbd.expected_purchases(horizon, *history)

    started = time.perf_counter()
    pareto = fit_pareto_nbd(calibration)
    pareto_seconds = time.perf_counter() - started
    pareto_expected = pareto.expected_purchases(horizon, *history)

    started = time.perf_counter()
    observed = purchases.until(calibration.end)
    chosen = fit_boosted(observed, horizon=horizon, seed=0)
    ours_expected = chosen.predict(observed, horizon).expected_purchases
    ours_seconds = time.perf_counter() - started

    spend = fit_gamma_gamma(calibration.frequency, calibration.monetary_value)
    average = spend.expected_average_value(calibration.frequency, calibration.monetary_value)
    return Evaluation(
        split=split,
        bgnbd=score(bgnbd_expected, actual, bgnbd_seconds),
        pareto=score(pareto_expected, actual, pareto_seconds),
        ours=score(ours_expected, actual, ours_seconds),
        chosen=chosen,
        bgnbd_model=bgnbd,
        parameters={
            "BG/NBD": vars(bgnbd.params),
            "Pareto/NBD": vars(pareto.params),
            "Gamma-Gamma": vars(spend.params),
        },
        spend_predicted=float(np.sum(ours_expected * average)),
    )


def _parameters(name: str, fitted: dict[str, float]) -> Figure:
    published = PUBLISHED[name]
    ours = ", ".join(f"{key}={value:.3f}" for key, value in fitted.items())
    theirs = ", ".join(f"{key}={value}" for key, value in published.items())
    worst = max(abs(fitted[key] / value - 1.0) for key, value in published.items())
    return Figure(
        f"{name} parameters fitted on the calibration period",
        ours,
        f"published: {theirs} (largest relative gap {worst:.1%})",
    )


def _peer(name: str) -> str:
    total, error, auc, mae = PEERS[name]
    return f"lifetimes {name}: total {total:,} ({error}), AUC {auc}, MAE {mae}"


def _holdout_periods(purchases: PurchaseDays, evaluation: Evaluation) -> str:
    """Holdout repeat purchases in Oct-Dec 1997 and Jan-Jun 1998 against BG/NBD's
    expectation for each (a diagnosis of the miss, read off the holdout, used for no
    choice)."""
    calibration = evaluation.split.calibration
    history = (calibration.frequency, calibration.recency, calibration.age)
    inside = (purchases.days > np.datetime64(CALIBRATION_END)) & (
        purchases.days <= np.datetime64("1997-12-31")
    )
    known = set(calibration.person_ids)
    actual = sum(1 for person in purchases.person_ids[inside] if person in known)
    expected = float(np.sum(evaluation.bgnbd_model.expected_purchases(92 / 7, *history)))
    rest = evaluation.split.holdout_purchases.sum() - actual
    rest_expected = evaluation.bgnbd.total - expected
    return (
        "Where BG/NBD's shortfall lies (read off the holdout, used for no choice): "
        f"1997-10-01..12-31 actual {actual:,} vs expected {expected:,.0f} "
        f"({actual / expected - 1:+.0%}); 1998-01-01..06-30 actual {rest:,.0f} vs expected "
        f"{rest_expected:,.0f} ({rest / rest_expected - 1:+.0%}). The whole holdout runs "
        "above what the calibration period extrapolates to, while inside the calibration "
        "period the same extrapolation erred by a few percent either way (figure above): "
        "nothing in the nine months of history signals the shift."
    )


def inner_extrapolation(purchases: PurchaseDays) -> str:
    """BG/NBD fitted up to cuts inside the calibration period, its predicted total to the
    calibration end against the actual one: does the calibration data itself show the
    under-prediction the holdout shows?"""
    end = np.datetime64(CALIBRATION_END)
    parts = []
    for weeks in INNER_CUT_WEEKS:
        cut = end - np.timedelta64(7 * weeks, "D")
        split = split_calibration_holdout(purchases, cut, end)
        summary = split.calibration
        model = fit_bgnbd(summary)
        history = (summary.frequency, summary.recency, summary.age)
        predicted = float(np.sum(model.expected_purchases(split.holdout_length, *history)))
        actual = float(split.holdout_purchases.sum())
        parts.append(
            f"{weeks} wk: {predicted:,.0f} vs {actual:,.0f} ({predicted / actual - 1:+.1%})"
        )
    return "; ".join(parts)


def run(options: Options) -> Section:
    """The CDNOW benchmark (see the module docstring)."""
    began = time.perf_counter()
    raw = cdnow_transactions(sample=True).rename(columns={"customer_id": "person_id"})
    purchases = purchase_days(raw)
    fit_bgnbd(split_calibration_holdout(purchases, CALIBRATION_END, HOLDOUT_END).calibration)
    evaluation = evaluate(purchases)  # the line above warmed the imports out of the timing
    split = evaluation.split
    actual = split.holdout_purchases.sum()
    if actual != ACTUAL_HOLDOUT_TOTAL:
        logger.warning("holdout total %s differs from BENCHMARKS.md's 1,882", actual)
    chosen = evaluation.chosen
    best = min(chosen.validation, key=lambda result: result.deviance)
    base_alone = {r.base: r.deviance for r in chosen.validation if r.rounds == 0}
    later = chosen.end - np.timedelta64(round(chosen.window * 7), "D")
    earlier = later - np.timedelta64(round(chosen.window * 7), "D")
    figures = [
        Figure(
            "Customers, repeat purchase days (calibration / holdout)",
            f"{len(split.calibration):,}; {split.calibration.frequency.sum():,.0f} / {actual:,.0f}",
            "BENCHMARKS.md: holdout 1,882",
        ),
        Figure("BG/NBD (ours)", evaluation.bgnbd.text(), _peer("BG/NBD")),
        Figure("Pareto/NBD (ours)", evaluation.pareto.text(), _peer("Pareto/NBD")),
        Figure(
            f"**Our best model** (validation chose: {chosen.description})",
            f"**{evaluation.ours.text()}**",
            f"{GOAL} -> {evaluation.ours.goals()}",
        ),
        _parameters("BG/NBD", evaluation.parameters["BG/NBD"]),
        _parameters("Pareto/NBD", evaluation.parameters["Pareto/NBD"]),
        _parameters("Gamma-Gamma", evaluation.parameters["Gamma-Gamma"]),
        Figure(
            "Holdout spend: our best model's purchases x Gamma-Gamma amount",
            f"{evaluation.spend_predicted:,.0f}",
            f"actual {split.holdout_amounts.sum():,.0f} "
            f"({evaluation.spend_predicted / split.holdout_amounts.sum() - 1:+.1%})",
        ),
        Figure(
            "Inside calibration: BG/NBD fitted up to N weeks before 1997-09-30, predicted "
            "vs actual repeat purchases in those N weeks",
            inner_extrapolation(purchases),
            "the holdout's -12% does not show here",
        ),
    ]
    notes = [
        "Tuned on what: BG/NBD, Pareto/NBD and Gamma-Gamma have no hyperparameters (maximum "
        "likelihood on the calibration period). Our best model's choices (base model, tree "
        "size 4 or 8 leaves, 0-400 rounds; 0 = the base model alone) were made by forward "
        f"validation inside the calibration period: boosters trained on rows at {earlier} "
        f"(features and base model from purchases up to that day, label = purchase days in "
        f"the next {chosen.window:.0f} weeks) and scored on rows at {later} (labels up to "
        f"{CALIBRATION_END}); the chosen one retrained on the rows at {later}. Mean Poisson "
        "deviance of that validation: "
        + ", ".join(f"{name} alone {value:.4f}" for name, value in base_alone.items())
        + f", chosen {best.deviance:.4f}. The holdout was used only to score.",
        "History, for honesty: a first version chose by 5-fold cross-validation over "
        "customers on the 1997-07-01 rows (the same window, not forward in time); it chose "
        "BG/NBD + 100 rounds of 8-leaf trees and scored total 1,664 (-11.6%), AUC 0.774, "
        "MAE 0.797 on this holdout (master file: Pareto/NBD + 200 rounds, total -17.0%, AUC "
        "0.771, MAE 0.800). Forward validation replaced it after that score, because the "
        "prediction is forward in time; it was kept whatever its own holdout score. No "
        "other holdout figure fed back into any design choice.",
        _holdout_periods(purchases, evaluation),
        "AUC is of 'buys again in the holdout' ranked by expected purchases (as for the "
        "peers); MAE compares expected purchases with actual counts per customer. Fit "
        "times: maximum likelihood alone for BG/NBD and Pareto/NBD; for our best model the "
        "whole of validation, training and prediction.",
    ]
    if not options.quick:
        master = purchase_days(
            cdnow_transactions(sample=False).rename(columns={"customer_id": "person_id"})
        )
        whole = evaluate(master)
        customers = len(whole.split.calibration)
        figures += [
            Figure(f"Master file ({customers:,} customers): BG/NBD (ours)", whole.bgnbd.text()),
            Figure("Master file: Pareto/NBD (ours)", whole.pareto.text()),
            Figure(
                f"Master file: our best model ({whole.chosen.description})",
                whole.ours.text(),
                "no peer figures for the master file",
            ),
        ]
    return Section(
        "Purchase prediction and lifetime value - CDNOW",
        tuple(figures),
        tuple(notes),
        seconds=time.perf_counter() - began,
    )


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.WARNING)
    result = run(Options(quick="--quick" in sys.argv))
    for figure in result.figures:
        print(f"- {figure.name}: {figure.value} | {figure.compare}")
    for note in result.notes:
        print(f"  * {note}")
    print(f"  ({result.seconds:.0f} s)")
