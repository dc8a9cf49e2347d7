"""Feature drift between two windows: the population stability index and the KS test.

On each retrain the job compares the features of the new training window (`current`) with
the previous one (`reference`), per feature:

- PSI, `sum((c - r) * ln(c / r))` over bins, where r and c are the shares of reference and
  current values in each bin. Bins are cut at the reference's deciles (`bins` quantiles;
  repeated cut points merge, so a column that is mostly 0 gets fewer bins), open at both
  ends so every current value lands somewhere. Missing values (NaN, infinities) form one
  more bin when either side has them, so a change in how often a feature is missing is
  drift too. An empty bin's share is raised to `epsilon` so the log stays finite.
  Usual reading: below 0.1 stable, 0.1 to 0.25 moderate shift, above 0.25 significant
  (`PSI_MODERATE`, `PSI_SIGNIFICANT`, `FeatureDrift.level`).
- The two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`) on the present values:
  the largest gap between the two empirical distributions and its p-value. With many rows
  tiny, harmless shifts get small p-values; read it beside PSI.

Degenerate columns give numbers, never NaN: a constant column compares fine (two bins, at
the constant and above); a side without any present value gets KS statistic 0, p-value 1
and a `note`; two empty frames give PSI 0.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from touchpoint.core.errors import InvalidInput

logger = logging.getLogger(__name__)

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """Drift of one feature between a reference and a current window. `reference_rows` and
    `current_rows` count every row, missing values included; `note` says when a figure
    could not be computed and was set to its neutral value."""

    feature: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    reference_rows: int
    current_rows: int
    note: str = ""

    @property
    def level(self) -> Literal["stable", "moderate", "significant"]:
        """The usual reading of PSI: below 0.1 stable, up to 0.25 moderate, above that
        significant."""
        if self.psi > PSI_SIGNIFICANT:
            return "significant"
        if self.psi >= PSI_MODERATE:
            return "moderate"
        return "stable"


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    bins: int = 10,
    epsilon: float = 1e-4,
) -> list[FeatureDrift]:
    """PSI and KS for each of `columns` (default: the numeric columns both frames share, in
    the reference's order), in that order. A missing or non-numeric column is
    `InvalidInput` naming it."""
    if bins < 2:
        raise InvalidInput(f"bins must be at least 2, not {bins}", details={"field": "bins"})
    if not 0 < epsilon < 1:
        raise InvalidInput(
            f"epsilon must be in (0, 1), not {epsilon}", details={"field": "epsilon"}
        )
    if columns is None:
        columns = [
            name
            for name in reference.columns
            if name in current.columns
            and _is_numeric(reference[name])
            and _is_numeric(current[name])
        ]
    results = [
        _column_drift(
            str(name),
            _values(reference, name, "reference"),
            _values(current, name, "current"),
            bins=bins,
            epsilon=epsilon,
        )
        for name in columns
    ]
    drifted = [item.feature for item in results if item.level == "significant"]
    if drifted:
        logger.info("significant drift (PSI > %s) in: %s", PSI_SIGNIFICANT, ", ".join(drifted))
    return results


def population_stability_index(
    reference: npt.NDArray[np.float64],
    current: npt.NDArray[np.float64],
    *,
    bins: int = 10,
    epsilon: float = 1e-4,
) -> float:
    """PSI of two samples (NaN and infinities are the missing bin); see the module docstring.
    0.0 when either sample is empty."""
    if len(reference) == 0 or len(current) == 0:
        return 0.0
    reference_present = reference[np.isfinite(reference)]
    current_present = current[np.isfinite(current)]
    if len(reference_present):
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        edges = np.unique(np.quantile(reference_present, quantiles))
    else:
        edges = np.zeros(0)
    # Right-closed bins (-inf, e1], (e1, e2], ..., (e_last, inf): a constant reference c
    # gives (-inf, c] and (c, inf).
    reference_counts = _bin_counts(reference_present, edges)
    current_counts = _bin_counts(current_present, edges)
    reference_missing = len(reference) - len(reference_present)
    current_missing = len(current) - len(current_present)
    if reference_missing or current_missing:
        reference_counts = np.append(reference_counts, reference_missing)
        current_counts = np.append(current_counts, current_missing)
    reference_shares = np.maximum(reference_counts / len(reference), epsilon)
    current_shares = np.maximum(current_counts / len(current), epsilon)
    terms = (current_shares - reference_shares) * np.log(current_shares / reference_shares)
    return float(terms.sum())


def _bin_counts(
    values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    positions = np.searchsorted(edges, values, side="left")
    return np.bincount(positions, minlength=len(edges) + 1).astype(np.float64)


def _column_drift(
    name: str,
    reference: npt.NDArray[np.float64],
    current: npt.NDArray[np.float64],
    *,
    bins: int,
    epsilon: float,
) -> FeatureDrift:
    from scipy.stats import ks_2samp

    psi = population_stability_index(reference, current, bins=bins, epsilon=epsilon)
    reference_present = reference[np.isfinite(reference)]
    current_present = current[np.isfinite(current)]
    note = ""
    if len(reference_present) == 0 or len(current_present) == 0:
        statistic, pvalue = 0.0, 1.0
        if len(reference_present) == len(current_present) == 0:
            side = "either window"
        else:
            side = "the reference window" if len(reference_present) == 0 else "the current window"
        note = f"no values in {side}; KS not computed"
    else:
        with warnings.catch_warnings():
            # The exact p-value can fail on large tied samples; scipy then falls back to the
            # asymptotic one and says so, which is expected here, not news.
            warnings.simplefilter("ignore", RuntimeWarning)
            test = ks_2samp(reference_present, current_present)
        statistic, pvalue = float(test.statistic), float(test.pvalue)
        if not (math.isfinite(statistic) and math.isfinite(pvalue)):
            statistic, pvalue, note = 0.0, 1.0, "KS undefined for these values"
    return FeatureDrift(
        feature=name,
        psi=psi,
        ks_statistic=statistic,
        ks_pvalue=pvalue,
        reference_rows=len(reference),
        current_rows=len(current),
        note=note,
    )


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def _values(frame: pd.DataFrame, column: str, side: str) -> npt.NDArray[np.float64]:
    if column not in frame.columns:
        raise InvalidInput(
            f"column {column!r} is missing from the {side} frame", details={"field": column}
        )
    series = frame[column]
    if not _is_numeric(series):
        raise InvalidInput(
            f"column {column!r} in the {side} frame must be numeric, not {series.dtype}",
            details={"field": column},
        )
    values: npt.NDArray[np.float64] = series.astype("float64").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return values
