"""Every registered policy passes every policy check (a new policy is checked by adding it
to the registry), and the checks catch what they are meant to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from touchpoint.checks.policies import (
    PolicyCheck,
    check_deterministic_under_a_seed,
    check_inputs_not_mutated,
    check_probabilities,
    check_save_then_load_is_identical,
    policy_checks,
)
from touchpoint.core.errors import DefinitionError
from touchpoint.decide.policies.base import Choice, PolicyInput
from touchpoint.decide.policies.priority import PriorityPolicy
from touchpoint.decide.policies.registry import POLICIES, build_policy
from touchpoint.decide.policies.uniform import UniformPolicy
from touchpoint.definitions.policies import UniformPolicyConfig

CONFIGS: list[Any] = [*POLICIES, {"type": "uniform", "unit": "subject"}]


@pytest.mark.parametrize("check", policy_checks(), ids=lambda check: check.__name__)
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_registered_policy_passes_every_check(config: Any, check: PolicyCheck) -> None:
    check(lambda: build_policy(config, seed="home_hero"))


def test_every_registered_type_is_checked() -> None:
    assert {config if isinstance(config, str) else config["type"] for config in CONFIGS} == set(
        POLICIES
    )


class Unseeded(UniformPolicy):
    """Draws from an ever-moving counter: not a function of its input."""

    def __init__(self) -> None:
        super().__init__(UniformPolicyConfig(type="uniform"), seed="home_hero")
        self.calls = 0

    def choose(self, input: PolicyInput) -> Choice | None:
        self.calls += 1
        return super().choose(
            PolicyInput(
                input.placement, input.candidates, input.subject, str(self.calls), input.now
            )
        )


class Mutating(PriorityPolicy):
    """Empties the tier it reads."""

    def choose(self, input: PolicyInput) -> Choice | None:
        for tier in input.candidates:
            if tier:
                chosen = tier[0]
                assert isinstance(tier, list)
                tier.clear()
                return Choice(chosen, {chosen.id: 1.0}, self.name)
        return None


class Overconfident(PriorityPolicy):
    """Lists every candidate of the tier at probability 1."""

    def choose(self, input: PolicyInput) -> Choice | None:
        for tier in input.candidates:
            if tier:
                return Choice(tier[0], {item.id: 1.0 for item in tier}, self.name)
        return None


class Forgetful(PriorityPolicy):
    """Claims a parameter it cannot be rebuilt with."""

    @property
    def params(self) -> Mapping[str, Any]:
        return {"secret": 1}


@pytest.mark.parametrize(
    ("policy", "check"),
    [
        (Unseeded, check_deterministic_under_a_seed),
        (Mutating, check_inputs_not_mutated),
        (Overconfident, check_probabilities),
        (Forgetful, check_save_then_load_is_identical),
    ],
    ids=["unseeded", "mutating", "overconfident", "forgetful"],
)
def test_the_checks_catch_a_bad_policy(policy: Any, check: PolicyCheck) -> None:
    with pytest.raises((AssertionError, DefinitionError)):  # a failed check, a refused load
        check(policy)
