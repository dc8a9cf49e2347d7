"""What every decision-log backend shares: the records' column order, how a stored row
becomes a record again, and the `list` cursor (time, storage order) encoded for clients.

A backend keeps its own SQL; these are the parts that were written once per backend.
"""

from __future__ import annotations

import base64
import operator
from collections.abc import Sequence
from typing import Any

import orjson

from touchpoint.core.errors import InvalidInput
from touchpoint.decide.decision_log.base import DecisionRecord, Outcome

# Columns in the records' field order, so a row converts positionally; then the two JSON
# columns, `context` and `features`.
DECISION_FIELDS = (
    "decision_id", "placement", "content_id", "profile_id", "subject", "policy",
    "definitions_version", "reason", "propensity", "at", "experiment", "arm",
)  # fmt: skip
OUTCOME_FIELDS = (
    "message_id", "decision_id", "placement", "content_id", "kind", "event", "profile_id", "at",
    "value",
)  # fmt: skip
decision_fields = operator.attrgetter(*DECISION_FIELDS)
outcome_fields = operator.attrgetter(*OUTCOME_FIELDS)
DECISION_COLUMNS = ", ".join((*DECISION_FIELDS, "context", "features"))
DECISION_WIDTH = len(DECISION_FIELDS) + 2
"""How many columns `DECISION_COLUMNS` names (a backend's storage order comes after)."""
OUTCOME_COLUMNS = ", ".join(OUTCOME_FIELDS)
_MAX_POSITION = 2**63 - 1  # a SQLite rowid or a PostgreSQL bigint


def decision_from_row(row: Sequence[Any]) -> DecisionRecord:
    """A record from `DECISION_COLUMNS` (the context and features stored as JSON bytes)."""
    fields = list(row[:DECISION_WIDTH])
    fields[-2] = orjson.loads(fields[-2])
    fields[-1] = orjson.loads(fields[-1])
    return DecisionRecord(*fields)


def json_columns(record: DecisionRecord) -> tuple[bytes, bytes]:
    """The record's `context` and `features` as stored (JSON bytes)."""
    return orjson.dumps(record.context), orjson.dumps(record.features)


def outcome_from_row(row: Sequence[Any]) -> Outcome:
    """An outcome from `OUTCOME_COLUMNS`."""
    return Outcome(*row[:9])


def encode_cursor(at: str, position: int) -> str:
    """The cursor of a `list` page: the last decision's time and storage order."""
    return base64.urlsafe_b64encode(orjson.dumps([at, position])).decode("ascii")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """A `list` cursor's place (time, storage order); anything else is `InvalidInput`."""
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeError):
        parts = None
    if (
        not isinstance(parts, list)
        or len(parts) != 2
        or not isinstance(parts[0], str)
        or not isinstance(parts[1], int)
        or isinstance(parts[1], bool)
        or not 0 <= parts[1] <= _MAX_POSITION
    ):
        raise InvalidInput("not a cursor from this list", details={"field": "cursor"})
    return parts[0], parts[1]
