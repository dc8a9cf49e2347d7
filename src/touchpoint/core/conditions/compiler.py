"""Compile a condition once into nested closures: `Condition`, `compile_condition`.

A definition is validated and put in canonical form (see `normalize`), then
turned into plain Python closures that only look values up and compare them.
Nothing is ever evaluated as code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from touchpoint.core.clock import utcnow
from touchpoint.core.conditions.evaluate import Evaluator, build_leaf, build_segment
from touchpoint.core.conditions.normalize import normalize
from touchpoint.core.conditions.operands import RELATIVE_TIME, CanonicalSpec

logger = logging.getLogger(__name__)

# Passed as `now` to conditions that never read it, so they skip reading the clock.
_UNUSED_NOW = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: call it with a context (and optionally `now`) to get a bool.

    `spec` is the canonical form (JSON-serializable dicts, or True/False);
    `fields` the dotted paths it reads (the `segment` shorthand reads `segments`,
    `score.` is spelled `scores.`); `time_dependent` whether its result can change
    with time alone (it uses `within` or `older_than`). Calling it never raises on
    the data: missing fields and mismatched kinds are simply false.
    """

    spec: Any = field(hash=False)
    fields: frozenset[str]
    time_dependent: bool
    _evaluate: Evaluator = field(repr=False, compare=False, hash=False)

    def __call__(self, context: Mapping[str, Any], now: datetime | None = None) -> bool:
        """Evaluate against `context`; `now` (default: the current UTC time) is read once."""
        if not self.time_dependent:
            return self._evaluate(context, _UNUSED_NOW)
        if now is None:
            now = utcnow()
        elif now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return self._evaluate(context, now)


def compile_condition(spec: Any, *, path: str = "condition") -> Condition:
    """Validate `spec` (canonical dict form or text) and compile it into a `Condition`.

    Raises DefinitionError(path, reason) naming the offending node, e.g.
    `segments[2].condition.and[1].gte`, or the column for text conditions.
    """
    canonical = normalize(spec, path)
    fields: set[str] = set()
    evaluate, time_dependent = _build(canonical, fields)
    logger.debug("compiled condition at %s reading %s", path, sorted(fields))
    return Condition(canonical, frozenset(fields), time_dependent, evaluate)


def validate_condition(spec: Any, path: str = "condition") -> None:
    """Check that `spec` is a valid condition; DefinitionError(path, reason) if it is not."""
    compile_condition(spec, path=path)


def _always(context: Mapping[str, Any], now: datetime) -> bool:
    return True


def _never(context: Mapping[str, Any], now: datetime) -> bool:
    return False


def _build(spec: CanonicalSpec, fields: set[str]) -> tuple[Evaluator, bool]:
    """Closures for a canonical spec, collecting the fields it reads."""
    if spec is True:
        return _always, False
    if spec is False:
        return _never, False
    assert isinstance(spec, dict)
    if "not" in spec:
        child, time_dependent = _build(spec["not"], fields)
        return (lambda context, now: not child(context, now)), time_dependent
    if "and" in spec or "or" in spec:
        return _build_combination(spec, fields)
    if "segment" in spec:
        fields.add("segments")
        return build_segment(spec["segment"]), False
    name: str = spec["field"]
    op = next(key for key in spec if key != "field")
    fields.add(name)
    return build_leaf(name, op, spec[op]), op in RELATIVE_TIME


def _build_combination(spec: dict[str, Any], fields: set[str]) -> tuple[Evaluator, bool]:
    is_and = "and" in spec
    built = [_build(child, fields) for child in spec["and" if is_and else "or"]]
    children = tuple(evaluate for evaluate, _ in built)
    time_dependent = any(dependent for _, dependent in built)
    if len(children) == 1:
        return children[0], time_dependent
    if len(children) == 2:
        first, second = children
        if is_and:
            return (lambda c, n: first(c, n) and second(c, n)), time_dependent
        return (lambda c, n: first(c, n) or second(c, n)), time_dependent

    if is_and:

        def all_of(context: Mapping[str, Any], now: datetime) -> bool:
            return all(child(context, now) for child in children)

        return all_of, time_dependent

    def any_of(context: Mapping[str, Any], now: datetime) -> bool:
        return any(child(context, now) for child in children)

    return any_of, time_dependent
