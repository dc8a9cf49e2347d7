"""The decision engine on the policy path: the placement's policy is built from its config,
sees one PolicyInput, and what its Choice names (propensity, experiment, arm, the features
it read) reaches the answer and the decision record, on both decision-log backends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from touchpoint.core.clock import isoformat
from touchpoint.decide.policies.base import Choice, DecisionOutcome, Policy, PolicyInput
from touchpoint.decide.policies.registry import build_policy
from touchpoint.decide.results import DecideRequest
from touchpoint.definitions.model import parse_definitions
from touchpoint.runtime import Workspace

HERO_CONTENT = [
    {"id": "hero_default", "placements": ["home_hero"], "payload": {"headline": "Welcome"}},
    {"id": "hero_a", "placements": ["home_hero"], "priority": 20, "payload": {}},
    {"id": "hero_b", "placements": ["home_hero"], "priority": 10, "payload": {}},
    {"id": "hero_c", "placements": ["home_hero"], "priority": 0, "payload": {}},
]


@pytest.fixture(params=["sqlite", "postgres"])
def any_workspace(request: pytest.FixtureRequest) -> Workspace:
    """The embedded workspace (SQLite decision log) and the server one (PostgreSQL)."""
    name = "workspace" if request.param == "sqlite" else "server_workspace"
    workspace: Workspace = request.getfixturevalue(name)
    return workspace


def apply(workspace: Workspace, policy: object) -> None:
    placement: dict[str, Any] = {"name": "home_hero", "fallback": "hero_default"}
    if policy is not None:
        placement["policy"] = policy
    workspace.definitions.apply(
        parse_definitions({"placements": [placement], "content": HERO_CONTENT}), actor="test"
    )
    workspace.decider.refresh()


class ExperimentPolicy:
    """A test policy: the wrapped policy's choice, as arm `treatment` of experiment
    `hero_test`, having read the person's `views_7d`; it remembers every input."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.inputs: list[PolicyInput] = []
        self.name, self.version, self.seed = inner.name, inner.version, inner.seed
        self.params: Mapping[str, Any] = inner.params

    def choose(self, input: PolicyInput) -> Choice | None:
        self.inputs.append(input)
        choice = self.inner.choose(input)
        if choice is None:
            return None
        views = input.document["features"].get("views_7d")
        return replace(
            choice, experiment="hero_test", arm="treatment", features={"views_7d": views}
        )

    def update(self, outcomes: Sequence[DecisionOutcome]) -> None:
        self.inner.update(outcomes)

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def restore(self, state: Mapping[str, Any]) -> None:
        self.inner.restore(state)


def test_experiment_arm_and_features_reach_the_answer_and_the_record(
    any_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ExperimentPolicy] = []

    def build(config: Any, *, seed: str) -> Policy:
        built.append(ExperimentPolicy(build_policy(config, seed=seed)))
        return built[-1]

    monkeypatch.setattr("touchpoint.decide.engine.build_policy", build)
    apply(any_workspace, None)
    result = any_workspace.decider.decide(
        DecideRequest({"anonymous_id": "a1"}, ["home_hero"], {"page": "/"})
    )
    hero = result.placements["home_hero"]
    assert (hero.content_id, hero.experiment, hero.arm) == ("hero_a", "hero_test", "treatment")
    assert hero.to_dict()["experiment"] == "hero_test" and hero.to_dict()["arm"] == "treatment"
    (record,) = any_workspace.decisions.get(result.decision_id)
    assert (record.experiment, record.arm) == ("hero_test", "treatment")
    assert record.features == {"views_7d": 0}
    assert record.policy == "priority" and record.propensity == 1.0
    assert any_workspace.decisions.list().items[0].features == {"views_7d": 0}

    # The policy was built once, with the placement as seed, and saw one frozen input.
    (policy,) = built
    assert policy.seed == "home_hero"
    (seen,) = policy.inputs
    assert (seen.placement, seen.subject) == ("home_hero", "anonymous_id:a1")
    assert seen.decision_id == result.decision_id
    assert seen.context == {"page": "/"} and seen.document["context"] == {"page": "/"}
    assert isoformat(seen.now) == result.at

    again = any_workspace.decider.decide(DecideRequest({"anonymous_id": "a2"}, ["home_hero"]))
    assert len(built) == 1 and len(policy.inputs) == 2
    assert again.placements["home_hero"].arm == "treatment"


def test_outside_experiments_the_answer_keeps_its_shape(any_workspace: Workspace) -> None:
    apply(any_workspace, "priority")
    result = any_workspace.decider.decide(DecideRequest({"anonymous_id": "a1"}, ["home_hero"]))
    hero = result.placements["home_hero"]
    assert set(hero.to_dict()) == {"content_id", "payload", "html", "reason", "policy"}
    (record,) = any_workspace.decisions.get(result.decision_id)
    assert (record.experiment, record.arm, record.features) == (None, None, {})


def test_a_uniform_placement_records_one_over_n_and_spreads_people(
    any_workspace: Workspace,
) -> None:
    apply(any_workspace, {"type": "uniform"})
    shown: set[str] = set()
    for n in range(30):
        result = any_workspace.decider.decide(
            DecideRequest({"anonymous_id": f"v{n}"}, ["home_hero"])
        )
        hero = result.placements["home_hero"]
        assert hero.reason == "eligible" and hero.policy == "uniform"
        (record,) = any_workspace.decisions.get(result.decision_id)
        assert record.policy == "uniform"
        assert record.propensity == pytest.approx(1 / 3)
        assert record.content_id == hero.content_id
        shown.add(str(hero.content_id))
    assert shown == {"hero_a", "hero_b", "hero_c"}


def test_a_changed_policy_config_builds_a_new_policy(any_workspace: Workspace) -> None:
    apply(any_workspace, "priority")
    first = any_workspace.decider.decide(DecideRequest({"anonymous_id": "a1"}, ["home_hero"]))
    assert first.placements["home_hero"].content_id == "hero_a"
    apply(any_workspace, {"type": "uniform", "unit": "subject"})
    picks = {
        any_workspace.decider.decide(DecideRequest({"anonymous_id": "a1"}, ["home_hero"]))
        .placements["home_hero"]
        .content_id
        for _ in range(5)
    }
    assert len(picks) == 1  # keyed on the person
    (record,) = any_workspace.decisions.list(limit=1).items
    assert record.policy == "uniform" and record.propensity == pytest.approx(1 / 3)
