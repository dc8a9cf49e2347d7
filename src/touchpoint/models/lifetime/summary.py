"""From purchases (person, date, amount) to the repeat-purchase summary the models read.

The purchase models (BG/NBD, Pareto/NBD, Gamma-Gamma) see each person as four numbers,
counted on purchase *days* (several purchases on one day are one purchase of their
summed amount):

- `frequency`: repeat purchase days (distinct purchase days minus one),
- `recency`: time from the first to the last purchase day,
- `age` (the literature's T): time from the first purchase day to the end of observation,
- `monetary_value`: mean amount of the repeat purchase days (0 when there are none).

Times are in units of `unit_days` days (7: weeks, the unit of the published CDNOW fits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from touchpoint.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("person_id", "date", "amount")
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PurchaseDays:
    """Validated purchases merged per person and day: one row per (person, day) with the
    day's summed amount, sorted by person then day. `days` are numpy `datetime64[D]`.
    Build with `purchase_days`; never mutate."""

    person_ids: npt.NDArray[np.object_]
    days: npt.NDArray[np.datetime64]
    amounts: FloatArray

    @property
    def people(self) -> npt.NDArray[np.object_]:
        """Distinct person ids, sorted."""
        return np.unique(self.person_ids)

    @property
    def last_day(self) -> np.datetime64:
        """The latest purchase day (the natural end of observation of a file)."""
        return np.datetime64(self.days.max(), "D")

    def until(self, end: np.datetime64) -> PurchaseDays:
        """Only the purchase days on or before `end`."""
        keep = self.days <= end
        return PurchaseDays(self.person_ids[keep], self.days[keep], self.amounts[keep])


@dataclass(frozen=True)
class CustomerSummary:
    """The per-person repeat-purchase summary at the end of observation `end` (inclusive),
    for people whose first purchase is on or before `end`; arrays align with `person_ids`
    (sorted). Times are in units of `unit_days` days. Never mutate."""

    person_ids: npt.NDArray[np.object_]
    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    monetary_value: FloatArray
    end: np.datetime64
    unit_days: float = 7.0

    def __len__(self) -> int:
        return len(self.person_ids)

    @property
    def repeat_buyers(self) -> int:
        """How many people bought on more than one day."""
        return int(np.count_nonzero(self.frequency > 0))


def as_day(value: np.datetime64 | str) -> np.datetime64:
    """A day (`datetime64[D]`) from a datetime64 or an ISO date string."""
    if isinstance(value, np.datetime64):
        return np.datetime64(value.astype("datetime64[D]"))
    return np.datetime64(value, "D")


def _error(column: str, position: int, reason: str, header_lines: int) -> InvalidInput:
    row = position + 1
    where = f"row {row}" + (f" (line {row + header_lines})" if header_lines else "")
    details: dict[str, object] = {"field": column, "row": row}
    if header_lines:
        details["line"] = row + header_lines
    return InvalidInput(f"column {column!r}, {where}: {reason}", details=details)


def purchase_days(frame: pd.DataFrame, *, header_lines: int = 0) -> PurchaseDays:
    """Validate a purchases frame (`person_id, date, amount`; other columns ignored) and
    merge each person's purchases per day (UTC day of the timestamp, amounts summed).

    Dates may be datetimes or strings (ISO 8601, `YYYYMMDD` included). A missing column,
    a missing person id, an unparseable date, or a missing, non-numeric or negative amount
    raises `InvalidInput` naming the column and the row (1-based among data rows; with
    `header_lines`, the file line too)."""
    import pandas as pd

    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise InvalidInput(
            f"missing column {missing[0]!r}: purchases need columns "
            f"{', '.join(REQUIRED_COLUMNS)} (found {', '.join(map(str, frame.columns))})",
            details={"field": missing[0]},
        )
    person = frame["person_id"]
    blank = person.isna().to_numpy() | (person.astype(str).str.strip() == "").to_numpy()
    if blank.any():
        raise _error("person_id", int(np.argmax(blank)), "missing person id", header_lines)

    raw_dates = frame["date"]
    if pd.api.types.is_datetime64_any_dtype(raw_dates):
        dates = pd.to_datetime(raw_dates, utc=True)
    else:
        text = raw_dates.astype("string").str.strip()
        dates = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    unparsed = dates.isna().to_numpy()
    if unparsed.any():
        position = int(np.argmax(unparsed))
        raise _error(
            "date", position, f"cannot read {raw_dates.iloc[position]!r} as a date", header_lines
        )

    amounts = pd.to_numeric(frame["amount"], errors="coerce").to_numpy(dtype=np.float64)
    bad_amount = ~np.isfinite(amounts)
    if bad_amount.any():
        position = int(np.argmax(bad_amount))
        reason = f"cannot read {frame['amount'].iloc[position]!r} as a number"
        raise _error("amount", position, reason, header_lines)
    negative = amounts < 0
    if negative.any():
        position = int(np.argmax(negative))
        reason = f"negative amount {amounts[position]} (refunds are not purchases)"
        raise _error("amount", position, reason, header_lines)

    days = dates.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    merged = (
        pd.DataFrame({"person_id": person.astype(str).to_numpy(), "day": days, "amount": amounts})
        .groupby(["person_id", "day"], sort=True)["amount"]
        .sum()
        .reset_index()
    )
    logger.debug("%d purchase rows merged into %d purchase days", len(frame), len(merged))
    return PurchaseDays(
        person_ids=merged["person_id"].to_numpy(dtype=object),
        days=merged["day"].to_numpy().astype("datetime64[D]"),
        amounts=merged["amount"].to_numpy(dtype=np.float64),
    )


def summarize(
    purchases: PurchaseDays, end: np.datetime64 | str | None = None, *, unit_days: float = 7.0
) -> CustomerSummary:
    """The summary of every person who bought on or before `end` (inclusive; default: the
    last purchase day), counting only purchase days up to `end`."""
    if unit_days <= 0:
        raise InvalidInput("unit_days must be positive", details={"field": "unit_days"})
    end_day = purchases.last_day if end is None else as_day(end)
    seen = purchases.until(end_day)
    people, start = np.unique(seen.person_ids, return_index=True)
    counts = np.diff(np.append(start, len(seen.person_ids)))
    first = seen.days[start]
    last = seen.days[start + counts - 1]
    first_amount = seen.amounts[start]
    total = np.add.reduceat(seen.amounts, start) if len(start) else np.zeros(0)
    frequency = (counts - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, (total - first_amount) / frequency, 0.0)

    def in_units(delta: npt.NDArray[np.timedelta64]) -> FloatArray:
        return np.asarray(delta.astype("timedelta64[D]").astype(np.float64) / unit_days)

    return CustomerSummary(
        person_ids=people.astype(object),
        frequency=frequency,
        recency=in_units(last - first),
        age=in_units(end_day - first),
        monetary_value=monetary.astype(np.float64),
        end=end_day,
        unit_days=unit_days,
    )


def count_purchase_days(
    purchases: PurchaseDays,
    person_ids: npt.NDArray[np.object_],
    after: np.datetime64 | str,
    until: np.datetime64 | str,
) -> FloatArray:
    """For each of `person_ids`, the number of purchase days in (`after`, `until`]: the
    holdout count beside a summary ending at `after`."""
    start, stop = as_day(after), as_day(until)
    inside = (purchases.days > start) & (purchases.days <= stop)
    ids, counts = np.unique(purchases.person_ids[inside], return_counts=True)
    result = np.zeros(len(person_ids), dtype=np.float64)
    if len(ids) == 0:
        return result
    position = np.minimum(np.searchsorted(ids, person_ids), len(ids) - 1)
    found = ids[position] == person_ids
    result[found] = counts[position[found]]
    return result


@dataclass(frozen=True)
class CalibrationHoldout:
    """A summary at the calibration end and, aligned with it, each person's purchase days
    (and summed amount) in the holdout period that follows."""

    calibration: CustomerSummary
    holdout_purchases: FloatArray
    holdout_amounts: FloatArray
    holdout_length: float


def split_calibration_holdout(
    purchases: PurchaseDays,
    calibration_end: np.datetime64 | str,
    holdout_end: np.datetime64 | str,
    *,
    unit_days: float = 7.0,
) -> CalibrationHoldout:
    """Summary of the people seen by `calibration_end` (inclusive) and what they bought
    after it up to `holdout_end` (inclusive); `holdout_length` is in units."""
    calibration_day = as_day(calibration_end)
    holdout_day = as_day(holdout_end)
    if holdout_day <= calibration_day:
        raise InvalidInput(
            "the holdout must end after the calibration period",
            details={"field": "holdout_end"},
        )
    calibration = summarize(purchases, calibration_day, unit_days=unit_days)
    inside = (purchases.days > calibration_day) & (purchases.days <= holdout_day)
    ids = purchases.person_ids[inside]
    amounts = purchases.amounts[inside]
    index = {person: position for position, person in enumerate(calibration.person_ids)}
    counts = np.zeros(len(calibration))
    spend = np.zeros(len(calibration))
    for person, amount in zip(ids, amounts, strict=True):
        position = index.get(person)
        if position is not None:
            counts[position] += 1
            spend[position] += amount
    length = float((holdout_day - calibration_day).astype(np.float64)) / unit_days
    return CalibrationHoldout(calibration, counts, spend, length)
