"""The condition language: semantics of every operator, the text form, and refusals."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

import touchpoint.core.conditions as conditions_package
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.conditions import (
    Condition,
    compile_condition,
    parse_text,
    validate_condition,
)
from touchpoint.core.errors import DefinitionError

NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)

PROFILE: dict[str, Any] = {
    "traits": {
        "plan": "pro",
        "age": 42,
        "ltv": 199.5,
        "vip": True,
        "country": "FR",
        "email": "h1:abc",
        "nickname": None,
        "tags": ["early", "beta", 3],
        "address": {"city": "Paris", "zip": "75001"},
        "signup_at": "2024-01-10T08:30:00.000Z",
    },
    "features": {"views_7d": 5, "recent_products": ["sku-1", "sku-2"], "cart": {}},
    "segments": ["high_value", "newsletter"],
    "scores": {"propensity_30d": 0.72},
    "context": {"page": {"path": "/shoes/running"}},
    "last_seen": "2024-06-10T12:00:00.000Z",
    "first_seen": datetime(2023, 1, 1, tzinfo=UTC),
}


def check(spec: Any, context: Mapping[str, Any] = PROFILE, now: datetime = NOW) -> bool:
    return compile_condition(spec)(context, now)


def field(path: str, op: str, operand: Any) -> dict[str, Any]:
    return {"field": path, op: operand}


# -- every operator, true and false -----------------------------------------------------

OPERATOR_CASES = [
    # eq / ne
    (field("traits.plan", "eq", "pro"), True),
    (field("traits.plan", "eq", "free"), False),
    (field("traits.age", "eq", 42), True),
    (field("traits.age", "eq", 42.0), True),
    (field("traits.age", "eq", 41), False),
    (field("traits.vip", "eq", True), True),
    (field("traits.vip", "eq", False), False),
    (field("traits.tags", "eq", ["early", "beta", 3]), True),
    (field("traits.address", "eq", {"city": "Paris", "zip": "75001"}), True),
    (field("traits.address", "eq", {"city": "Paris"}), False),
    (field("traits.plan", "ne", "free"), True),
    (field("traits.plan", "ne", "pro"), False),
    (field("traits.age", "ne", 40), True),
    # null: == null is absent-or-null, != null is present
    (field("traits.nickname", "eq", None), True),
    (field("traits.missing", "eq", None), True),
    (field("traits.plan", "eq", None), False),
    (field("traits.age", "ne", None), True),
    (field("traits.nickname", "ne", None), False),
    # ordering
    (field("traits.age", "gt", 41), True),
    (field("traits.age", "gt", 42), False),
    (field("traits.age", "gte", 42), True),
    (field("traits.age", "gte", 43), False),
    (field("traits.ltv", "lt", 200), True),
    (field("traits.ltv", "lt", 199.5), False),
    (field("traits.ltv", "lte", 199.5), True),
    (field("traits.ltv", "lte", 100), False),
    (field("traits.plan", "gt", "free"), True),
    (field("traits.plan", "lt", "free"), False),
    # membership
    (field("traits.country", "in", ["FR", "DE"]), True),
    (field("traits.country", "in", ["US", "DE"]), False),
    (field("traits.age", "in", [1, 42]), True),
    (field("traits.age", "in", ["42"]), False),
    (field("traits.country", "not_in", ["US", "DE"]), True),
    (field("traits.country", "not_in", ["FR"]), False),
    (field("traits.tags", "in", [["early", "beta", 3], "x"]), True),
    # contains: list item, substring, mapping key
    (field("traits.tags", "contains", "beta"), True),
    (field("traits.tags", "contains", "gamma"), False),
    (field("traits.tags", "contains", 3), True),
    (field("traits.tags", "contains", 4), False),
    (field("traits.email", "contains", "abc"), True),
    (field("traits.email", "contains", "xyz"), False),
    (field("traits.address", "contains", "city"), True),
    (field("traits.address", "contains", "street"), False),
    # affixes
    (field("context.page.path", "starts_with", "/shoes"), True),
    (field("context.page.path", "starts_with", "/hats"), False),
    (field("context.page.path", "ends_with", "running"), True),
    (field("context.page.path", "ends_with", "walking"), False),
    # exists
    (field("traits.email", "exists", True), True),
    (field("traits.nickname", "exists", True), False),
    (field("traits.missing", "exists", True), False),
    (field("traits.missing", "exists", False), True),
    (field("traits.email", "exists", False), False),
    # time
    (field("last_seen", "within", "30d"), True),
    (field("last_seen", "within", "2d"), False),
    (field("last_seen", "older_than", "2d"), True),
    (field("last_seen", "older_than", "30d"), False),
    (field("traits.signup_at", "before", "2024-02-01T00:00:00Z"), True),
    (field("traits.signup_at", "before", "2024-01-01"), False),
    (field("traits.signup_at", "after", "2024-01-01"), True),
    (field("traits.signup_at", "after", "2024-02-01T00:00:00+01:00"), False),
    (field("first_seen", "before", "2023-06-01"), True),
    # segment shorthand
    ({"segment": "high_value"}, True),
    ({"segment": "churned"}, False),
    # literals
    (True, True),
    (False, False),
]


@pytest.mark.parametrize(("spec", "expected"), OPERATOR_CASES, ids=lambda v: json.dumps(v))
def test_every_operator(spec: Any, expected: bool) -> None:
    assert check(spec) is expected


# -- kinds: mismatches and missing fields are false, never errors -----------------------

MISMATCH_CASES = [
    field("traits.plan", "gt", 3),  # string vs number
    field("traits.age", "gt", "3"),  # number vs string
    field("traits.vip", "gt", 0),  # booleans are not numbers
    field("traits.vip", "eq", 1),
    field("traits.age", "eq", True),
    field("traits.age", "eq", "42"),
    field("traits.age", "ne", "x"),  # ne of another kind is false too
    field("traits.vip", "in", [1]),
    field("traits.age", "in", [True]),
    field("traits.tags", "in", ["early", "beta"]),  # a list is not an item of the list
    field("traits.age", "not_in", ["a", "b"]),
    field("traits.age", "contains", "4"),
    field("traits.tags", "contains", True),
    field("traits.age", "starts_with", "4"),
    field("traits.tags", "ends_with", "beta"),
    field("traits.plan", "within", "30d"),  # not a timestamp
    field("traits.age", "older_than", "1d"),  # a number is not an epoch here
    field("traits.plan", "before", "2030-01-01"),
    field("traits.plan", "gt", "2020-01-01"),  # a timestamp operand needs a time
    field("traits.address", "gt", 1),
    field("traits.address.city.name", "eq", "Paris"),  # walking into a string
    field("features.recent_products.x", "eq", "sku-1"),  # non-index into a list
    field("features.recent_products.7", "eq", "sku-1"),  # index out of range
]


@pytest.mark.parametrize("spec", MISMATCH_CASES, ids=lambda v: json.dumps(v))
def test_type_mismatch_is_false(spec: Any) -> None:
    assert check(spec) is False


ODD_VALUES: list[Any] = [object(), {1, 2}, b"bytes", float("nan"), [{"a": 1}], {"k": [1]}]


@pytest.mark.parametrize(
    "odd", ODD_VALUES, ids=["object", "set", "bytes", "nan", "list_of_dict", "dict_of_list"]
)
@pytest.mark.parametrize(
    "spec",
    [
        field("x", "eq", "a"),
        field("x", "ne", "a"),
        field("x", "gt", 1),
        field("x", "lte", "2024-01-01"),
        field("x", "in", ["a", 1, None, [1]]),
        field("x", "not_in", ["a", 1]),
        field("x", "contains", "a"),
        field("x", "contains", 1),
        field("x", "starts_with", "a"),
        field("x", "within", "1d"),
        field("x", "after", "2024-01-01"),
    ],
    ids=lambda v: json.dumps(v),
)
def test_odd_values_never_raise(spec: Any, odd: Any) -> None:
    assert compile_condition(spec)({"x": odd}, NOW) in (True, False)


MISSING_FALSE = [
    field("traits.missing", op, operand)
    for op, operand in [
        ("eq", "a"),
        ("ne", "a"),
        ("gt", 1),
        ("gte", 1),
        ("lt", 1),
        ("lte", 1),
        ("in", ["a"]),
        ("not_in", ["a"]),
        ("contains", "a"),
        ("starts_with", "a"),
        ("ends_with", "a"),
        ("exists", True),
        ("within", "1d"),
        ("older_than", "1d"),
        ("before", "2030-01-01"),
        ("after", "2000-01-01"),
    ]
]


@pytest.mark.parametrize("spec", MISSING_FALSE, ids=lambda v: json.dumps(v))
def test_missing_field_is_false(spec: Any) -> None:
    assert check(spec) is False
    assert check(spec, {}) is False
    assert check(spec, {"traits": None}) is False
    assert check(spec, {"traits": "not a mapping"}) is False


def test_null_in_list_matches_absent_and_null() -> None:
    condition = compile_condition(field("traits.plan", "in", [None, "free"]))
    assert condition({"traits": {}}, NOW) is True
    assert condition({"traits": {"plan": None}}, NOW) is True
    assert condition({"traits": {"plan": "free"}}, NOW) is True
    assert condition({"traits": {"plan": "pro"}}, NOW) is False
    not_in = compile_condition(field("traits.plan", "not_in", [None, "free"]))
    assert not_in({"traits": {}}, NOW) is False
    assert not_in({"traits": {"plan": "pro"}}, NOW) is True


# -- field resolution -------------------------------------------------------------------


def test_resolution_walks_mappings_lists_and_aliases() -> None:
    assert check(field("features.recent_products.0", "eq", "sku-1"))
    assert check(field("features.recent_products.1", "eq", "sku-2"))
    assert check(field("features.recent_products.-1", "eq", "sku-2"))
    assert check(field("score.propensity_30d", "gt", 0.6))
    assert check("score.propensity_30d > 0.6")
    assert check("scores.propensity_30d > 0.6")
    deep = {"a": {"b": {"c": {"d": [{"e": "yes"}]}}}}
    assert check(field("a.b.c.d.0.e", "eq", "yes"), deep)
    assert not check(field("a.b.c.d.1.e", "eq", "yes"), deep)
    proxied = MappingProxyType({"traits": MappingProxyType({"plan": "pro"})})
    assert check(field("traits.plan", "eq", "pro"), proxied)
    assert check({"segment": "vip"}, {"segments": {"vip": "2024-01-01T00:00:00.000Z"}})
    assert check({"segment": "vip"}, {"segments": ("vip",)})
    assert check(field("traits.a.b", "eq", 1), {"traits": {"a": {"b": 1}, "a.b": 2}})


def test_segment_shorthand_is_membership_not_substring() -> None:
    assert check({"segment": "vip"}, {"segments": ["vip"]})
    assert not check({"segment": "vip"}, {"segments": ["vip_plus"]})
    assert not check({"segment": "vip"}, {"segments": "vip_plus"})
    assert not check({"segment": "vip"}, {"segments": {"vip_plus": "2024-01-01"}})
    assert check({"segment": "vip"}, {"segments": frozenset({"vip"})})
    assert not check({"segment": "vip"}, {})


# -- combinators ------------------------------------------------------------------------


def test_nested_combinators_and_synonyms() -> None:
    spec = {
        "and": [
            {"or": [field("traits.plan", "eq", "free"), field("traits.age", "gte", 40)]},
            {"not": {"segment": "churned"}},
            {"any": [False, {"all": [True, field("traits.vip", "eq", True)]}]},
        ]
    }
    assert check(spec)
    assert not check({"not": spec})
    assert not check({"and": [True, True, False]})
    assert check({"or": [False, False, True]})
    assert check({"and": [True]})
    assert not check({"or": [False]})
    assert not check({"and": [spec, {"segment": "churned"}]}, PROFILE | {"segments": ["churned"]})


def test_combinators_short_circuit() -> None:
    reads: list[str] = []

    class Recording(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            reads.append(key)
            return super().get(key, default)

    context = Recording(a=1, b=2, c=3)
    compile_condition({"or": [field("a", "eq", 1), field("b", "eq", 2), field("c", "eq", 3)]})(
        context
    )
    assert reads == ["a"]
    reads.clear()
    compile_condition({"and": [field("a", "eq", 9), field("b", "eq", 2)]})(context)
    assert reads == ["a"]


# -- text form == canonical form --------------------------------------------------------

TEXT_CASES: list[tuple[str, Any]] = [
    (
        "features.views_7d >= 3 and traits.plan == 'pro'",
        {"and": [field("features.views_7d", "gte", 3), field("traits.plan", "eq", "pro")]},
    ),
    (
        "not (segments contains 'churned') or last_seen within 30d",
        {
            "or": [
                {"not": field("segments", "contains", "churned")},
                field("last_seen", "within", "30d"),
            ]
        },
    ),
    ("traits.country in ['FR', 'DE']", field("traits.country", "in", ["FR", "DE"])),
    ("traits.email exists", field("traits.email", "exists", True)),
    ("score.propensity_30d > 0.6", field("scores.propensity_30d", "gt", 0.6)),
    ("context.page.path starts_with '/shoes'", field("context.page.path", "starts_with", "/shoes")),
    ("traits.vip == true", field("traits.vip", "eq", True)),
    ("traits.age != null", field("traits.age", "ne", None)),
    ('traits.plan != "free"', field("traits.plan", "ne", "free")),
    ("traits.age < -3", field("traits.age", "lt", -3)),
    ("traits.age<=-3.5", field("traits.age", "lte", -3.5)),
    ("traits.ltv > 1e3", field("traits.ltv", "gt", 1000.0)),
    ("traits.country not in ['US']", field("traits.country", "not_in", ["US"])),
    ("traits.country not_in ['US']", field("traits.country", "not_in", ["US"])),
    ("traits.x in []", field("traits.x", "in", [])),
    ("traits.x in [1, 'a', true, null, [2]]", field("traits.x", "in", [1, "a", True, None, [2]])),
    ("traits.email ends_with '.fr'", field("traits.email", "ends_with", ".fr")),
    ("last_seen older_than 7d", field("last_seen", "older_than", "7d")),
    ("last_seen within 1.5h", field("last_seen", "within", "1.5h")),
    ("last_seen within 3600", field("last_seen", "within", 3600)),
    ("traits.signup_at before '2024-01-01'", field("traits.signup_at", "before", "2024-01-01")),
    ("traits.signup_at after '2024-01-01'", field("traits.signup_at", "after", "2024-01-01")),
    ("features.recent_products.0 == 'sku-1'", field("features.recent_products.0", "eq", "sku-1")),
    ("true", True),
    ("false or true", {"or": [False, True]}),
    (
        "a == 1 or b == 2 and not c == 3",
        {"or": [field("a", "eq", 1), {"and": [field("b", "eq", 2), {"not": field("c", "eq", 3)}]}]},
    ),
    (
        "(a == 1 or b == 2) and c == 3",
        {"and": [{"or": [field("a", "eq", 1), field("b", "eq", 2)]}, field("c", "eq", 3)]},
    ),
    ("not not a exists", {"not": {"not": field("a", "exists", True)}}),
    ('a == \'it\\\'s\' and b == "say \\"hi\\""', None),
    ("a == '\\u00e9\\n\\t\\\\'", field("a", "eq", "é\n\t\\")),
    (
        "  a  ==  'x'\n  and b exists  ",
        {"and": [field("a", "eq", "x"), field("b", "exists", True)]},
    ),
]


@pytest.mark.parametrize(("text", "canonical"), TEXT_CASES, ids=[t for t, _ in TEXT_CASES])
def test_text_form_equals_canonical_form(text: str, canonical: Any) -> None:
    if canonical is None:
        canonical = {"and": [field("a", "eq", "it's"), field("b", "eq", 'say "hi"')]}
    assert parse_text(text) == canonical
    from_text = compile_condition(text)
    from_canonical = compile_condition(canonical)
    assert from_text.spec == from_canonical.spec == canonical
    assert from_text == from_canonical
    for context in (PROFILE, {}, {"a": 1, "b": 2, "c": 3}, {"traits": {"x": [2]}}):
        assert from_text(context, NOW) == from_canonical(context, NOW)


def test_text_inside_canonical_and_results() -> None:
    spec = {"and": ["traits.plan == 'pro'", {"or": ["traits.age > 50", "traits.vip == true"]}]}
    condition = compile_condition(spec)
    assert condition.spec == {
        "and": [
            field("traits.plan", "eq", "pro"),
            {"or": [field("traits.age", "gt", 50), field("traits.vip", "eq", True)]},
        ]
    }
    assert condition(PROFILE, NOW)
    assert compile_condition("features.views_7d >= 3 and traits.plan == 'pro'")(PROFILE)
    assert not compile_condition("features.views_7d >= 6 or traits.plan == 'free'")(PROFILE)


# -- time -------------------------------------------------------------------------------


def test_within_and_older_than_with_fixed_now() -> None:
    within = compile_condition(field("t", "within", "7d"))
    older = compile_condition(field("t", "older_than", "7d"))
    week_ago = NOW - timedelta(days=7)
    cases = {
        NOW - timedelta(days=1): (True, False),
        week_ago: (True, False),  # the boundary is inside the window
        week_ago - timedelta(milliseconds=1): (False, True),
        NOW: (True, False),
        NOW + timedelta(seconds=1): (False, False),  # the future is not "within the last"
    }
    for moment, (is_within, is_older) in cases.items():
        for value in (moment, isoformat(moment), moment.replace(tzinfo=None)):
            assert within({"t": value}, NOW) is is_within, value
            assert older({"t": value}, NOW) is is_older, value


def test_times_in_other_offsets_and_forms() -> None:
    condition = compile_condition(field("t", "within", "1h"))
    assert condition({"t": "2024-06-15T13:30:00+02:00"}, NOW)  # 11:30 UTC
    assert not condition({"t": "2024-06-15T13:30:00"}, NOW)  # naive is UTC: in the future
    assert compile_condition(field("t", "older_than", "1d"))({"t": date(2024, 6, 1)}, NOW)
    naive_now = NOW.replace(tzinfo=None)
    assert condition({"t": "2024-06-15T11:30:00Z"}, naive_now)


def test_now_defaults_to_the_clock() -> None:
    condition = compile_condition("last_seen within 2d")
    assert condition({"last_seen": isoformat(utcnow() - timedelta(days=1))})
    assert not condition({"last_seen": isoformat(utcnow() - timedelta(days=3))})


def test_timestamp_operands_compare_as_times() -> None:
    value = {"t": "2024-01-01T10:00:00+02:00"}  # 08:00 UTC
    assert check(field("t", "gt", "2024-01-01T07:59:00Z"), value)
    assert not check(field("t", "gt", "2024-01-01T08:00:00Z"), value)
    assert check(field("t", "gte", "2024-01-01T08:00:00Z"), value)
    assert check(field("t", "eq", "2024-01-01T08:00:00.000Z"), value)
    assert not check(field("t", "ne", "2024-01-01T08:00:00.000Z"), value)
    assert check(field("t", "gt", "2024-01-01"), {"t": datetime(2024, 1, 1, 0, 0, 1)})
    assert check(field("t", "eq", "2024-01-01"), {"t": date(2024, 1, 1)})
    assert check(field("t", "in", ["2024-01-01T00:00:00Z"]), {"t": datetime(2024, 1, 1)})
    assert check(field("t", "before", "2024-01-02"), {"t": "2024-01-01"})
    assert not check(field("t", "before", "2024-01-02"), {"t": "Jan 1 2024"})


def test_yaml_dates_become_canonical_strings() -> None:
    condition = compile_condition(
        {
            "or": [
                field("t", "after", date(2024, 1, 1)),
                field("t", "eq", datetime(2024, 1, 1, 9, 0, tzinfo=UTC)),
                field("t", "in", (1, 2)),
            ]
        }
    )
    assert condition.spec == {
        "or": [
            field("t", "after", "2024-01-01T00:00:00.000Z"),
            field("t", "eq", "2024-01-01T09:00:00.000Z"),
            field("t", "in", [1, 2]),
        ]
    }
    assert json.loads(json.dumps(condition.spec)) == condition.spec
    assert condition({"t": "2024-01-01T09:00:00Z"}, NOW)


# -- metadata ---------------------------------------------------------------------------


def test_fields_and_time_dependence() -> None:
    condition = compile_condition(
        "features.views_7d >= 3 and (segments contains 'a' or last_seen within 30d)"
        " and score.p > 0.5"
    )
    assert condition.fields == frozenset({"features.views_7d", "segments", "last_seen", "scores.p"})
    assert condition.time_dependent is True
    assert compile_condition({"segment": "x"}).fields == frozenset({"segments"})
    assert compile_condition({"not": field("t", "older_than", "1d")}).time_dependent
    assert not compile_condition(field("t", "before", "2024-01-01")).time_dependent
    assert not compile_condition(field("t", "gt", "2024-01-01")).time_dependent
    assert compile_condition(True).fields == frozenset()
    assert not compile_condition(True).time_dependent


def test_condition_is_a_frozen_value() -> None:
    first = compile_condition({"all": ["a == 1"]})
    second = compile_condition({"and": [field("a", "eq", 1)]})
    assert first == second
    assert hash(first) == hash(second)
    assert isinstance(first, Condition)
    with pytest.raises(AttributeError):
        first.time_dependent = True  # type: ignore[misc]
    assert compile_condition(first.spec).spec == first.spec


# -- refusals name the path -------------------------------------------------------------

ERROR_CASES: list[tuple[Any, str, str]] = [
    (field("traits.plan", "equals", "pro"), "segments[2].condition", "unknown operator 'equals'"),
    (
        {"field": "traits.age", "gt": 1, "lt": 9},
        "segments[2].condition",
        "exactly one operator, found gt, lt",
    ),
    ({"field": "traits.age"}, "segments[2].condition", "needs an operator"),
    (field("traits.country", "in", "FR"), "segments[2].condition.in", "takes a list"),
    (field("traits.country", "not_in", {"a": 1}), "segments[2].condition.not_in", "takes a list"),
    (field("last_seen", "within", "30x"), "segments[2].condition.within", "not a duration"),
    (field("last_seen", "older_than", "-1d"), "segments[2].condition.older_than", "duration"),
    (field("last_seen", "within", True), "segments[2].condition.within", "duration"),
    ({"field": 3, "eq": 1}, "segments[2].condition.field", "dotted path"),
    ({"field": "traits..plan", "eq": 1}, "segments[2].condition.field", "dotted path"),
    ({"field": "", "eq": 1}, "segments[2].condition.field", "dotted path"),
    ({"and": []}, "segments[2].condition.and", "non-empty list"),
    ({"or": "x == 1"}, "segments[2].condition.or", "non-empty list"),
    (
        {"and": [True, field("traits.age", "gte", [1])]},
        "segments[2].condition.and[1].gte",
        "compares with a number",
    ),
    (
        {"any": [True, {"not": field("a", "gt", None)}]},
        "segments[2].condition.any[1].not.gt",
        "compares with a number",
    ),
    (field("a", "gt", True), "segments[2].condition.gt", "not a boolean"),
    (field("a", "contains", ["x"]), "segments[2].condition.contains", "takes a string"),
    (field("a", "contains", None), "segments[2].condition.contains", "takes a string"),
    (field("a", "starts_with", 1), "segments[2].condition.starts_with", "takes a string"),
    (field("a", "exists", "yes"), "segments[2].condition.exists", "true or false"),
    (field("a", "before", "yesterday"), "segments[2].condition.before", "ISO-8601"),
    (field("a", "eq", {1, 2}), "segments[2].condition.eq", "not a JSON value"),
    (field("a", "eq", float("nan")), "segments[2].condition.eq", "finite"),
    ({"and": [True], "or": [True]}, "segments[2].condition", "takes no other keys"),
    ({"segment": ""}, "segments[2].condition.segment", "segment name"),
    ({"segment": "a", "field": "b"}, "segments[2].condition", "takes no other keys"),
    ({"eq": 1}, "segments[2].condition", "needs `field`"),
    ({"when": 1}, "segments[2].condition", "found 'when'"),
    ({}, "segments[2].condition", "found nothing"),
    (3, "segments[2].condition", "not a number"),
    (None, "segments[2].condition", "not null"),
    ([field("a", "eq", 1)], "segments[2].condition", "not a list"),
    ({"not": [True]}, "segments[2].condition.not", "not a list"),
    ({1: True}, "segments[2].condition", "keys must be strings"),
    ({"and": ["a == 1", "b =="]}, "segments[2].condition.and[1]", "at column 5"),
]


@pytest.mark.parametrize(
    ("spec", "path", "reason"), ERROR_CASES, ids=[repr(c[0]) for c in ERROR_CASES]
)
def test_errors_name_the_path(spec: Any, path: str, reason: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        compile_condition(spec, path="segments[2].condition")
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert caught.value.details == {"path": path, "reason": caught.value.reason}


TEXT_ERROR_CASES = [
    ("traits.plan == 'pro' )", "unexpected token ')' at column 22"),
    ("traits.plan == 'pro", "unterminated string starting at column 16"),
    ('a == "x', "unterminated string starting at column 6"),
    ("a == 'x\\", "unterminated string starting at column 6"),
    ("a == 'x\\q'", "unknown escape '\\q' at column 8"),
    ("a == '\\u12'", "four hex digits at column 7"),
    ("a >", "unexpected end of condition at column 4"),
    ("a = 1", "unexpected '=' at column 3; compare with '=='"),
    ("(a exists", "unexpected end of condition at column 10; expected ')'"),
    ("a exists)", "unexpected token ')' at column 9"),
    ("a within 30x", "'30x' is not a duration such as 30d, 24h, 15m or 10s at column 10"),
    ("a within 'soon'", "unexpected token \"'soon'\" at column 10"),
    ("a in 'FR'", "expected a list"),
    ("a not 'FR'", "unexpected token \"'FR'\" at column 7; expected 'in' after 'not'"),
    ("a in ['x' 'y']", "expected ',' or ']'"),
    ("a is 1", "unexpected token 'is' at column 3"),
    ("a == 1 and", "unexpected end of condition at column 11"),
    ("and a == 1", "unexpected token 'and' at column 1"),
    ("a == 1 b == 2", "unexpected token 'b' at column 8"),
    ("a > true", "`gt` compares with a number, a string or a timestamp, not a boolean at column 5"),
    ("a before 'soon'", "ISO-8601"),
    ("a == 1 # note", "unexpected character '#' at column 8"),
    ("", "empty condition at column 1"),
    ("   ", "empty condition at column 1"),
    ("a == 1\nand b ?", "unexpected character '?' at line 2, column 7"),
    ("a..b == 1", "unexpected character '.' at column 2"),
    ("a == 1e999", "finite"),
]


@pytest.mark.parametrize(("text", "reason"), TEXT_ERROR_CASES, ids=[t for t, _ in TEXT_ERROR_CASES])
def test_text_errors_give_path_and_column(text: str, reason: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        compile_condition(text, path="segments[0].condition")
    assert caught.value.path == "segments[0].condition"
    assert reason in caught.value.reason


def test_parse_text_error_matches_the_documented_shape() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_text("(traits.age > 3))", path="segments[0].condition")
    assert str(caught.value) == "segments[0].condition: unexpected token ')' at column 17"


def test_deep_nesting_is_refused_not_a_crash() -> None:
    spec: Any = True
    for _ in range(200):
        spec = {"not": spec}
    with pytest.raises(DefinitionError, match="nest"):
        compile_condition(spec)
    with pytest.raises(DefinitionError, match="nest"):
        compile_condition("not " * 200 + "a exists")
    with pytest.raises(DefinitionError, match="nest"):
        compile_condition("(" * 200 + "a exists" + ")" * 200)
    assert compile_condition("not " * 20 + "a exists")({"a": 1}) is True


def test_validate_condition() -> None:
    validate_condition("a == 1")
    validate_condition({"segment": "x"}, "x.y")
    with pytest.raises(DefinitionError) as caught:
        validate_condition({"and": []}, "triggers[0].when")
    assert caught.value.path == "triggers[0].when.and"


def test_workspace_config_refuses_a_bad_segment_condition() -> None:
    from touchpoint.config.workspace import parse_config

    good = {"segments": [{"name": "pro", "condition": "traits.plan == 'pro'"}]}
    assert parse_config(good).segments[0].name == "pro"
    bad = {
        "segments": [
            {"name": "pro", "condition": "traits.plan == 'pro'"},
            {"name": "hot", "condition": {"and": [True, {"field": "a", "gte": "x", "lt": 1}]}},
        ]
    }
    with pytest.raises(DefinitionError) as caught:
        parse_config(bad)
    assert caught.value.path == "segments[1].condition.and[1]"


# -- safety and speed -------------------------------------------------------------------


def test_no_eval_exec_or_python_parsing_in_the_package() -> None:
    package_dir = Path(conditions_package.__file__).parent
    sources = {path.name: path.read_text(encoding="utf-8") for path in package_dir.glob("*.py")}
    assert {"compiler.py", "text.py", "evaluate.py"} <= set(sources)
    for name, source in sources.items():
        for forbidden in ("eval(", "exec(", "import ast", "from ast", "pickle", "__import__"):
            assert forbidden not in source, f"{forbidden} in {name}"


def test_text_that_looks_like_python_is_data() -> None:
    with pytest.raises(DefinitionError):
        compile_condition("__import__('os').system('true')")
    condition = compile_condition("a == '__import__(\"os\")'")
    assert condition({"a": '__import__("os")'}) is True
