"""`uniform`: every eligible candidate equally likely, whatever its priority: the logging
policy off-policy evaluation starts from (each item's propensity is 1/n, known exactly)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from touchpoint.decide.policies.base import Choice, PolicyInput, StatelessPolicy
from touchpoint.decide.policies.hashing import unit_interval
from touchpoint.definitions.policies import UNIFORM, UniformPolicyConfig


class UniformPolicy(StatelessPolicy):
    """Reads every tier and draws one of the n eligible candidates with probability 1/n.

    The draw is a pure function of the seed (the placement), the unit named by the config
    (the decision id, or the subject) and the candidates' ids in tier order: the same input
    always gives the same item, so a decision can be replayed. Every candidate is listed in
    `probabilities` with 1/n.
    """

    name = UNIFORM

    def __init__(self, config: UniformPolicyConfig | None = None, *, seed: str = "") -> None:
        self.config = config or UniformPolicyConfig(type=UNIFORM)
        self.seed = seed

    @property
    def params(self) -> Mapping[str, Any]:
        """`unit`: what the draw is keyed on."""
        return MappingProxyType({"unit": self.config.unit})

    def choose(self, input: PolicyInput) -> Choice | None:
        """See `Policy.choose`."""
        eligible = [item for tier in input.candidates for item in tier]
        if not eligible:
            return None
        unit = input.decision_id if self.config.unit == "decision" else input.subject
        draw = unit_interval(self.seed, input.placement, unit)
        chosen = eligible[min(int(draw * len(eligible)), len(eligible) - 1)]
        share = 1.0 / len(eligible)
        probabilities = {item.id: share for item in eligible}
        return Choice(chosen, probabilities, self.name, self.version, self.params)
