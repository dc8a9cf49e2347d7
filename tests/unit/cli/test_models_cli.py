"""`touchpoint sql`, `train`, `models …` from the command line, on temporary data."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.conftest import TEST_CONFIG
from touchpoint.cli.main import app
from touchpoint.models.registry import ModelRegistry, ModelVersion

runner = CliRunner()


def config(tmp_path: Path) -> list[str]:
    path = tmp_path / "touchpoint.yaml"
    path.write_text(yaml.safe_dump(TEST_CONFIG, sort_keys=False))
    return ["--config", str(path), "--data-dir", str(tmp_path / "data")]


def test_sql_answers_from_the_warehouse_and_names_a_bad_query(tmp_path: Path) -> None:
    options = config(tmp_path)
    result = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM events", *options])
    assert result.exit_code == 0, result.output
    assert "n" in result.output and "1 rows" in result.output
    csv_out = runner.invoke(app, ["sql", "SELECT 1 AS one", "--format", "csv", *options])
    assert csv_out.exit_code == 0 and '"one"' in csv_out.output
    bad = runner.invoke(app, ["sql", "SELECT nope FROM events", *options])
    assert bad.exit_code == 1 and "nope" in bad.output


def test_train_on_a_new_workspace_skips_with_reasons(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "rfm", "lifetime", *config(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "events yet" in result.output
    unknown = runner.invoke(app, ["train", "magic", *config(tmp_path)])
    assert unknown.exit_code == 1 and "unknown model 'magic'" in unknown.output


def test_promote_and_rollback_through_the_registry(tmp_path: Path) -> None:
    options = config(tmp_path)
    registry = ModelRegistry(tmp_path / "data" / "models")
    for auc in (0.7, 0.8, 0.6):
        registry.register(
            ModelVersion("churn", 0, "2026-11-24T00:00:00.000Z", "lightgbm",
                         metrics={"auc": auc}, metric="auc"),
            lambda directory: (directory / "model.txt").write_text("x"),
        )  # fmt: skip
    assert runner.invoke(app, ["models", "promote", "churn", "1", *options]).exit_code == 0
    assert runner.invoke(app, ["models", "promote", "churn", "2", *options]).exit_code == 0
    worse = runner.invoke(app, ["models", "promote", "churn", "3", *options])
    assert worse.exit_code == 1 and "not promoted" in worse.output
    listed = runner.invoke(app, ["models", "list", *options])
    assert "churn" in listed.output and "rejected" in listed.output
    back = runner.invoke(app, ["models", "rollback", "churn", *options])
    assert back.exit_code == 0 and "serves version 1" in back.output
    shown = runner.invoke(app, ["models", "show", "churn", *options])
    assert '"version": 1' in shown.output


def test_recommend_writes_every_person(tmp_path: Path) -> None:
    rng = random.Random(1)
    path = tmp_path / "interactions.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["person_id", "item_id"])
        for person in range(30):
            for _ in range(6):
                writer.writerow([f"p{person}", f"i{rng.randrange(20)}"])
    out = tmp_path / "recs.csv"
    result = runner.invoke(
        app, ["models", "recommend", "--interactions", str(path), "--k", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert {row["person_id"] for row in rows} == {f"p{n}" for n in range(30)}
    assert list(rows[0]) == ["person_id", "rank", "item_id", "score"]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("person,item\np1,i1\n")
    missing = runner.invoke(
        app, ["models", "recommend", "--interactions", str(wrong), "--out", str(tmp_path / "x.csv")]
    )
    assert missing.exit_code == 1 and "item_id" in missing.output


def test_predict_purchases_writes_every_person(tmp_path: Path) -> None:
    rng = random.Random(2)
    path = tmp_path / "transactions.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["person_id", "date", "amount"])
        for person in range(60):
            for _ in range(rng.randint(1, 5)):
                day = rng.randint(1, 28)
                writer.writerow([f"c{person}", f"2026-0{rng.randint(1, 9)}-{day:02d}", "12.5"])
    out = tmp_path / "predictions.csv"
    result = runner.invoke(
        app,
        ["models", "predict-purchases", "--transactions", str(path), "--horizon-days", "90",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 60
    assert all(float(row["expected_purchases"]) >= 0 for row in rows)  # no NaN either
    assert all(0 <= float(row["p_active"]) <= 1 for row in rows)
    assert list(rows[0]) == ["person_id", "expected_purchases", "p_active", "expected_value"]
