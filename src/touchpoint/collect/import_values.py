"""Values of an import row made into what an event holds: plain JSON values, typed values
(`--map amount=properties.revenue:number`), ids as text and times as ISO-8601 UTC.

Every function here raises ValueError with a reason a person can act on ("not a number:
'12,5'"); the importer reports it with the row's line and column.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson

from touchpoint.collect.events import plausible_time
from touchpoint.core.clock import isoformat, parse_timestamp

ValueType = Literal["string", "number", "int", "bool", "datetime"]
VALUE_TYPES: tuple[ValueType, ...] = ("string", "number", "int", "bool", "datetime")

_INTEGER = re.compile(r"^[+-]?\d+$")
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_MILLISECONDS_FROM = 100_000_000_000  # larger epoch numbers are milliseconds (1e11 s is 5138)
_DATE_HINT = "expected ISO-8601 such as 2024-05-01T12:00:00Z, 2024-05-01 or 20240501"


def plain_value(value: Any) -> Any:
    """`value` as JSON holds it: Parquet's datetimes, dates and decimals become text and
    numbers, NaN becomes absent (None). Raises ValueError for what JSON cannot hold."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return isoformat(_aware(value))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return plain_value(float(value))
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("binary data that is not UTF-8 text") from None
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_value(item) for item in value]
    raise ValueError(f"a value of type {type(value).__name__} cannot be imported")


def convert(value: Any, value_type: ValueType | None) -> Any:
    """`value` (not None) as `value_type`; unchanged (made plain) when no type is asked."""
    if value_type == "datetime":
        return isoformat(parse_moment(value))
    value = plain_value(value)
    if value_type is None or value is None:
        return value
    if value_type == "number":
        return _number(value)
    if value_type == "int":
        return _integer(value)
    if value_type == "bool":
        return _boolean(value)
    return _text(value)


def id_text(value: Any) -> str:
    """An identifier (user id, event name, message id) as text: numbers as their digits,
    surrounding whitespace removed."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    raise ValueError(f"must be text or a number, not {_shown(value)}")


def parse_moment(value: Any) -> datetime:
    """A point in time, aware UTC, from: a datetime or date; ISO-8601 text (a date alone is
    midnight UTC, no offset means UTC); `YYYYMMDD` as text or an 8-digit integer; other
    numbers as epoch seconds, or milliseconds past 1e11. It must lie in 1970-2200."""
    moment = _moment(value)
    try:
        return plausible_time(moment)
    except ValueError:
        raise ValueError(f"{_shown(value)} is not between 1970 and 2200") from None


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError(f"not a date or time: {_shown(value)}")
    if isinstance(value, int | float):
        return _from_number(value)
    if not isinstance(value, str):
        raise ValueError(f"not a date or time: {_shown(value)} ({_DATE_HINT})")
    text = value.strip()
    compact = _COMPACT_DATE.match(text)
    if compact:
        return _compact_date(text, compact)
    if _INTEGER.match(text):
        return _from_number(int(text))
    moment = parse_timestamp(text[:-1] + "Z" if text.endswith("z") else text)
    if moment is None:
        raise ValueError(f"not a date or time: {_shown(value)} ({_DATE_HINT})")
    return moment


def _from_number(number: float) -> datetime:
    if isinstance(number, int) and 10_000_000 <= number <= 99_999_999:
        text = str(number)
        compact = _COMPACT_DATE.match(text)
        assert compact is not None
        return _compact_date(text, compact)
    if not math.isfinite(number):
        raise ValueError(f"not a date or time: {number}")
    seconds = number / 1000 if abs(number) >= _MILLISECONDS_FROM else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{number} is not between 1970 and 2200") from None


def _compact_date(text: str, match: re.Match[str]) -> datetime:
    year, month, day = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        raise ValueError(f"not a date: {text!r} read as YYYYMMDD") from None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {_shown(value)}")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.match(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"not a number: {_shown(value)}") from None
        if math.isfinite(number):
            return number
    raise ValueError(f"not a number: {_shown(value)}")


def _integer(value: Any) -> int:
    number = _number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise ValueError(f"not a whole number: {_shown(value)}")
        return int(number)
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | str):
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"not true or false: {_shown(value)} (expected true/false, yes/no, 1/0)")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return id_text(value)
    return orjson.dumps(value).decode()


def _shown(value: Any) -> str:
    """A value quoted for a message, cut short when long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
