"""The condition language: one safe, serializable way to say "when".

Used by segments, feature filters, eligibility rules, triggers and experiment
targeting. A condition is data (dicts from YAML/JSON, or a short text form) and
is compiled once into closures; it is never evaluated as Python.

Canonical form::

    {"and": [c, ...]}  {"or": [c, ...]}  {"not": c}    (all/any accepted for and/or)
    true / false
    {"field": "traits.plan", "eq": "pro"}              (exactly one operator per node)
    {"segment": "high_value"}                          (== segments contains it)

Operators: eq ne gt gte lt lte in not_in contains starts_with ends_with exists
within older_than before after. Text form::

    "features.views_7d >= 3 and traits.plan == 'pro'"
    "not (segments contains 'churned') or last_seen within 30d"

Semantics in short: a missing field, null, or a value of another kind than the
operand makes a comparison false (never an error); `== null` means absent and
`!= null` present. Numbers compare with numbers, strings with strings, and an
operand that is an ISO timestamp compares as a time with datetimes and ISO
strings. `within 30d` holds for times in [now - 30d, now]; `older_than 7d` for
times before now - 7d.
"""

from touchpoint.core.conditions.compiler import Condition, compile_condition, validate_condition
from touchpoint.core.conditions.context import ConditionContext
from touchpoint.core.conditions.operands import OPERATORS, CanonicalSpec
from touchpoint.core.conditions.text import parse_text

__all__ = [
    "OPERATORS",
    "CanonicalSpec",
    "Condition",
    "ConditionContext",
    "compile_condition",
    "parse_text",
    "validate_condition",
]
