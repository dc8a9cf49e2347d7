"""Validate a condition written in any accepted form and return its canonical form.

The canonical form is what `Condition.spec` holds: plain dicts, lists and JSON
scalars; `all`/`any` spelled `and`/`or`; text conditions parsed; `score.` spelled
`scores.`; dates as canonical ISO strings. Every refusal is a `DefinitionError`
naming the path of the offending node, e.g. `segments[2].condition.and[1].gte`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from touchpoint.core.conditions.operands import (
    MAX_DEPTH,
    OPERATOR_SET,
    OPERATORS,
    CanonicalSpec,
    check_field,
    check_operand,
    type_name,
)
from touchpoint.core.conditions.text import parse_text
from touchpoint.core.errors import DefinitionError

COMBINATORS = {"and": "and", "all": "and", "or": "or", "any": "or", "not": "not"}


def child_path(path: str, key: str) -> str:
    """The path of `key` under `path` (`condition` + `and` -> `condition.and`)."""
    return f"{path}.{key}" if path else key


def normalize(spec: Any, path: str, depth: int = 0) -> CanonicalSpec:
    """Check `spec` and return it in canonical form; DefinitionError(path, reason) if bad."""
    if depth > MAX_DEPTH:
        raise DefinitionError(path, f"conditions may nest at most {MAX_DEPTH} levels deep")
    if isinstance(spec, bool):
        return spec
    if isinstance(spec, str):
        return parse_text(spec, path=path)
    if isinstance(spec, Mapping):
        return _normalize_node(spec, path, depth)
    raise DefinitionError(
        path, f"a condition is a mapping, a text condition or true/false, not {type_name(spec)}"
    )


def _normalize_node(node: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
    keys = list(node)
    for key in keys:
        if not isinstance(key, str):
            raise DefinitionError(path, f"condition keys must be strings, not {type_name(key)}")
    combinators = [key for key in keys if key in COMBINATORS]
    if combinators:
        if len(keys) != 1:
            others = ", ".join(repr(key) for key in keys if key != combinators[0])
            raise DefinitionError(
                path, f"a `{combinators[0]}` node takes no other keys, found {others}"
            )
        return _normalize_combinator(combinators[0], node[combinators[0]], path, depth)
    if "segment" in node:
        if len(keys) != 1:
            others = ", ".join(repr(key) for key in keys if key != "segment")
            raise DefinitionError(path, f"a `segment` node takes no other keys, found {others}")
        name = node["segment"]
        if not isinstance(name, str) or not name.strip():
            what = "an empty name" if isinstance(name, str) else type_name(name)
            raise DefinitionError(
                child_path(path, "segment"), f"`segment` takes a segment name, not {what}"
            )
        return {"segment": name}
    if "field" in node:
        return _normalize_comparison(node, keys, path)
    if any(key in OPERATOR_SET for key in keys):
        raise DefinitionError(path, "a comparison needs `field` (the dotted path it tests)")
    found = ", ".join(repr(key) for key in keys) or "nothing"
    expected = "and/or/not (all/any), `field` with an operator, or `segment`"
    raise DefinitionError(path, f"expected {expected}; found {found}")


def _normalize_combinator(key: str, value: Any, path: str, depth: int) -> dict[str, Any]:
    here = child_path(path, key)
    canonical_key = COMBINATORS[key]
    if canonical_key == "not":
        return {"not": normalize(value, here, depth + 1)}
    if not isinstance(value, list | tuple) or not value:
        what = "an empty list" if isinstance(value, list | tuple) else type_name(value)
        raise DefinitionError(here, f"`{key}` needs a non-empty list of conditions, not {what}")
    children = [normalize(item, f"{here}[{index}]", depth + 1) for index, item in enumerate(value)]
    return {canonical_key: children}


def _normalize_comparison(node: Mapping[str, Any], keys: list[str], path: str) -> dict[str, Any]:
    try:
        field = check_field(node["field"])
    except ValueError as error:
        raise DefinitionError(child_path(path, "field"), str(error)) from None
    operators = [key for key in keys if key != "field"]
    for key in operators:
        if key not in OPERATOR_SET:
            raise DefinitionError(
                path, f"unknown operator {key!r}; expected one of {', '.join(OPERATORS)}"
            )
    if not operators:
        raise DefinitionError(
            path, f"a comparison on {field!r} needs an operator: one of {', '.join(OPERATORS)}"
        )
    if len(operators) > 1:
        raise DefinitionError(
            path, f"a comparison takes exactly one operator, found {', '.join(operators)}"
        )
    op = operators[0]
    try:
        operand = check_operand(op, node[op])
    except ValueError as error:
        raise DefinitionError(child_path(path, op), str(error)) from None
    return {"field": field, op: operand}
