"""Tests of `predict_purchases_file` (touchpoint models predict-purchases)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.lifetime.batch import OUTPUT_COLUMNS, predict_purchases_file


def purchases(people: int = 120, seed: int = 0) -> pd.DataFrame:
    """Half a year of purchases: frequent buyers (ids f*) and rare ones (ids r*), some
    purchases on the same day, ids with leading zeros."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01")
    rows = []
    for person in range(people):
        frequent = person % 2 == 0
        name = f"{'f' if frequent else 'r'}{person:04d}"
        first = int(rng.integers(0, 40))
        gaps = rng.exponential(8.0 if frequent else 60.0, 40).astype(int)
        for day in first + np.concatenate([[0], np.cumsum(gaps)]):
            if day < 182:
                when = str(start + int(day))
                rows.append((name, when, round(float(rng.uniform(5, 50)), 2)))
    return pd.DataFrame(rows, columns=["person_id", "date", "amount"])


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "purchases.csv"
    purchases().to_csv(path, index=False)
    return path


def test_csv_in_csv_out_has_every_person_and_sensible_values(
    csv_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "predictions.csv"
    summary = predict_purchases_file(csv_file, out, horizon_days=60, model="bgnbd")
    result = pd.read_csv(out, dtype={"person_id": str})
    assert tuple(result.columns) == OUTPUT_COLUMNS
    assert set(result["person_id"]) == set(purchases()["person_id"])
    assert result["person_id"].str.startswith(("f0", "r0")).all()  # leading zeros kept
    assert summary.people == len(result) == 120
    assert summary.model == "bgnbd" and summary.spend_model == "gamma_gamma"
    assert summary.expected_purchases_total == pytest.approx(result["expected_purchases"].sum())
    assert (result["p_active"].between(0, 1)).all()
    assert (result["expected_value"] >= 0).all()
    frequent = result["person_id"].str.startswith("f")
    means = result.groupby(frequent)["expected_purchases"].mean()
    assert means[True] > 2 * means[False]  # the planted frequent buyers come out ahead


def test_parquet_and_jsonl_in_parquet_out_auto_model(tmp_path: Path) -> None:
    frame = purchases()
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    frame.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    first = predict_purchases_file(
        tmp_path / "in.parquet", tmp_path / "a.parquet", horizon_days=30, seed=1
    )
    second = predict_purchases_file(
        tmp_path / "in.jsonl", tmp_path / "b.parquet", horizon_days=30, seed=1
    )
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert len(a) == 120 and tuple(a.columns) == OUTPUT_COLUMNS
    pd.testing.assert_frame_equal(a, b)  # same purchases, same seed: same output
    assert first.model == second.model
    assert first.model.startswith(("bgnbd", "pareto_nbd"))


def test_discounting_lowers_expected_value(csv_file: Path, tmp_path: Path) -> None:
    plain = predict_purchases_file(csv_file, tmp_path / "a.csv", horizon_days=365, model="bgnbd")
    discounted = predict_purchases_file(
        csv_file,
        tmp_path / "b.csv",
        horizon_days=365,
        model="bgnbd",
        monthly_discount_rate=0.02,
    )
    assert discounted.expected_value_total < plain.expected_value_total
    assert discounted.expected_purchases_total == plain.expected_purchases_total


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("amount", "-4.5", "negative"),
        ("amount", "free", "cannot read"),
        ("date", "2024-13-45", "cannot read"),
        ("person_id", "", "missing person"),
    ],
)
def test_a_bad_row_names_its_column_and_line(
    tmp_path: Path, column: str, value: str, words: str
) -> None:
    frame = purchases().astype(str)
    frame.loc[9, column] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidInput) as caught:
        predict_purchases_file(path, tmp_path / "out.csv", horizon_days=30)
    assert caught.value.details == {"field": column, "row": 10, "line": 11}
    assert words in caught.value.message and "line 11" in caught.value.message
    assert not (tmp_path / "out.csv").exists()


def test_missing_column_unknown_types_and_model(csv_file: Path, tmp_path: Path) -> None:
    purchases().drop(columns=["date"]).to_csv(tmp_path / "nodate.csv", index=False)
    with pytest.raises(InvalidInput) as caught:
        predict_purchases_file(tmp_path / "nodate.csv", tmp_path / "o.csv", horizon_days=30)
    assert caught.value.details["field"] == "date"
    with pytest.raises(InvalidInput) as caught:
        predict_purchases_file(csv_file, tmp_path / "o.xlsx", horizon_days=30, model="bgnbd")
    assert caught.value.details["field"] == "out"
    with pytest.raises(InvalidInput) as caught:
        predict_purchases_file(tmp_path / "in.txt", tmp_path / "o.csv", horizon_days=30)
    assert caught.value.details["field"] == "transactions"
    with pytest.raises(InvalidInput) as caught:
        predict_purchases_file(csv_file, tmp_path / "o.csv", horizon_days=30, model="magic")
    assert caught.value.details["field"] == "model"
    with pytest.raises(InvalidInput) as caught:
        predict_purchases_file(csv_file, tmp_path / "o.csv", horizon_days=0)
    assert caught.value.details["field"] == "horizon_days"


def test_too_little_data_is_not_enough_data(tmp_path: Path) -> None:
    purchases(people=10).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(NotEnoughData, match="at least 20"):
        predict_purchases_file(tmp_path / "few.csv", tmp_path / "o.csv", horizon_days=30)
    once = pd.DataFrame(
        {"person_id": [f"p{i}" for i in range(30)], "date": "2024-01-05", "amount": 10.0}
    )
    once.to_csv(tmp_path / "once.csv", index=False)
    with pytest.raises(NotEnoughData, match="more than one day"):
        predict_purchases_file(tmp_path / "once.csv", tmp_path / "o.csv", horizon_days=30)
    pd.DataFrame(columns=["person_id", "date", "amount"]).to_csv(tmp_path / "empty.csv")
    with pytest.raises(NotEnoughData):
        predict_purchases_file(tmp_path / "empty.csv", tmp_path / "o.csv", horizon_days=30)


def test_few_repeat_buyers_fall_back_to_mean_amounts(tmp_path: Path) -> None:
    rows = [(f"p{i}", "2024-01-02", 10.0 + i) for i in range(30)]
    rows += [(f"p{i}", "2024-02-01", 20.0) for i in range(3)]  # 3 repeat buyers only
    pd.DataFrame(rows, columns=["person_id", "date", "amount"]).to_csv(
        tmp_path / "thin.csv", index=False
    )
    summary = predict_purchases_file(
        tmp_path / "thin.csv", tmp_path / "o.csv", horizon_days=30, model="pareto_nbd"
    )
    assert summary.spend_model.startswith("blended mean amount")
    result = pd.read_csv(tmp_path / "o.csv")
    assert len(result) == 30 and np.isfinite(result["expected_value"]).all()
