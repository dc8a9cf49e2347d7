"""Batch recommendations from a file: `touchpoint models recommend --interactions FILE --k 10
[--model NAME] --out FILE`, for analysts, email campaigns and outside evaluations.

Input: CSV, Parquet or JSON lines (by extension: `.csv`, `.parquet`/`.pq`,
`.jsonl`/`.ndjson`) with columns `person_id,item_id[,timestamp][,weight]`. A missing
required column is `InvalidInput` naming it; rows with an empty person or item id are
skipped and counted. Output (CSV, Parquet or JSON lines by `out`'s extension):
`person_id,rank,item_id,score`, ranks 1..k for every person in the input (people whose
rows all lack an item get the most popular items), items each person already
interacted with excluded. The model is fitted on the whole file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from touchpoint.core.errors import InvalidInput
from touchpoint.core.tables import detect_format, read_frame, write_frame
from touchpoint.models.errors import NotEnoughData
from touchpoint.models.recommend.catalog import DEFAULT_RECOMMENDER, build_recommender
from touchpoint.models.recommend.scoring import ScoringRecommender

if TYPE_CHECKING:
    import pandas as pd

    from touchpoint.models.recommend.base import Recommender

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("person_id", "item_id")
OPTIONAL_COLUMNS = ("timestamp", "weight")
SCORE_CHUNK = 2048


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run did: the model, how many people, items and rows, how long."""

    model: str
    people: int
    items: int
    rows_read: int
    rows_skipped: int
    recommendations: int
    fit_seconds: float
    total_seconds: float
    out: Path


def read_interactions(path: Path) -> tuple[pd.DataFrame, int]:
    """The interaction rows of a file with string ids, and how many rows were skipped for
    an empty person or item id (rows with a person but no item keep the person, see
    `people_in`)."""
    frame, _ = read_frame(path, field="interactions", text_columns=REQUIRED_COLUMNS)
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise InvalidInput(
                f"{path.name}: missing column {column!r} "
                "(expected person_id,item_id[,timestamp][,weight])",
                details={"field": column},
            )
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    frame = frame[columns].copy()
    for column in REQUIRED_COLUMNS:
        frame[column] = id_strings(frame[column])
    if "timestamp" in frame.columns:
        frame["timestamp"] = timestamps(frame["timestamp"])
    return frame, int(((frame["person_id"] == "") | (frame["item_id"] == "")).sum())


def id_strings(values: pd.Series) -> pd.Series:
    """Ids as stripped strings, "" for missing; whole floats (Parquet ints with nulls) lose
    their `.0`."""
    import pandas as pd

    if pd.api.types.is_float_dtype(values):
        present = values.dropna()
        if (present == present.round()).all():
            values = values.astype("Int64")
    strings = values.astype("string").fillna("").str.strip()
    return strings.astype(object)


def timestamps(values: pd.Series) -> pd.Series:
    """Epoch seconds (float) from numbers, datetimes or date strings; NaN when unreadable."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values):
        return pd.to_numeric(values, errors="coerce").astype(float)
    parsed = pd.to_datetime(values, errors="coerce", utc=True)
    seconds = parsed.astype("int64") / 1e9
    return seconds.where(parsed.notna()).astype(float)


def recommend_file(
    interactions: Path,
    out: Path,
    *,
    k: int = 10,
    model: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Fit `model` (default `DEFAULT_RECOMMENDER`) on the file's interactions and write the
    top `k` unseen items of every person in it to `out`; see the module docstring."""
    from touchpoint.models.interactions import Interactions

    started = time.perf_counter()
    if k < 1:
        raise InvalidInput("k must be >= 1", details={"field": "k"})
    detect_format(out, field="out")  # refuse an unknown output type before any work
    name = model or DEFAULT_RECOMMENDER
    recommender = build_recommender(name, seed=seed)
    frame, skipped = read_interactions(interactions)
    people = list(dict.fromkeys(frame.loc[frame["person_id"] != "", "person_id"].tolist()))
    usable = frame[(frame["person_id"] != "") & (frame["item_id"] != "")]
    if usable.empty:
        raise NotEnoughData(f"{interactions.name}: no rows with both a person and an item")
    pairs = Interactions.from_frame(usable)
    fit_started = time.perf_counter()
    recommender.fit(pairs)
    fit_seconds = time.perf_counter() - fit_started
    picks = _recommendations(recommender, people, k, progress)
    write_frame(picks, out)
    summary = BatchSummary(
        model=name,
        people=len(people),
        items=pairs.shape[1],
        rows_read=len(frame),
        rows_skipped=skipped,
        recommendations=len(picks),
        fit_seconds=fit_seconds,
        total_seconds=time.perf_counter() - started,
        out=out,
    )
    logger.info("models recommend: %s", summary)
    return summary


def _recommendations(
    recommender: Recommender,
    people: list[str],
    k: int,
    progress: Callable[[int, int], None] | None,
) -> pd.DataFrame:
    import pandas as pd

    if isinstance(recommender, ScoringRecommender):
        top = recommender.top_items(people, k, progress=progress)
        filled = top.positions >= 0
        ranks = np.broadcast_to(np.arange(1, top.positions.shape[1] + 1), top.positions.shape)
        return pd.DataFrame(
            {
                "person_id": np.repeat(np.asarray(people, dtype=object), top.counts),
                "rank": ranks[filled].astype(np.int64),
                "item_id": top.items[top.positions[filled]].astype(object),
                "score": top.scores[filled].astype(np.float64),
            }
        )
    rows: list[tuple[str, int, str, float]] = []
    for start in range(0, len(people), SCORE_CHUNK):
        chunk = people[start : start + SCORE_CHUNK]
        answers = recommender.recommend_many(chunk, k)
        for person in chunk:
            for rank, pick in enumerate(answers.get(person, [])[:k], start=1):
                rows.append((person, rank, pick.item_id, pick.score))
        if progress is not None:
            progress(min(len(people), start + SCORE_CHUNK), len(people))
    return pd.DataFrame(rows, columns=["person_id", "rank", "item_id", "score"])
