"""Calibration of classifier scores and the figures that judge probabilities.

Why a module of its own: a probability is only useful when it means what it says, and
neither the map from raw scores to probabilities nor the figures that check it depend on
the learner. Here:

- `Calibration`: raw scores (log-odds) to probabilities, isotonic or Platt, saved as plain
  numbers (its fields are what `PropensityModel.save` writes as JSON);
- `fit_calibration`: learns one from scores and observed 0/1 outcomes;
- `reliability_table` (with its `ReliabilityBin`s and the expected calibration error),
  `auc`, `brier_score`, `log_loss`: what a report shows for any probabilities.

numpy only at import; scikit-learn is imported by the functions that use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Calibration:
    """Raw scores (log-odds, such as LightGBM's) to probabilities: isotonic (`knots_x` ->
    `knots_y`, linear between knots, flat beyond) or Platt (`sigmoid(slope * score +
    intercept)`), clipped to [`floor`, 1 - `floor`] so no probability is exactly 0 or 1."""

    method: Literal["isotonic", "platt"]
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0
    floor: float = 1e-4

    def apply(self, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated probabilities of raw scores."""
        if self.method == "isotonic":
            probabilities = np.interp(scores, self.knots_x, self.knots_y)
        else:
            probabilities = sigmoid(self.slope * scores + self.intercept)
        return np.clip(probabilities, self.floor, 1.0 - self.floor)


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of predicted probability on validation: its range, rows, mean prediction and
    the observed positive rate."""

    lower: float
    upper: float
    count: int
    mean_predicted: float
    observed_rate: float


def reliability_table(
    probabilities: npt.NDArray[np.float64], labels: npt.NDArray[np.int8], bins: int = 10
) -> tuple[tuple[ReliabilityBin, ...], float]:
    """Equal-width bins of predicted probability (empty bins left out) and the expected
    calibration error: the row-weighted mean gap between mean prediction and observed rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    positions = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, bins - 1)
    table = []
    error = 0.0
    for index in range(bins):
        inside = positions == index
        count = int(inside.sum())
        if count == 0:
            continue
        predicted = float(probabilities[inside].mean())
        observed = float(labels[inside].mean())
        error += count / len(labels) * abs(predicted - observed)
        table.append(
            ReliabilityBin(
                round(float(edges[index]), 10),
                round(float(edges[index + 1]), 10),
                count,
                predicted,
                observed,
            )
        )
    return tuple(table), error


def fit_calibration(
    scores: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
    *,
    method: Literal["isotonic", "platt"],
    floor: float,
) -> Calibration:
    """The map from raw `scores` to the observed 0/1 `labels`: isotonic regression, or Platt
    scaling for any other `method`; its probabilities are clipped to [`floor`, 1 - `floor`].
    Fit it on scores from a model that did not see those rows, or it learns overconfidence."""
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        isotonic.fit(scores, labels.astype(np.float64))
        return Calibration(
            method="isotonic",
            knots_x=tuple(float(v) for v in isotonic.X_thresholds_),
            knots_y=tuple(float(v) for v in isotonic.y_thresholds_),
            floor=floor,
        )
    slope, intercept = _platt(scores, labels)
    return Calibration(method="platt", slope=slope, intercept=intercept, floor=floor)


def _platt(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> tuple[float, float]:
    """Platt scaling by Newton's method on the log loss, with Platt's smoothed targets
    ((positives + 1) / (positives + 2) and 1 / (negatives + 2)) so it never overfits to 0/1."""
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    targets = np.where(labels == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    design = np.column_stack([scores, np.ones(len(scores))])
    weights = np.zeros(2)
    for _ in range(100):
        predicted = sigmoid(design @ weights)
        gradient = design.T @ (predicted - targets)
        curvature = design.T @ (design * (predicted * (1 - predicted))[:, None])
        step = np.linalg.solve(curvature + 1e-9 * np.eye(2), gradient)
        weights -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(weights[0]), float(weights[1])


def sigmoid(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Log-odds to probabilities, 1 / (1 + exp(-x)), computed through tanh so large scores
    neither overflow nor warn."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * values)), dtype=np.float64)


def auc(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    """Area under the ROC curve: the chance a random positive outranks a random negative
    (any monotone scores will do; calibration leaves it unchanged up to ties)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def brier_score(probabilities: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    """Mean squared gap between predicted probability and the 0/1 outcome (lower is better)."""
    return float(np.mean((probabilities - labels) ** 2))


def log_loss(probabilities: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    """Mean negative log-likelihood of the outcomes, probabilities clipped to
    [1e-15, 1 - 1e-15] so a confident miss costs a lot but not infinity."""
    clipped = np.clip(probabilities, 1e-15, 1 - 1e-15)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
