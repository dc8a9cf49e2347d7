"""No condition, text or dict, makes validation fail with anything but a DefinitionError, and
whatever validates evaluates without raising at any time the clock can show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from touchpoint.core.conditions import OPERATORS, compile_condition
from touchpoint.core.errors import DefinitionError

TOKENS = [
    "features.views", "traits.plan", "last_seen", "segments", "and", "or", "not", "(", ")",
    "[", "]", ",", "==", "!=", ">=", "<", "within", "older_than", "in", "not_in", "before",
    "after", "exists", "contains", "starts_with", "true", "false", "null", "'pro'", '"x"',
    "1", "-1", "2.5", "1e999", "-1e400", "9" * 5000, "30d", "36500d", "36501d", "800000d",
    "99999999999999999999d", "1.5h", "0ms", "'2026-01-01'", "'9999-12-31T23:59:59Z'",
    "'0001-01-01T00:00:00Z'", "'\\u12'", "'\\q'", "µ", "²", "٣", "é", "\x00", "=", "'",
]  # fmt: skip
texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(TOKENS), max_size=10).map(" ".join),
)
operands = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["30d", "800000d", "1e999d", "-1d", "2026-01-01", "0001-01-01"]),
    st.lists(st.integers() | st.text(max_size=4), max_size=3),
)
nodes = st.builds(
    lambda field, op, operand: {"field": field, op: operand},
    st.sampled_from(["traits.plan", "last_seen", "", "a..b", 7]),
    st.sampled_from([*OPERATORS, "bogus"]),
    operands,
)
MOMENTS = [
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2026, 11, 21, 12, tzinfo=UTC),
    datetime(2199, 12, 31, tzinfo=UTC),
]
CONTEXTS: list[dict[str, Any]] = [
    {},
    {"last_seen": "2026-11-20T00:00:00Z", "traits": {"plan": "pro"}, "features": {"views": 3}},
    {"last_seen": "0001-01-01T00:00:00Z", "traits": {"plan": 10**30}, "segments": ["a"]},
    {"last_seen": "9999-12-31T23:59:59Z", "features": {"views": float("nan")}},
]


def check(spec: Any) -> None:
    try:
        condition = compile_condition(spec)
    except DefinitionError:
        return
    for now in MOMENTS:
        for context in CONTEXTS:
            assert condition(context, now) in (True, False)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_any_text_is_a_condition_or_a_definition_error(text: str) -> None:
    check(text)


@settings(max_examples=400, deadline=None)
@given(st.one_of(nodes, st.builds(lambda a, b: {"and": [a, {"not": b}]}, nodes, nodes)))
def test_any_dict_is_a_condition_or_a_definition_error(spec: dict[str, Any]) -> None:
    check(spec)


@pytest.mark.parametrize(
    "text",
    [
        "last_seen within 800000d",
        "last_seen within 36501d",
        "last_seen older_than 1e999",
        "traits.a older_than 99999999999999999999d",
        "traits.n == " + "9" * 5000,
        "traits.µ == 1",
        "traits.plan == ²",
    ],
)
def test_texts_that_crashed_validation_are_definition_errors(text: str) -> None:
    with pytest.raises(DefinitionError):
        compile_condition(text)
