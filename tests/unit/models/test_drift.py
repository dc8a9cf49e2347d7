"""Feature drift: PSI and KS on same and shifted distributions, degenerate columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.drift import (
    PSI_SIGNIFICANT,
    FeatureDrift,
    feature_drift,
    population_stability_index,
)


def window(seed: int, *, shift: float = 0.0, n: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "profile_id": [f"p{i}" for i in range(n)],
            "monetary": rng.lognormal(3.0 + shift, 1.0, n),
            "views_7d": rng.poisson(2.0 + 4 * shift, n),
            "orders_30d": np.where(rng.random(n) < 0.8 - 0.5 * shift, 0, rng.poisson(2, n)),
        }
    )


def by_feature(results: list[FeatureDrift]) -> dict[str, FeatureDrift]:
    return {item.feature: item for item in results}


def test_same_distribution_is_stable() -> None:
    results = feature_drift(window(1), window(2), ["monetary", "views_7d", "orders_30d"])
    assert [item.feature for item in results] == ["monetary", "views_7d", "orders_30d"]
    for item in results:
        assert item.psi < 0.02, item
        assert item.ks_pvalue > 0.05, item
        assert item.level == "stable"
        assert item.reference_rows == item.current_rows == 4000


def test_shifted_distribution_is_significant() -> None:
    results = by_feature(feature_drift(window(1), window(2, shift=0.6)))
    assert set(results) == {"monetary", "views_7d", "orders_30d"}  # numeric columns only
    for item in results.values():
        assert item.psi > PSI_SIGNIFICANT, item
        assert item.ks_pvalue < 1e-6, item
        assert item.level == "significant"


def test_moderate_shift_reads_as_moderate() -> None:
    assert FeatureDrift("x", 0.15, 0.1, 0.01, 10, 10).level == "moderate"
    assert FeatureDrift("x", 0.05, 0.1, 0.01, 10, 10).level == "stable"


def test_constant_columns_give_numbers_not_nan() -> None:
    reference = pd.DataFrame({"cart_adds_30d": np.zeros(500)})
    same = feature_drift(reference, pd.DataFrame({"cart_adds_30d": np.zeros(300)}))[0]
    assert (same.psi, same.ks_statistic, same.ks_pvalue) == (0.0, 0.0, 1.0)
    moved = feature_drift(reference, pd.DataFrame({"cart_adds_30d": np.ones(300)}))[0]
    assert moved.psi > PSI_SIGNIFICANT
    assert moved.ks_statistic == 1.0


def test_empty_and_all_missing_columns_are_neutral_with_a_note() -> None:
    empty = pd.DataFrame({"average_order_value": pd.Series([], dtype="float64")})
    result = feature_drift(empty, empty)[0]
    assert (result.psi, result.ks_statistic, result.ks_pvalue) == (0.0, 0.0, 1.0)
    assert "either" in result.note
    missing = pd.DataFrame({"average_order_value": [np.nan] * 50})
    present = pd.DataFrame({"average_order_value": np.arange(50.0)})
    one_sided = feature_drift(missing, present)[0]
    assert "reference" in one_sided.note
    assert one_sided.psi > PSI_SIGNIFICANT  # every value moved out of the missing bin
    for value in (one_sided.psi, one_sided.ks_statistic, one_sided.ks_pvalue):
        assert math.isfinite(value)


def test_a_change_in_the_missing_share_is_drift() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(50, 10, 2000)
    reference = pd.DataFrame(
        {"average_order_value": np.where(rng.random(2000) < 0.1, np.nan, values)}
    )
    current = pd.DataFrame(
        {"average_order_value": np.where(rng.random(2000) < 0.6, np.nan, values)}
    )
    result = feature_drift(reference, current)[0]
    assert result.psi > PSI_SIGNIFICANT
    assert result.ks_pvalue > 0.01  # the present values did not move


def test_psi_is_zero_on_identical_samples_and_an_empty_side() -> None:
    sample = np.random.default_rng(0).normal(size=1000)
    assert population_stability_index(sample, sample) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index(sample, np.zeros(0)) == 0.0


def test_bad_columns_are_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        feature_drift(window(1), window(2).drop(columns=["views_7d"]), ["views_7d"])
    assert caught.value.details["field"] == "views_7d"
    with pytest.raises(InvalidInput) as caught:
        feature_drift(window(1), window(2), ["profile_id"])
    assert caught.value.details["field"] == "profile_id"
