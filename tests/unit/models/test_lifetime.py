"""Tests of the purchase and spend models (touchpoint.models.lifetime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.lifetime.bgnbd import (
    BgNbdModel,
    BgNbdParameters,
    fit_bgnbd_arrays,
)
from touchpoint.models.lifetime.bgnbd import log_likelihood as bgnbd_log_likelihood
from touchpoint.models.lifetime.boosted import BoostedPurchaseModel, fit_boosted, poisson_deviance
from touchpoint.models.lifetime.gamma_gamma import (
    GammaGammaModel,
    GammaGammaParameters,
    fit_gamma_gamma,
    lifetime_value,
)
from touchpoint.models.lifetime.gamma_gamma import log_likelihood as gamma_gamma_log_likelihood
from touchpoint.models.lifetime.pareto_nbd import (
    ParetoNbdModel,
    ParetoNbdParameters,
    _log_integral,
    fit_pareto_nbd,
)
from touchpoint.models.lifetime.summary import (
    CustomerSummary,
    count_purchase_days,
    purchase_days,
    split_calibration_holdout,
    summarize,
)

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def simulate_bgnbd(params: BgNbdParameters, people: int, seed: int) -> Arrays:
    """(frequency, recency, age) of people following BG/NBD, ages 20-40 weeks."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(params.r, 1.0 / params.alpha, people)
    drop = rng.beta(params.a, params.b, people)
    ages = rng.uniform(20.0, 40.0, people)
    frequency, recency = np.zeros(people), np.zeros(people)
    for person in range(people):
        now, count = 0.0, 0
        while True:
            now += rng.exponential(1.0 / rates[person])
            if now > ages[person]:
                break
            count += 1
            recency[person] = now
            if rng.random() < drop[person]:
                break
        frequency[person] = count
    return frequency, recency, ages


def simulate_pareto(params: ParetoNbdParameters, people: int, seed: int) -> Arrays:
    """(frequency, recency, age) of people following Pareto/NBD, ages 20-40 weeks."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(params.r, 1.0 / params.alpha, people)
    lifetimes = rng.exponential(1.0 / rng.gamma(params.s, 1.0 / params.beta, people))
    ages = rng.uniform(20.0, 40.0, people)
    frequency, recency = np.zeros(people), np.zeros(people)
    for person in range(people):
        horizon = min(ages[person], lifetimes[person])
        times = np.cumsum(rng.exponential(1.0 / rates[person], 200))
        times = times[times <= horizon]
        frequency[person] = len(times)
        recency[person] = times[-1] if len(times) else 0.0
    return frequency, recency, ages


# --- summary ---------------------------------------------------------------------------


def hand_made() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": ["a", "a", "a", "a", "b", "c", "c"],
            "date": [
                "2024-01-01",
                "2024-01-01T18:00:00",  # same day: merged with the first
                "2024-01-15",
                "2024-02-12",
                "2024-01-29",
                "2024-01-08",
                "2024-03-04",  # after the calibration end below
            ],
            "amount": [10.0, 5.0, 20.0, 30.0, 7.0, 8.0, 9.0],
        }
    )


def test_summary_merges_same_day_and_counts_in_weeks() -> None:
    purchases = purchase_days(hand_made())
    assert len(purchases.days) == 6  # a's two purchases of 2024-01-01 are one
    summary = summarize(purchases, "2024-02-26")
    assert list(summary.person_ids) == ["a", "b", "c"]
    assert list(summary.frequency) == [2.0, 0.0, 0.0]
    assert summary.recency[0] == pytest.approx(6.0)  # 01-01 to 02-12
    assert list(summary.age) == pytest.approx([8.0, 4.0, 7.0])
    assert summary.monetary_value[0] == pytest.approx(25.0)  # repeat days only: 20, 30
    assert summary.monetary_value[1] == 0.0
    assert summary.repeat_buyers == 1
    in_days = summarize(purchases, "2024-02-26", unit_days=1.0)
    assert in_days.age[0] == 56.0


def test_calibration_holdout_split_counts_later_purchase_days() -> None:
    split = split_calibration_holdout(purchase_days(hand_made()), "2024-02-26", "2024-04-01")
    assert list(split.holdout_purchases) == [0.0, 0.0, 1.0]
    assert list(split.holdout_amounts) == [0.0, 0.0, 9.0]
    assert split.holdout_length == pytest.approx(5.0)
    ids = np.array(["c", "z", "a"], dtype=object)
    counted = count_purchase_days(purchase_days(hand_made()), ids, "2024-01-01", "2024-03-31")
    assert list(counted) == [2.0, 0.0, 2.0]  # after 01-01: c twice, a on 01-15 and 02-12
    with pytest.raises(InvalidInput):
        split_calibration_holdout(purchase_days(hand_made()), "2024-02-26", "2024-02-01")


def test_people_who_start_after_the_end_are_left_out() -> None:
    summary = summarize(purchase_days(hand_made()), "2024-01-05")
    assert list(summary.person_ids) == ["a"]
    assert summary.frequency[0] == 0.0


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("date", "not a date", "cannot read"),
        ("amount", "-3", "negative"),
        ("amount", "ten", "cannot read"),
        ("person_id", None, "missing person"),
    ],
)
def test_bad_rows_name_the_column_and_row(column: str, value: object, words: str) -> None:
    frame = hand_made().astype({"amount": object})
    frame.loc[4, column] = value
    with pytest.raises(InvalidInput) as caught:
        purchase_days(frame, header_lines=1)
    assert caught.value.details["field"] == column
    assert caught.value.details["row"] == 5
    assert caught.value.details["line"] == 6
    assert words in caught.value.message and column in caught.value.message


def test_missing_column_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        purchase_days(hand_made().drop(columns=["amount"]))
    assert caught.value.details["field"] == "amount"


# --- BG/NBD ----------------------------------------------------------------------------


def test_bgnbd_recovers_the_parameters_it_simulated() -> None:
    truth = BgNbdParameters(r=0.5, alpha=4.0, a=0.8, b=2.5)
    frequency, recency, age = simulate_bgnbd(truth, 4000, seed=7)
    fitted = fit_bgnbd_arrays(frequency, recency, age).params
    assert fitted.r / fitted.alpha == pytest.approx(truth.r / truth.alpha, rel=0.1)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(0.8 / 3.3, rel=0.2)
    assert fitted.r == pytest.approx(truth.r, rel=0.25)
    assert fitted.alpha == pytest.approx(truth.alpha, rel=0.3)
    # The truth is about as likely as the fit (the optimizer found the maximum).
    best = bgnbd_log_likelihood(fitted, frequency, recency, age).sum()
    assert best >= bgnbd_log_likelihood(truth, frequency, recency, age).sum()


def test_bgnbd_expected_purchases_match_the_textbook_formula_and_are_sensible() -> None:
    from scipy.special import hyp2f1

    model = BgNbdModel(BgNbdParameters(r=0.243, alpha=4.414, a=0.793, b=2.426))
    x, t_x, age = np.array([0.0, 2.0, 5.0]), np.array([0.0, 30.0, 35.0]), np.array([38.0] * 3)
    r, alpha, a, b, t = 0.243, 4.414, 0.793, 2.426, 39.0
    textbook = (
        (a + b + x - 1)
        / (a - 1)
        * (
            1
            - ((alpha + age) / (alpha + age + t)) ** (r + x)
            * hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + age + t))
        )
        / (1 + (x > 0) * a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x))
    )
    assert model.expected_purchases(t, x, t_x, age) == pytest.approx(textbook, rel=1e-9)

    horizons = [model.expected_purchases(weeks, 3, 30.0, 38.0)[0] for weeks in (1, 10, 39, 100)]
    assert np.all(np.diff(horizons) > 0)
    more = model.expected_purchases(39, np.array([1.0, 3.0, 6.0]), 30.0, 38.0)
    assert np.all(np.diff(more) > 0)  # more purchases, same recency: more expected
    later = model.expected_purchases(39, 3.0, np.array([5.0, 20.0, 37.0]), 38.0)
    assert np.all(np.diff(later) > 0)  # a more recent last purchase: more expected
    alive = model.p_alive(np.array([0.0, 3.0, 3.0]), np.array([0.0, 5.0, 37.0]), 38.0)
    assert alive[0] == 1.0 and 0 < alive[1] < alive[2] < 1
    assert model.expected_purchases(0.0, x, t_x, age) == pytest.approx(0.0)
    heavy = model.expected_purchases(39, 80.0, 37.9, 38.0)
    assert np.isfinite(heavy) and heavy > 50  # no overflow for heavy buyers
    assert model.expected_purchases_new(np.array([10.0, 40.0]))[1] > 0


def test_bgnbd_fit_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    arrays = simulate_bgnbd(BgNbdParameters(0.3, 3.0, 0.7, 2.0), 500, seed=1)
    first, second = fit_bgnbd_arrays(*arrays), fit_bgnbd_arrays(*arrays)
    assert first == second
    first.save(tmp_path / "bgnbd")
    loaded = BgNbdModel.load(tmp_path / "bgnbd")
    assert loaded.params == first.params and loaded.people == 500
    with pytest.raises(InvalidInput):
        BgNbdModel.from_dict({"model": "pareto_nbd", "params": {}})
    with pytest.raises(InvalidInput):
        BgNbdModel.from_dict({"model": "bgnbd", "params": {"r": 1.0}})


def test_too_little_data_is_not_enough_data() -> None:
    with pytest.raises(NotEnoughData, match="at least 20"):
        fit_bgnbd_arrays(np.ones(5), np.ones(5), np.full(5, 3.0))
    with pytest.raises(NotEnoughData, match="repeat buyer"):
        fit_bgnbd_arrays(np.zeros(50), np.zeros(50), np.full(50, 3.0))
    with pytest.raises(NotEnoughData):
        fit_gamma_gamma(np.ones(5), np.full(5, 10.0))
    summary = summarize(purchase_days(hand_made()))
    with pytest.raises(NotEnoughData):
        fit_pareto_nbd(summary)
    with pytest.raises(InvalidInput):
        fit_bgnbd_arrays(np.array([1.0] * 30), np.array([5.0] * 30), np.array([3.0] * 30))


# --- Pareto/NBD ------------------------------------------------------------------------


def test_pareto_integral_matches_quadrature() -> None:
    from scipy.integrate import quad

    for params in (
        ParetoNbdParameters(0.55, 10.58, 0.61, 11.67),
        ParetoNbdParameters(0.5, 3, 2, 9),
    ):
        for x, t_x, age in ((0.0, 0.0, 30.0), (3.0, 12.0, 30.0), (12.0, 29.0, 30.0)):
            total = params.r + params.s + x

            def integrand(
                tau: float, x: float = x, total: float = total, params: ParetoNbdParameters = params
            ) -> float:
                return (
                    total
                    * (params.alpha + tau) ** -(params.r + x)
                    * (params.beta + tau) ** -(params.s + 1)
                )

            exact = np.log(quad(integrand, t_x, age, epsabs=0, epsrel=1e-12)[0])
            ours = _log_integral(params, np.array([x]), np.array([t_x]), np.array([age]))[0]
            assert ours == pytest.approx(exact, rel=1e-7)


def test_pareto_recovers_rates_and_behaves(tmp_path: Path) -> None:
    truth = ParetoNbdParameters(r=0.6, alpha=5.0, s=0.8, beta=20.0)
    frequency, recency, age = simulate_pareto(truth, 3000, seed=3)
    summary = CustomerSummary(
        np.arange(3000).astype(str).astype(object),
        frequency,
        recency,
        age,
        np.zeros(3000),
        np.datetime64("2024-01-01"),
    )
    model = fit_pareto_nbd(summary)
    assert model.params.r / model.params.alpha == pytest.approx(0.12, rel=0.1)
    assert model.params.r == pytest.approx(truth.r, rel=0.3)
    alive = model.p_alive(
        np.array([0.0, 0.0, 4.0]), np.array([0.0, 0.0, 29.0]), np.array([2.0, 30.0, 30.0])
    )
    assert alive[0] > alive[1]  # a one-time buyer silent for long is probably gone
    assert np.all((alive > 0) & (alive <= 1))
    horizons = [model.expected_purchases(w, 4.0, 29.0, 30.0)[0] for w in (1, 10, 50)]
    assert np.all(np.diff(horizons) > 0)
    model.save(tmp_path / "pareto")
    assert ParetoNbdModel.load(tmp_path / "pareto") == model


# --- Gamma-Gamma and lifetime value ----------------------------------------------------


def test_gamma_gamma_recovers_spend_and_shrinks() -> None:
    rng = np.random.default_rng(11)
    p, q, gamma = 6.0, 4.0, 15.0
    people = 3000
    rates = rng.gamma(q, 1.0 / gamma, people)
    counts = rng.integers(1, 8, people).astype(float)
    means = np.array(
        [rng.gamma(p, 1.0 / rate, int(n)).mean() for rate, n in zip(rates, counts, strict=True)]
    )
    model = fit_gamma_gamma(np.append(counts, 0.0), np.append(means, 0.0))  # the 0 is ignored
    assert model.repeat_buyers == people
    assert model.population_mean == pytest.approx(p * gamma / (q - 1), rel=0.1)
    truth = GammaGammaParameters(p, q, gamma)
    assert model.log_likelihood >= gamma_gamma_log_likelihood(truth, counts, means).sum()
    expected = model.expected_average_value(
        np.array([0.0, 1.0, 50.0]), np.array([0.0, 100.0, 100.0])
    )
    assert expected[0] == pytest.approx(model.population_mean)
    assert expected[0] < expected[1] < expected[2] < 100.0  # shrunk less with more purchases
    assert GammaGammaModel.from_dict(model.to_dict()) == model
    heavy = GammaGammaModel(GammaGammaParameters(1.0, 0.5, 1.0))
    with pytest.raises(InvalidInput):
        heavy.expected_average_value(np.ones(2), np.ones(2))


def test_lifetime_value_sums_months_and_discounts() -> None:
    model = BgNbdModel(BgNbdParameters(r=0.243, alpha=4.414, a=0.793, b=2.426))
    x, t_x, age = np.array([0.0, 4.0]), np.array([0.0, 30.0]), np.array([38.0, 38.0])
    values = np.array([30.0, 50.0])

    def cumulative(t: float) -> np.ndarray:
        return model.expected_purchases(t, x, t_x, age)

    plain = lifetime_value(cumulative, values, horizon_days=365)
    assert plain == pytest.approx(cumulative(365 / 7) * values)
    discounted = lifetime_value(cumulative, values, horizon_days=365, monthly_discount_rate=0.01)
    assert np.all(discounted < plain) and np.all(discounted > 0.85 * plain)
    assert lifetime_value(cumulative, values, horizon_days=0) == pytest.approx(0.0)
    with pytest.raises(InvalidInput):
        lifetime_value(cumulative, values, horizon_days=30, monthly_discount_rate=-0.1)


# --- the boosted model -----------------------------------------------------------------


def planted_purchases(people: int, seed: int) -> pd.DataFrame:
    """A year of purchases where the amount someone spends reveals their purchase rate
    (a pattern the summary-only models cannot see) and nobody drops out."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01")
    rows: list[tuple[str, np.datetime64, float]] = []
    for person in range(people):
        rate = rng.choice([0.01, 0.06])  # purchases a day: rare or frequent buyers
        amount = 20.0 if rate < 0.03 else 80.0
        first = int(rng.integers(0, 60))
        days = first + np.cumsum(rng.exponential(1.0 / rate, 80)).astype(int)
        days = np.concatenate([[first], days[days < 365]])
        rows += [(f"p{person}", start + int(day), amount * rng.uniform(0.9, 1.1)) for day in days]
    return pd.DataFrame(rows, columns=["person_id", "date", "amount"])


def test_boosted_learns_a_planted_pattern_and_is_deterministic(tmp_path: Path) -> None:
    frame = planted_purchases(240, seed=5)
    purchases = purchase_days(frame)
    end = np.datetime64("2023-09-30")
    observed = purchases.until(end)
    model = fit_boosted(observed, horizon=13.0, seed=0)
    again = fit_boosted(observed, horizon=13.0, seed=0)
    assert model.booster_text == again.booster_text and model.description == again.description
    assert {result.base for result in model.validation} == {"bgnbd", "pareto_nbd"}
    prediction = model.predict(observed, 13.0)
    assert np.all(np.isfinite(prediction.expected_purchases))
    assert np.all(prediction.expected_purchases >= 0)
    assert np.array_equal(
        prediction.expected_purchases, again.predict(observed, 13.0).expected_purchases
    )

    future = split_calibration_holdout(purchases, end, end + np.timedelta64(91, "D"))
    assert list(future.calibration.person_ids) == list(prediction.person_ids)
    base = model.base.expected_purchases(
        13.0, *(prediction.summary.frequency, prediction.summary.recency, prediction.summary.age)
    )
    actual = future.holdout_purchases
    boosted_deviance = poisson_deviance(prediction.expected_purchases, actual)
    assert model.booster_text is not None and model.rounds > 0
    assert boosted_deviance < 0.95 * poisson_deviance(base, actual)

    model.save(tmp_path / "model")
    loaded = BoostedPurchaseModel.load(tmp_path / "model")
    assert loaded == model
    assert np.array_equal(
        loaded.predict(observed, 13.0).expected_purchases, prediction.expected_purchases
    )


def test_boosted_falls_back_to_the_base_model_on_a_short_history() -> None:
    rng = np.random.default_rng(2)
    rows = [
        (f"p{person}", np.datetime64("2024-01-01") + int(day), 10.0)
        for person in range(40)
        for day in np.unique(rng.integers(0, 9, 3))
    ]
    purchases = purchase_days(pd.DataFrame(rows, columns=["person_id", "date", "amount"]))
    model = fit_boosted(purchases, horizon=4.0, seed=0)
    assert model.booster_text is None
    assert model.predict(purchases, 4.0).expected_purchases.shape == (40,)
