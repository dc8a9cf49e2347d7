"""Which column of an import file goes to which event field, and each row made into a
Segment message (`track` for events, `identify` for profiles) or an item.

Defaults go by the column's name, compared without case, `_`, `-`, `.` or spaces:
`user_id`/`person_id`/`customer_id` give `userId`, `anonymous_id` gives `anonymousId`,
`event`/`event_name` give `event`, `timestamp`/`date`/`time`/`created_at` give
`timestamp`, `message_id` gives `messageId`, `email` gives `traits.email` for profiles
and `context.traits.email` for events (where Segment's spec puts a track event's traits,
and where identity resolution reads it); a column named `properties`, `traits` or
`context` holding an object fills that object; every other column becomes
`properties.<column>` (events) or `traits.<column>` (profiles). The first column that
claims a top-level field has it; a later one falls back to properties/traits. `--map
column=field[:type]` overrides (`-` or nothing after `=` drops the column); `--event NAME`
names every row's event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from touchpoint.collect.import_values import (
    VALUE_TYPES,
    ValueType,
    convert,
    id_text,
)
from touchpoint.core.errors import InvalidInput

logger = logging.getLogger(__name__)

ImportKind = Literal["events", "profiles", "items"]
IMPORT_KINDS: tuple[ImportKind, ...] = ("events", "profiles", "items")
Problem = tuple[str, str]
"""(column, reason) of one thing wrong with a row."""

_SCALARS = ("userId", "anonymousId", "event", "timestamp", "messageId")
_TEXT_FIELDS = frozenset({"userId", "anonymousId", "event", "messageId"})
_ROOTS: dict[str, frozenset[str]] = {
    "events": frozenset({*_SCALARS, "properties", "context"}),
    "profiles": frozenset({"userId", "anonymousId", "timestamp", "messageId", "traits", "context"}),
}
_ALIASES = {
    "userid": "userId",
    "personid": "userId",
    "customerid": "userId",
    "anonymousid": "anonymousId",
    "event": "event",
    "eventname": "event",
    "timestamp": "timestamp",
    "date": "timestamp",
    "time": "timestamp",
    "createdat": "timestamp",
    "messageid": "messageId",
}
_ITEM_ALIASES = frozenset({"itemid", "productid", "sku", "id"})
ITEM_ID = "item_id"
_DROP: tuple[str, ...] = ()


def _normalized(name: str) -> str:
    return "".join(char for char in name.lower() if char not in "_-. ")


@dataclass(frozen=True, slots=True)
class ColumnTarget:
    """Where one column's values go: a dotted path (empty: dropped) and an optional type."""

    path: tuple[str, ...]
    value_type: ValueType | None = None

    @property
    def dotted(self) -> str:
        """The path as written in `--map`: `properties.revenue`."""
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One `--map column=field[:type]` option, parsed."""

    column: str
    target: ColumnTarget


def parse_specs(specs: Iterable[str], kind: ImportKind) -> list[ColumnSpec]:
    """Parse `--map` options; InvalidInput (field `--map`) names a bad one and why."""
    parsed: list[ColumnSpec] = []
    columns: set[str] = set()
    paths: dict[tuple[str, ...], str] = {}
    for spec in specs:
        column, equals, field = spec.rpartition("=")
        column, field = column.strip(), field.strip()
        if not equals or not column:
            raise _bad_map(spec, "write it as COLUMN=FIELD, e.g. amount=properties.revenue")
        if column in columns:
            raise _bad_map(spec, f"column {column!r} is mapped twice")
        columns.add(column)
        target = _parse_target(spec, field, kind)
        if target.path:
            if target.path in paths:
                raise _bad_map(spec, f"{paths[target.path]!r} already maps to {target.dotted}")
            paths[target.path] = column
        parsed.append(ColumnSpec(column, target))
    return parsed


def _parse_target(spec: str, field: str, kind: ImportKind) -> ColumnTarget:
    if field in ("", "-"):
        return ColumnTarget(_DROP)
    value_type: ValueType | None = None
    name, colon, suffix = field.rpartition(":")
    if colon:
        if suffix not in VALUE_TYPES:
            raise _bad_map(spec, f"unknown type {suffix!r}; use {', '.join(VALUE_TYPES)}")
        field, value_type = name, suffix
    path = tuple(field.split("."))
    if not all(path):
        raise _bad_map(spec, f"{field!r} is not a field path such as properties.revenue")
    if kind == "items":
        if field == ITEM_ID and value_type not in (None, "string"):
            raise _bad_map(spec, "item_id is always text")
        return ColumnTarget((field,), value_type)
    root = path[0]
    if root not in _ROOTS[kind]:
        allowed = ", ".join(sorted(_ROOTS[kind]))
        hint = " (a track event's traits go in context.traits)" if root == "traits" else ""
        raise _bad_map(spec, f"{field!r} is not a field of {kind}: use {allowed}{hint}")
    if root in _SCALARS:
        implicit: ValueType | None = "datetime" if root == "timestamp" else None
        if len(path) > 1:
            raise _bad_map(spec, f"{root} has no sub-fields")
        if value_type not in (None, implicit):
            raise _bad_map(spec, f"{root} cannot be typed {value_type}")
        value_type = implicit
    return ColumnTarget(path, value_type)


def _bad_map(spec: str, reason: str) -> InvalidInput:
    return InvalidInput(f"--map {spec}: {reason}", details={"field": "--map"})


class RowMapping:
    """The columns' targets for one import, resolved once per column (explicit ones first,
    then defaults as columns are first met), and rows made into messages or items."""

    def __init__(
        self,
        kind: ImportKind,
        specs: Sequence[ColumnSpec],
        *,
        columns: Sequence[str] | None = None,
        event: str | None = None,
    ) -> None:
        if event is not None and kind != "events":
            raise InvalidInput(
                "--event names the event of an events import only", details={"field": "--event"}
            )
        if event is not None and not event.strip():
            raise InvalidInput("--event needs a name", details={"field": "--event"})
        self.kind = kind
        self.event = event.strip() if event is not None else None
        self.notes: list[str] = []
        self._explicit: dict[str, ColumnTarget] = {}
        self._targets: dict[str, ColumnTarget] = {}  # the columns met so far
        self._claimed: dict[tuple[str, ...], str] = {}
        for spec in specs:
            if event is not None and spec.target.path == ("event",):
                raise InvalidInput(
                    f"--map {spec.column}=event and --event both name the event",
                    details={"field": "--event"},
                )
            self._explicit[spec.column] = spec.target
            if spec.target.path:
                self._claimed[spec.target.path] = spec.column
        if columns is not None:
            missing = [spec.column for spec in specs if spec.column not in columns]
            if missing:
                raise InvalidInput(
                    f"--map names columns the file does not have: {', '.join(missing)} "
                    f"(columns: {', '.join(columns)})",
                    details={"field": "--map"},
                )
            for column in columns:
                self.target(column, strict=True)
            self._check_required()

    # -- targets ------------------------------------------------------------------------------

    def target(self, column: str, *, strict: bool = False) -> ColumnTarget:
        """Where `column` goes (resolved and remembered on first use). `strict`: a default
        target another column already took is a bad option rather than a dropped column."""
        found = self._targets.get(column)
        if found is None:
            found = self._explicit.get(column)
            if found is None:
                found = self._default(column, strict)
                if found.path:
                    self._claimed[found.path] = column
            self._targets[column] = found
        return found

    def unmet(self) -> list[str]:
        """The columns `--map` names that no row had a value in (JSON lines declare no
        columns, so a typo there shows only here)."""
        return [column for column in self._explicit if column not in self._targets]

    def _default(self, column: str, strict: bool) -> ColumnTarget:
        if not column:
            return ColumnTarget(_DROP)
        key = _normalized(column)
        candidates: list[tuple[str, ...]] = []
        if self.kind == "items":
            if key in _ITEM_ALIASES:
                candidates.append((ITEM_ID,))
            candidates.append((column,))
        else:
            bag = "properties" if self.kind == "events" else "traits"
            alias = _ALIASES.get(key)
            if alias is not None and alias in _ROOTS[self.kind]:
                if not (alias == "event" and self.event is not None):
                    candidates.append((alias,))
            elif key == "email":
                in_events = ("context", "traits", "email")
                candidates.append(("traits", "email") if bag == "traits" else in_events)
            elif column in (bag, "context"):
                candidates.append((column,))
            candidates.append((bag, column))
        for path in candidates:
            if path not in self._claimed:
                return ColumnTarget(path, "datetime" if path == ("timestamp",) else None)
        return self._taken(column, candidates[-1], strict)

    def _taken(self, column: str, path: tuple[str, ...], strict: bool) -> ColumnTarget:
        dotted, other = ".".join(path), self._claimed[path]
        reason = f"column {column!r} would go to {dotted}, which {other!r} is mapped to"
        if strict:
            raise InvalidInput(
                f"{reason}; map it elsewhere or drop it (--map {column}=-)",
                details={"field": "--map"},
            )
        self.notes.append(f"{reason}: its values were not imported")
        logger.warning("import: %s", reason)
        return ColumnTarget(_DROP)

    def _check_required(self) -> None:
        claimed = {path[0] for path in self._claimed}
        if self.kind == "items":
            if (ITEM_ID,) not in self._claimed:
                raise InvalidInput(
                    "no column gives the item id: name one item_id, product_id, sku or id, "
                    "or pass --map COLUMN=item_id",
                    details={"field": "--map"},
                )
            return
        if not claimed & {"userId", "anonymousId"}:
            raise InvalidInput(
                "no column gives userId or anonymousId: name one user_id or anonymous_id, "
                "or pass --map COLUMN=userId",
                details={"field": "--map"},
            )
        if self.kind == "events" and self.event is None and "event" not in claimed:
            raise InvalidInput(
                "no column gives the event name: name one event, pass --map COLUMN=event, "
                "or --event NAME for a file of one event type",
                details={"field": "--event"},
            )

    def column_for(self, field: str) -> str:
        """The column a collector's error about `field` (a dotted path) is about: the column
        mapped to it or to the object holding it; else the field itself."""
        path = tuple(field.split("."))
        for length in range(len(path), 0, -1):
            column = self._claimed.get(path[:length])
            if column is not None:
                return column
        return field

    def columns_of(self, *roots: str) -> str:
        """The columns mapped to these top-level fields, for a message about them."""
        found = [column for path, column in self._claimed.items() if path[0] in roots]
        return " / ".join(found) if found else " / ".join(roots)

    # -- rows ---------------------------------------------------------------------------------

    def message(self, values: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """The Segment message for a row's values, and what is wrong with them (the message
        is only to be sent when the list is empty)."""
        kind_type = "track" if self.kind == "events" else "identify"
        message: dict[str, Any] = {"type": kind_type}
        problems: list[Problem] = []
        for column, raw in values.items():
            if raw is None or raw == "":
                continue
            target = self.target(column)
            path = target.path
            if not path:
                continue
            try:
                value = id_text(raw) if path[0] in _TEXT_FIELDS else raw
                value = convert(value, target.value_type)
                if value is None or value == "":
                    continue
                _assign(message, path, value)
            except ValueError as error:
                problems.append((column, str(error)))
        if self.event is not None:
            message["event"] = self.event
        if not problems:
            if not message.get("userId") and not message.get("anonymousId"):
                problems.append(
                    (
                        self.columns_of("userId", "anonymousId"),
                        "empty: a row needs userId or anonymousId",
                    )
                )
            if self.kind == "events" and not message.get("event"):
                problems.append((self.columns_of("event"), "empty: a row needs the event name"))
        return message, problems

    def item(self, values: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """`{item_id, attribute: value, ...}` for a row, and what is wrong with it."""
        item: dict[str, Any] = {}
        problems: list[Problem] = []
        for column, raw in values.items():
            if raw is None or raw == "":
                continue
            target = self.target(column)
            if not target.path:
                continue
            name = target.path[0]
            try:
                value = id_text(raw) if name == ITEM_ID else convert(raw, target.value_type)
            except ValueError as error:
                problems.append((column, str(error)))
                continue
            if value is not None and value != "":
                item[name] = value
        if not problems and not item.get(ITEM_ID):
            problems.append((self.columns_of(ITEM_ID), "empty: a row needs the item id"))
        return item, problems

    def item_types(self) -> dict[str, ValueType]:
        """The types `--map` gave item attributes."""
        return {
            target.path[0]: target.value_type
            for target in self._explicit.values()
            if target.path and target.value_type is not None
        }


def _assign(message: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set `value` at `path`; an object column and a leaf column into the same object merge
    (the leaf wins). ValueError when the path runs into a value that is not an object."""
    parent = message
    for part in path[:-1]:
        child = parent.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{part} is already set to a value that is not an object")
        parent = child
    leaf = path[-1]
    if len(path) == 1 and leaf in ("properties", "traits", "context"):
        if not isinstance(value, dict):
            raise ValueError(f"{leaf} must be a JSON object")
        existing = parent.get(leaf)
        parent[leaf] = {**value, **existing} if isinstance(existing, dict) else value
    elif isinstance(parent.get(leaf), dict) and isinstance(value, dict):
        parent[leaf] = {**value, **parent[leaf]}
    else:
        parent[leaf] = value
