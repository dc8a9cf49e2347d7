"""A placement's `policy`: which policy chooses among its candidates, with its parameters.

The field is a union discriminated by `type` (`policy: {type: uniform, unit: subject}`);
a plain name (`policy: priority`) is shorthand for `{type: priority}` with every parameter
at its default. The shorthand is also the canonical written form: a policy whose
parameters are all defaults is dumped as its name, so a definitions file written before
policies had parameters keeps its digest (and applying it again stores no new version).

A new policy adds a config model here (its `type` literal and parameters) and a factory
to `touchpoint.decide.policies.registry`; the registry's tests check the two agree.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field

from touchpoint.core.config_base import ConfigModel

PRIORITY: Final = "priority"
UNIFORM: Final = "uniform"


class PriorityPolicyConfig(ConfigModel):
    """The highest-priority eligible item; ties broken by a stable hash of the person
    (deterministic, propensity 1). No parameters."""

    type: Literal["priority"] = PRIORITY


class UniformPolicyConfig(ConfigModel):
    """Uniformly at random among every eligible candidate, whatever its priority
    (probability 1/n each): the logging policy off-policy evaluation starts from.

    `unit`: what the draw is keyed on, with the placement as seed: `decision` (a fresh
    draw per decision; the standard for logging data) or `subject` (the same person gets
    the same item while the candidates stay the same).
    """

    type: Literal["uniform"]
    unit: Literal["decision", "subject"] = "decision"


def _shorthand(value: Any) -> Any:
    """`"priority"` is `{"type": "priority"}`: the string form validates to the same thing."""
    return {"type": value} if isinstance(value, str) else value


PolicyConfig = Annotated[
    PriorityPolicyConfig | UniformPolicyConfig,
    Field(discriminator="type"),
    BeforeValidator(_shorthand),
]
"""The type-discriminated union a placement's `policy` validates to."""

POLICY_CONFIGS: dict[str, type[ConfigModel]] = {
    PRIORITY: PriorityPolicyConfig,
    UNIFORM: UniformPolicyConfig,
}
"""Every policy config by its `type` name (the union's members)."""


def policy_document(config: PriorityPolicyConfig | UniformPolicyConfig) -> str | dict[str, Any]:
    """The canonical written form of a policy: its name when every parameter is at its
    default, else the whole `{type: …, …}` mapping (see the module doc)."""
    written = config.model_dump(mode="json", exclude_defaults=True)
    written.pop("type", None)
    if not written:
        return config.type
    return config.model_dump(mode="json")
