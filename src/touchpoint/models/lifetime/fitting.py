"""What the purchase and spend models share: array handling, the checks a summary must
pass, and maximum likelihood from several fixed starting points on a log scale."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData

FloatArray = npt.NDArray[np.float64]
ArrayLike = float | FloatArray
MIN_PEOPLE = 20
LOG_BOUND = 12.0  # every parameter is searched in [e^-12, e^12] times its scale


def float_arrays(*values: ArrayLike) -> list[FloatArray]:
    """Scalars and arrays as float arrays of one common (at least 1-d) shape."""
    arrays = [np.atleast_1d(np.asarray(value, dtype=np.float64)) for value in values]
    return [np.array(array) for array in np.broadcast_arrays(*arrays)]


def check_summary_arrays(frequency: FloatArray, recency: FloatArray, age: FloatArray) -> None:
    """Reject summaries no purchase history can produce (negative counts, recency beyond
    age, repeat purchases with zero recency)."""
    if np.any(frequency < 0) or np.any(frequency != np.round(frequency)):
        raise InvalidInput("frequency must be whole and ≥ 0", details={"field": "frequency"})
    if np.any(recency < 0) or np.any(recency > age + 1e-9):
        raise InvalidInput("recency must be in [0, age]", details={"field": "recency"})
    if np.any((frequency > 0) & (recency <= 0)):
        raise InvalidInput(
            "repeat purchases need a recency > 0 (purchases merged per day?)",
            details={"field": "recency"},
        )


def distinct_histories(
    frequency: FloatArray, recency: FloatArray, age: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The distinct (frequency, recency, age) rows and how many people share each: the
    likelihood is a weighted sum over them, several times cheaper than over people."""
    rows, counts = np.unique(np.column_stack([frequency, recency, age]), axis=0, return_counts=True)
    return rows[:, 0], rows[:, 1], rows[:, 2], counts.astype(np.float64)


def check_enough_history(model: str, frequency: FloatArray, age: FloatArray) -> None:
    """`NotEnoughData` naming `model` when the summary cannot identify a purchase model:
    too few people, no repeat buyer, or everyone new on the last day."""
    if len(frequency) < MIN_PEOPLE:
        raise NotEnoughData(f"{model} needs at least {MIN_PEOPLE} people, got {len(frequency)}")
    if not np.any(frequency > 0):
        raise NotEnoughData(f"{model} needs at least one repeat buyer, there is none")
    if np.all(age <= 0):
        raise NotEnoughData("every person bought for the first time on the last day")


def maximize_from_starts(
    negative_log_likelihood: Callable[[FloatArray], float],
    starts: Sequence[Sequence[float]],
) -> FloatArray:
    """The parameters (not their logs) minimizing `negative_log_likelihood` of the
    log-parameters, the best of L-BFGS-B runs from each start. Deterministic: fixed starts,
    no randomness; a non-finite objective counts as a very bad one."""
    from scipy.optimize import minimize

    def objective(log_params: FloatArray) -> float:
        value = negative_log_likelihood(log_params)
        return value if np.isfinite(value) else 1e300

    best: Any = None
    for start in starts:
        guess = np.log(np.asarray(start, dtype=np.float64))
        bounds = [(-LOG_BOUND, LOG_BOUND)] * len(guess)
        result = minimize(objective, guess, method="L-BFGS-B", bounds=bounds)
        if best is None or result.fun < best.fun:
            best = result
    return np.asarray(np.exp(best.x), dtype=np.float64)
