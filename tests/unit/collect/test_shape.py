"""The shape limits of an event: the path named, the fast pre-check, the pruned copy."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from touchpoint.collect.shape import ShapeLimits, may_exceed, prune, shape_problem

LIMITS = ShapeLimits(max_depth=4, max_object_keys=3, max_array_items=2)


def nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def test_the_path_names_the_first_container_past_the_limit() -> None:
    event = {"properties": {"list": [0, {"k": {"x": 1}}]}}
    problem = shape_problem(event, LIMITS)
    assert problem is not None
    assert problem.path == "properties.list[1].k"
    assert "at most 4 levels" in problem.reason
    assert shape_problem({"properties": {"list": [0, {"k": 1}]}}, LIMITS) is None


def test_width_is_limited_per_object_and_per_array() -> None:
    too_many_keys = shape_problem({"p": {"a": 1, "b": 2, "c": 3, "d": 4}}, LIMITS)
    assert too_many_keys is not None and too_many_keys.path == "p"
    assert "at most 3 keys; this one has 4" in too_many_keys.reason
    too_many_items = shape_problem({"p": [1, 2, 3]}, LIMITS)
    assert too_many_items is not None and too_many_items.path == "p"
    assert "at most 2 items" in too_many_items.reason


def test_long_keys_are_shortened_in_the_path() -> None:
    problem = shape_problem({"k" * 500: [[[[1]]]]}, LIMITS)
    assert problem is not None
    assert problem.path == "k" * 64 + "…[0][0][0]"


def test_the_walk_never_goes_past_the_limit_whatever_the_depth() -> None:
    problem = shape_problem(nested(100_000), ShapeLimits())
    assert problem is not None and problem.path.count(".") == 31


@given(
    st.recursive(
        st.integers(-(2**63), 2**63 - 1) | st.text(max_size=3),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_the_byte_precheck_never_misses_a_problem(value: object) -> None:
    if shape_problem(value, LIMITS) is not None:
        assert may_exceed(orjson.dumps(value), LIMITS)


def test_prune_keeps_what_fits_and_marks_what_does_not() -> None:
    pruned = prune({"a": [1, {"b": {"c": {"d": 1}}}], "e": 2}, 3, marker="cut")
    assert pruned == {"a": [1, {"b": "cut"}], "e": 2}
    deep = prune(nested(100_000), 32)
    assert orjson.dumps(deep)  # serializable again
    assert shape_problem(deep, ShapeLimits()) is None
