"""The operator table and the checks on each operator's operand.

Shared by the canonical-form validator and the text parser, so that a bad
operand is refused with the same reason whichever form it was written in. Each
check returns the operand in canonical (JSON-serializable) form or raises
`ValueError` with a reason; the caller turns that into a `DefinitionError`
with the path (and, for text, the column).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from touchpoint.core.clock import isoformat, parse_duration, parse_timestamp

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")
MEMBERSHIP = ("in", "not_in")
TEXT_MATCH = ("contains", "starts_with", "ends_with")
RELATIVE_TIME = ("within", "older_than")
ABSOLUTE_TIME = ("before", "after")
OPERATORS: tuple[str, ...] = (
    *COMPARISONS,
    *MEMBERSHIP,
    *TEXT_MATCH,
    "exists",
    *RELATIVE_TIME,
    *ABSOLUTE_TIME,
)
OPERATOR_SET = frozenset(OPERATORS)

CanonicalSpec = bool | dict[str, Any]
"""A condition in canonical form: `True`, `False` or a one-node dict."""

MAX_DEPTH = 64
"""How deeply conditions may nest; deeper is refused rather than risking the stack."""

# Whole numbers a condition may hold: what JSON (orjson) stores and every store compares.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

# A string is taken for a timestamp only if it starts like an ISO date; this keeps
# plain strings ("pro", "20240101") out of time comparisons and makes the test cheap.
_TIMESTAMP_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")


def type_name(value: object) -> str:
    """The JSON-ish name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def looks_like_timestamp(value: str) -> bool:
    """Whether a string starts like an ISO-8601 date (`YYYY-MM-DD…`)."""
    return _TIMESTAMP_PREFIX.match(value) is not None


def as_time(value: object) -> datetime | None:
    """A context value as an aware UTC-comparable datetime, or None if it is not a time.

    Accepts datetimes (naive ones are UTC), dates (midnight UTC) and ISO strings;
    numbers are not times here (a count is not an epoch).
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        if _TIMESTAMP_PREFIX.match(value) is None:
            return None
        return parse_timestamp(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def literal_time(value: object) -> datetime | None:
    """The time a canonical string operand denotes, or None if it is not a timestamp."""
    if isinstance(value, str):
        return as_time(value)
    return None


def canonical_value(value: Any) -> Any:
    """A literal in JSON-serializable form: dates become canonical ISO strings, tuples lists.

    Raises ValueError for anything JSON cannot hold (sets, objects, non-finite numbers).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ValueError("whole numbers must fit in 64 bits (±9223372036854775807)")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        return value
    if isinstance(value, datetime | date):
        moment = as_time(value)
        assert moment is not None
        return isoformat(moment)
    if isinstance(value, list | tuple):
        return [canonical_value(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("mapping keys must be strings")
        return {key: canonical_value(item) for key, item in value.items()}
    raise ValueError(f"{type_name(value)} is not a JSON value")


def _any_value(op: str, value: Any) -> Any:
    return canonical_value(value)


def _ordered(op: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str | date):
        raise ValueError(
            f"`{op}` compares with a number, a string or a timestamp, not {type_name(value)}"
        )
    return canonical_value(value)


def _list(op: str, value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise ValueError(f"`{op}` takes a list of values, not {type_name(value)}")
    return canonical_value(value)


def _scalar(op: str, value: Any) -> Any:
    if value is None or not isinstance(value, str | int | float):
        raise ValueError(f"`{op}` takes a string, a number or true/false, not {type_name(value)}")
    return canonical_value(value)


def _string(op: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"`{op}` takes a string, not {type_name(value)}")
    return value


def _boolean(op: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"`{op}` takes true or false, not {type_name(value)}")
    return value


def _duration(op: str, value: Any) -> Any:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"`{op}` takes a duration such as 30d, 24h or 15m, not {type_name(value)}")
    parse_duration(value)  # raises ValueError with the reason
    return value


def _timestamp(op: str, value: Any) -> Any:
    if isinstance(value, date):
        return canonical_value(value)
    if not isinstance(value, str) or literal_time(value) is None:
        raise ValueError(
            f"`{op}` takes an ISO-8601 timestamp such as 2024-01-31T00:00:00Z, not {value!r}"
        )
    return value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "eq": _any_value,
    "ne": _any_value,
    "gt": _ordered,
    "gte": _ordered,
    "lt": _ordered,
    "lte": _ordered,
    "in": _list,
    "not_in": _list,
    "contains": _scalar,
    "starts_with": _string,
    "ends_with": _string,
    "exists": _boolean,
    "within": _duration,
    "older_than": _duration,
    "before": _timestamp,
    "after": _timestamp,
}


def check_operand(op: str, value: Any) -> Any:
    """Validate the operand of `op` and return it in canonical form; ValueError if bad."""
    return _CHECKS[op](op, value)


def check_field(field: object) -> str:
    """Validate a dotted field path and return it canonical (`score.` becomes `scores.`).

    Raises ValueError with the reason for a non-string or malformed path.
    """
    if not isinstance(field, str):
        raise ValueError(f"the field is a dotted path such as traits.plan, not {type_name(field)}")
    parts = field.split(".")
    if any(not part or part != part.strip() for part in parts):
        raise ValueError(f"{field!r} is not a dotted path such as traits.plan")
    if parts[0] == "score":
        parts[0] = "scores"
    return ".".join(parts)
