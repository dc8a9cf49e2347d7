"""`recommend_file`, the batch command's engine: CSV / Parquet / JSON lines in and out,
every person present, seen items excluded, bad input named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.recommend.batch import BatchSummary, recommend_file
from touchpoint.models.recommend.catalog import DEFAULT_RECOMMENDER


def interactions_frame() -> pd.DataFrame:
    """Two groups, each taking items of its own block; ids that look like numbers."""
    rows = []
    for person in range(12):
        block = 100 if person < 6 else 200
        for step in range(3):
            rows.append((str(person), str(block + (person + step) % 6), 1.0 + step))
    frame = pd.DataFrame(rows, columns=["person_id", "item_id", "weight"])
    frame["timestamp"] = pd.date_range("2024-01-01", periods=len(frame), freq="h")
    return frame


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype={"person_id": str, "item_id": str})
    return pd.read_csv(path, dtype={"person_id": str, "item_id": str})


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, date_format="iso")
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("source", "target"),
    [("csv", "csv"), ("parquet", "parquet"), ("csv", "parquet"), ("jsonl", "csv")],
)
def test_every_person_gets_k_unseen_items(tmp_path: Path, source: str, target: str) -> None:
    frame = interactions_frame()
    inputs = write(frame, tmp_path / f"in.{source}")
    out = tmp_path / "deep" / f"out.{target}"
    calls: list[tuple[int, int]] = []
    summary = recommend_file(
        inputs, out, k=2, progress=lambda done, total: calls.append((done, total))
    )
    picks = read(out)
    assert list(picks.columns) == ["person_id", "rank", "item_id", "score"]
    assert set(picks["person_id"]) == set(frame["person_id"])
    assert picks.groupby("person_id")["rank"].apply(list).map(tuple).unique().tolist() == [(1, 2)]
    taken = set(zip(frame["person_id"], frame["item_id"], strict=True))
    assert not taken & set(zip(picks["person_id"], picks["item_id"].astype(str), strict=True))
    # The planted blocks: people 0-5 took 10x items, 6-11 took 20x items.
    for person, item in zip(picks["person_id"], picks["item_id"].astype(str), strict=True):
        assert item[0] == ("1" if int(person) < 6 else "2")
    assert summary == BatchSummary(
        model=DEFAULT_RECOMMENDER,
        people=12,
        items=12,
        rows_read=36,
        rows_skipped=0,
        recommendations=24,
        fit_seconds=summary.fit_seconds,
        total_seconds=summary.total_seconds,
        out=out,
    )
    assert calls and calls[-1] == (12, 12)


@pytest.mark.parametrize("model", ["popular", "cooccurrence", "ease", "session"])
def test_models_by_name_are_deterministic(tmp_path: Path, model: str) -> None:
    inputs = write(interactions_frame(), tmp_path / "in.csv")
    first = recommend_file(inputs, tmp_path / "a.csv", k=3, model=model, seed=5)
    recommend_file(inputs, tmp_path / "b.csv", k=3, model=model, seed=5)
    assert first.model == model
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_empty_ids_are_skipped_and_counted(tmp_path: Path) -> None:
    frame = interactions_frame()[["person_id", "item_id"]]
    extra = pd.DataFrame({"person_id": ["", "99", "  "], "item_id": ["100", None, "101"]})
    inputs = write(pd.concat([frame, extra]), tmp_path / "in.csv")
    summary = recommend_file(inputs, tmp_path / "out.csv", k=2, model="popular")
    assert summary.rows_skipped == 3 and summary.rows_read == 39
    picks = read(tmp_path / "out.csv")
    # Person 99 had no item: still in the output, with the most popular items.
    assert len(picks[picks["person_id"] == "99"]) == 2
    assert summary.people == 13


def test_missing_column_is_named(tmp_path: Path) -> None:
    inputs = write(interactions_frame().drop(columns=["item_id"]), tmp_path / "in.csv")
    with pytest.raises(InvalidInput, match="missing column 'item_id'") as raised:
        recommend_file(inputs, tmp_path / "out.csv")
    assert raised.value.details == {"field": "item_id"}
    inputs = write(interactions_frame().drop(columns=["person_id"]), tmp_path / "in.parquet")
    with pytest.raises(InvalidInput) as raised:
        recommend_file(inputs, tmp_path / "out.csv")
    assert raised.value.details == {"field": "person_id"}


def test_bad_names_and_files_are_clear_errors(tmp_path: Path) -> None:
    inputs = write(interactions_frame(), tmp_path / "in.csv")
    with pytest.raises(InvalidInput) as raised:
        recommend_file(inputs, tmp_path / "out.xlsx")
    assert raised.value.details == {"field": "out"}
    with pytest.raises(InvalidInput) as raised:
        recommend_file(tmp_path / "in.txt", tmp_path / "out.csv")
    assert raised.value.details == {"field": "interactions"}
    with pytest.raises(InvalidInput) as raised:
        recommend_file(tmp_path / "absent.csv", tmp_path / "out.csv")
    assert raised.value.details == {"field": "interactions"}
    with pytest.raises(InvalidInput) as raised:
        recommend_file(inputs, tmp_path / "out.csv", model="nope")
    assert raised.value.details == {"field": "model"}
    with pytest.raises(InvalidInput) as raised:
        recommend_file(inputs, tmp_path / "out.csv", k=0)
    assert raised.value.details == {"field": "k"}


def test_no_usable_rows_is_not_enough_data(tmp_path: Path) -> None:
    inputs = write(
        pd.DataFrame({"person_id": ["1", ""], "item_id": ["", "3"]}), tmp_path / "in.csv"
    )
    with pytest.raises(NotEnoughData):
        recommend_file(inputs, tmp_path / "out.csv")
