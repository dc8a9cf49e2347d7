"""The events table's columns: a stable schema, the same in every file.

A Segment event's free-form parts (`properties`, `traits`, `context`) are kept as JSON
text, so a new property never changes the schema and old files stay readable; DuckDB
reads them with `->>` and `json_extract`. The fields commerce models need all the time
(item, category, price, quantity, value, decision) are also typed columns, extracted once
at write time instead of parsed by every query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from touchpoint.collect.events import event_name
from touchpoint.core.clock import parse_timestamp

TIMESTAMP = pa.timestamp("us", tz="UTC")

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("type", pa.string()),
        pa.field("event", pa.string()),
        pa.field("profile_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("timestamp", TIMESTAMP),
        pa.field("received_at", TIMESTAMP),
        pa.field("source", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("category", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("quantity", pa.float64()),
        pa.field("value", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("decision_id", pa.string()),
        pa.field("properties", pa.string()),
        pa.field("traits", pa.string()),
        pa.field("context", pa.string()),
    ]
)

ITEM_KEYS = ("product_id", "item_id", "sku", "id")
VALUE_KEYS = ("revenue", "total", "value")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if str(value) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def _time(value: Any) -> datetime | None:
    moment = parse_timestamp(value) if isinstance(value, str) else None
    return None if moment is None else moment.astimezone(UTC)


def _json(value: Any) -> str | None:
    if not value:
        return None
    return orjson.dumps(value).decode("utf-8")


def event_row(
    event: Mapping[str, Any], *, partition: int, offset: int, profile_id: str | None
) -> dict[str, Any]:
    """One stored event (as the log holds it) as a row of EVENTS_SCHEMA."""
    properties = event.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    context = event.get("context")
    return {
        "message_id": str(event.get("messageId") or f"{partition}:{offset}"),
        "partition": partition,
        "offset": offset,
        "type": _text(event.get("type")),
        "event": event_name(event),
        "profile_id": profile_id,
        "user_id": _text(event.get("userId")),
        "anonymous_id": _text(event.get("anonymousId")),
        "timestamp": _time(event.get("timestamp")),
        "received_at": _time(event.get("receivedAt")),
        "source": _text(event.get("source")),
        "item_id": _text(_first(properties, ITEM_KEYS)),
        "category": _text(properties.get("category")),
        "price": _number(properties.get("price")),
        "quantity": _number(properties.get("quantity")),
        "value": _number(_first(properties, VALUE_KEYS)),
        "currency": _text(properties.get("currency")),
        "decision_id": _text(properties.get("decision_id")),
        "properties": _json(properties),
        "traits": _json(event.get("traits")),
        "context": _json(context if isinstance(context, dict) else None),
    }


def events_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows as an Arrow table of EVENTS_SCHEMA."""
    return pa.Table.from_pylist(list(rows), schema=EVENTS_SCHEMA)
