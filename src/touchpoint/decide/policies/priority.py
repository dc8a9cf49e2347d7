"""`priority`: the highest-priority eligible item; ties broken by a stable hash of the
person, so a person sees a consistent page."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from touchpoint.decide.policies.base import Choice, PolicyInput, StatelessPolicy
from touchpoint.decide.policies.hashing import pick_tied
from touchpoint.definitions.policies import PRIORITY, PriorityPolicyConfig


class PriorityPolicy(StatelessPolicy):
    """The v1 policy, unchanged in what it chooses.

    It reads only the first tier with an eligible candidate, so lower tiers are never
    evaluated. Given the person the choice is deterministic: the chosen item has
    probability 1 and is the only one listed (the others of its tier had probability 0).
    """

    name = PRIORITY

    def __init__(self, config: PriorityPolicyConfig | None = None, *, seed: str = "") -> None:
        self.config = config or PriorityPolicyConfig()
        self.seed = seed

    @property
    def params(self) -> Mapping[str, Any]:
        """No parameters."""
        return MappingProxyType({})

    def choose(self, input: PolicyInput) -> Choice | None:
        """See `Policy.choose`."""
        for tier in input.candidates:
            if not tier:
                continue
            if len(tier) == 1:
                chosen = tier[0]
            else:
                by_id = {item.id: item for item in tier}
                chosen = by_id[pick_tied(input.subject, input.placement, list(by_id))]
            return Choice(chosen, {chosen.id: 1.0}, self.name, self.version, self.params)
        return None
