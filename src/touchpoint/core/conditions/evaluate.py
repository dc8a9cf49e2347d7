"""Closures for the leaves of a condition: field resolution and one builder per operator.

Everything that can be worked out from the definition (split paths, parsed
durations and timestamps, sets for `in` lists) is worked out here, once, so the
closures only look up a value and compare. Every closure returns a plain bool
and never raises on the data it meets: a missing field, null, or a value of
another kind than the operand makes the comparison false.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from touchpoint.core.clock import parse_duration
from touchpoint.core.conditions.operands import as_time, literal_time

Evaluator = Callable[[Mapping[str, Any], datetime], bool]
"""A compiled condition node: (context, now) -> bool."""

Resolver = Callable[[Mapping[str, Any]], Any]
"""Looks up one dotted field in a context; None when absent."""

_SEQUENCES = (list, tuple)
_COLLECTIONS = (list, tuple, set, frozenset)
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


# -- field resolution -------------------------------------------------------------------


def _step(value: Any, key: str, index: int | None) -> Any:
    if isinstance(value, Mapping):
        return value.get(key)
    if index is not None and isinstance(value, _SEQUENCES):
        try:
            return value[index]
        except IndexError:
            return None
    return None


def _index(part: str) -> int | None:
    digits = part[1:] if part.startswith("-") else part
    return int(part) if digits.isdigit() else None


def make_resolver(field: str) -> Resolver:
    """A function that walks `field` (dotted) through nested mappings and lists.

    `traits.plan` reads context["traits"]["plan"]; an integer segment indexes a
    list (`features.recent_products.0`). Anything missing resolves to None.
    """
    steps = tuple((part, _index(part)) for part in field.split("."))
    if len(steps) == 1:
        only = steps[0][0]

        def resolve_one(root: Mapping[str, Any]) -> Any:
            return root.get(only)

        return resolve_one
    if len(steps) == 2:
        first = steps[0][0]
        second, second_index = steps[1]

        def resolve_two(root: Mapping[str, Any]) -> Any:
            value = root.get(first)
            if type(value) is dict:
                return value.get(second)
            return _step(value, second, second_index)

        return resolve_two

    def resolve_many(root: Mapping[str, Any]) -> Any:
        value: Any = root
        for key, index in steps:
            value = value.get(key) if type(value) is dict else _step(value, key, index)
            if value is None:
                return None
        return value

    return resolve_many


# -- kinds and equality -----------------------------------------------------------------


def value_kind(value: object) -> str | None:
    """The kind a value compares as: string, bool, number, time, object, list (None: other)."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, date):
        return "time"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, _SEQUENCES):
        return "list"
    return None


def operand_kinds(operand: Any) -> frozenset[str]:
    """The kinds of value an operand can equal (a timestamp string also equals a time)."""
    kind = value_kind(operand)
    if kind is None:
        return frozenset()
    if kind == "string" and literal_time(operand) is not None:
        return frozenset({"string", "time"})
    return frozenset({kind})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(value: Any, operand: Any) -> bool:
    """Equality that keeps kinds apart (true is not 1) and walks lists and mappings."""
    if operand is None or isinstance(operand, bool):
        return value is operand
    if isinstance(operand, int | float):
        return _is_number(value) and bool(value == operand)
    if isinstance(operand, str):
        return isinstance(value, str) and value == operand
    if isinstance(operand, list):
        return (
            isinstance(value, _SEQUENCES)
            and len(value) == len(operand)
            and all(json_equal(item, other) for item, other in zip(value, operand, strict=True))
        )
    if isinstance(operand, dict):
        return (
            isinstance(value, Mapping)
            and len(value) == len(operand)
            and all(key in value and json_equal(value[key], item) for key, item in operand.items())
        )
    return False


def make_equals(operand: Any) -> Callable[[Any], bool]:
    """A test `value == operand` with kinds kept apart and timestamps compared as times."""
    if operand is None or isinstance(operand, bool):
        return lambda value: value is operand
    if isinstance(operand, int | float):
        return lambda value: _is_number(value) and bool(value == operand)
    if isinstance(operand, str):
        moment = literal_time(operand)
        if moment is None:
            return lambda value: isinstance(value, str) and value == operand

        def equals_time(value: Any) -> bool:
            if isinstance(value, str) and value == operand:
                return True
            other = as_time(value)
            return other is not None and other == moment

        return equals_time
    return lambda value: json_equal(value, operand)


# -- one builder per operator -----------------------------------------------------------


def _equality(resolve: Resolver, operand: Any, negate: bool) -> Evaluator:
    if operand is None:
        if negate:
            return lambda context, now: resolve(context) is not None
        return lambda context, now: resolve(context) is None
    equals = make_equals(operand)
    if not negate:

        def eq(context: Mapping[str, Any], now: datetime) -> bool:
            value = resolve(context)
            return value is not None and equals(value)

        return eq
    kinds = operand_kinds(operand)

    def ne(context: Mapping[str, Any], now: datetime) -> bool:
        value = resolve(context)
        return value is not None and value_kind(value) in kinds and not equals(value)

    return ne


def _ordering(resolve: Resolver, op: str, operand: Any) -> Evaluator:
    compare = _ORDERINGS[op]
    if _is_number(operand):

        def compare_number(context: Mapping[str, Any], now: datetime) -> bool:
            value = resolve(context)
            return _is_number(value) and compare(value, operand)

        return compare_number
    moment = literal_time(operand)
    if moment is not None:

        def compare_time(context: Mapping[str, Any], now: datetime) -> bool:
            other = as_time(resolve(context))
            return other is not None and compare(other, moment)

        return compare_time

    def compare_string(context: Mapping[str, Any], now: datetime) -> bool:
        value = resolve(context)
        return isinstance(value, str) and compare(value, operand)

    return compare_string


class _Members:
    """An `in` list split by kind into sets, so membership is a hash lookup."""

    def __init__(self, items: list[Any]) -> None:
        self.strings = frozenset(item for item in items if isinstance(item, str))
        self.numbers = frozenset(item for item in items if _is_number(item))
        self.booleans = frozenset(item for item in items if isinstance(item, bool))
        self.times = frozenset(
            moment for item in self.strings if (moment := literal_time(item)) is not None
        )
        self.others = [item for item in items if isinstance(item, list | dict)]
        self.has_null = any(item is None for item in items)
        self.kinds = frozenset().union(*(operand_kinds(item) for item in items))
        self.only_plain_strings = not self.times and len(self.strings) == len(items)

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, str):
            if value in self.strings:
                return True
            if not self.times:
                return False
            return as_time(value) in self.times
        if isinstance(value, bool):
            return value in self.booleans
        if isinstance(value, int | float):
            return value in self.numbers
        if isinstance(value, date):
            return as_time(value) in self.times
        return any(json_equal(value, other) for other in self.others)


def _membership(resolve: Resolver, items: list[Any], negate: bool) -> Evaluator:
    members = _Members(items)
    if negate:
        kinds = members.kinds

        def not_in(context: Mapping[str, Any], now: datetime) -> bool:
            value = resolve(context)
            return value is not None and value_kind(value) in kinds and value not in members

        return not_in
    if members.only_plain_strings:
        strings = members.strings

        def in_strings(context: Mapping[str, Any], now: datetime) -> bool:
            value = resolve(context)
            return isinstance(value, str) and value in strings

        return in_strings
    has_null = members.has_null

    def in_list(context: Mapping[str, Any], now: datetime) -> bool:
        value = resolve(context)
        return has_null if value is None else value in members

    return in_list


def _contains(resolve: Resolver, operand: Any) -> Evaluator:
    if isinstance(operand, str):
        searchable = (str, dict, *_COLLECTIONS, Mapping)

        def contains_string(context: Mapping[str, Any], now: datetime) -> bool:
            value = resolve(context)
            if isinstance(value, searchable):
                return operand in value
            return False

        return contains_string
    equals = make_equals(operand)

    def contains_value(context: Mapping[str, Any], now: datetime) -> bool:
        value = resolve(context)
        if isinstance(value, (*_COLLECTIONS, Mapping)):
            return any(equals(item) for item in value)
        return False

    return contains_value


def build_segment(name: str) -> Evaluator:
    """Membership in the `segments` namespace (a list of names or a mapping name -> time)."""
    resolve = make_resolver("segments")

    def in_segment(context: Mapping[str, Any], now: datetime) -> bool:
        segments = resolve(context)
        if isinstance(segments, (dict, *_COLLECTIONS, Mapping)):
            return name in segments
        return False

    return in_segment


def _affix(resolve: Resolver, op: str, operand: str) -> Evaluator:
    if op == "starts_with":
        return lambda context, now: (
            isinstance(value := resolve(context), str) and value.startswith(operand)
        )
    return lambda context, now: (
        isinstance(value := resolve(context), str) and value.endswith(operand)
    )


def _relative_time(resolve: Resolver, op: str, operand: str | int | float) -> Evaluator:
    span = parse_duration(operand)
    if op == "within":

        def within(context: Mapping[str, Any], now: datetime) -> bool:
            moment = as_time(resolve(context))
            return moment is not None and now - span <= moment <= now

        return within

    def older_than(context: Mapping[str, Any], now: datetime) -> bool:
        moment = as_time(resolve(context))
        return moment is not None and moment < now - span

    return older_than


def _absolute_time(resolve: Resolver, op: str, operand: str) -> Evaluator:
    limit = literal_time(operand)
    assert limit is not None, "the operand was checked when the condition was normalized"
    compare = operator.lt if op == "before" else operator.gt

    def at_time(context: Mapping[str, Any], now: datetime) -> bool:
        moment = as_time(resolve(context))
        return moment is not None and compare(moment, limit)

    return at_time


def build_leaf(field: str, op: str, operand: Any) -> Evaluator:
    """Compile one canonical comparison (`{"field": field, op: operand}`) into a closure."""
    resolve = make_resolver(field)
    if op in ("eq", "ne"):
        return _equality(resolve, operand, negate=op == "ne")
    if op in _ORDERINGS:
        return _ordering(resolve, op, operand)
    if op in ("in", "not_in"):
        return _membership(resolve, operand, negate=op == "not_in")
    if op == "contains":
        return _contains(resolve, operand)
    if op in ("starts_with", "ends_with"):
        return _affix(resolve, op, operand)
    if op == "exists":
        if operand:
            return lambda context, now: resolve(context) is not None
        return lambda context, now: resolve(context) is None
    if op in ("within", "older_than"):
        return _relative_time(resolve, op, operand)
    if op in ("before", "after"):
        return _absolute_time(resolve, op, operand)
    raise ValueError(f"unknown operator {op!r}")  # unreachable for normalized specs
