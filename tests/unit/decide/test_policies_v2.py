"""Policy protocol v2: the registry, a placement's `policy` union (with the name as
shorthand), the uniform policy's probabilities and determinism."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

from tests.conftest import TEST_START
from touchpoint.core.errors import DefinitionError
from touchpoint.decide.catalog import Catalog, CompiledContent
from touchpoint.decide.policies.base import PolicyInput
from touchpoint.decide.policies.priority import PriorityPolicy
from touchpoint.decide.policies.registry import (
    POLICIES,
    build_policy,
    load_policy,
    parse_policy,
    save_policy,
)
from touchpoint.decide.policies.uniform import UniformPolicy
from touchpoint.definitions.model import Definitions, parse_definitions
from touchpoint.definitions.policies import (
    POLICY_CONFIGS,
    PriorityPolicyConfig,
    UniformPolicyConfig,
)


def _items(*specs: tuple[str, int]) -> dict[str, CompiledContent]:
    definitions = Definitions.model_validate(
        {
            "placements": [{"name": "home_hero"}],
            "content": [
                {"id": content_id, "placements": ["home_hero"], "priority": priority, "payload": {}}
                for content_id, priority in specs
            ],
        }
    )
    return dict(Catalog.compile(definitions, 1).content)


def _input(
    *tiers: Sequence[CompiledContent], subject: str = "anonymous_id:a", decision_id: str = "d1"
) -> PolicyInput:
    def lazy() -> Iterator[Sequence[CompiledContent]]:
        yield from tiers

    return PolicyInput(
        placement="home_hero",
        candidates=lazy(),
        subject=subject,
        decision_id=decision_id,
        now=TEST_START,
    )


# -- the union and its shorthand ----------------------------------------------------------------


def _placement_policy(policy: object) -> object:
    definitions = parse_definitions({"placements": [{"name": "home_hero", "policy": policy}]})
    return definitions.placements[0].policy


def test_the_name_is_shorthand_for_the_type_with_default_parameters() -> None:
    assert _placement_policy("priority") == PriorityPolicyConfig()
    assert _placement_policy({"type": "priority"}) == PriorityPolicyConfig()
    assert parse_definitions({"placements": [{"name": "p"}]}).placements[0].policy == (
        PriorityPolicyConfig()
    )
    assert _placement_policy("uniform") == UniformPolicyConfig(type="uniform")
    assert _placement_policy({"type": "uniform", "unit": "subject"}) == UniformPolicyConfig(
        type="uniform", unit="subject"
    )


def test_a_policy_is_written_as_its_name_unless_it_has_parameters() -> None:
    definitions = parse_definitions(
        {
            "placements": [
                {"name": "a"},
                {"name": "b", "policy": {"type": "uniform"}},
                {"name": "c", "policy": {"type": "uniform", "unit": "subject"}},
            ]
        }
    )
    written = [item["policy"] for item in definitions.model_dump(mode="json")["placements"]]
    assert written == ["priority", "uniform", {"type": "uniform", "unit": "subject"}]
    assert Definitions.model_validate(definitions.model_dump(mode="json")) == definitions


def test_the_digest_of_a_file_written_before_policies_had_parameters_is_unchanged() -> None:
    # Pinned from the code where `policy` was `Literal["priority"]`: applying the same file
    # again stores no new version.
    definitions = parse_definitions(
        {
            "placements": [
                {"name": "home_hero", "fallback": "x"},
                {"name": "recs", "policy": "priority", "tags": ["t"]},
            ],
            "content": [{"id": "x", "payload": {}, "placements": ["home_hero"]}],
        }
    )
    assert definitions.digest() == (
        "82c0344774a201c54162b0d05e007009a2f898762c6a76373d764a8418d6cb8e"
    )
    explicit = parse_definitions(
        {
            "placements": [
                {"name": "home_hero", "fallback": "x", "policy": {"type": "priority"}},
                {"name": "recs", "policy": {"type": "priority"}, "tags": ["t"]},
            ],
            "content": [{"id": "x", "payload": {}, "placements": ["home_hero"]}],
        }
    )
    assert explicit.digest() == definitions.digest()


@pytest.mark.parametrize(
    ("policy", "path", "words"),
    [
        ("bandit", "placements[0].policy", "does not match any of the expected tags"),
        ({"unit": "decision"}, "placements[0].policy", "discriminator 'type'"),
        ({"type": "uniform", "unit": "page"}, "placements[0].policy.uniform.unit", "'decision'"),
        ({"type": "priority", "seed": 3}, "placements[0].policy.priority.seed", "Extra inputs"),
        (3, "placements[0].policy", "valid dictionary"),
    ],
)
def test_bad_parameters_are_a_definition_error_naming_the_path(
    policy: object, path: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definitions({"placements": [{"name": "home_hero", "policy": policy}]})
    assert caught.value.path == path
    assert words in str(caught.value)


# -- the registry -------------------------------------------------------------------------------


def test_every_policy_type_has_a_config_and_a_factory() -> None:
    assert set(POLICIES) == set(POLICY_CONFIGS) == {"priority", "uniform"}
    for name in POLICIES:
        policy = build_policy(name, seed="home_hero")
        assert policy.name == name and policy.seed == "home_hero"


def test_build_policy_takes_a_config_a_name_or_a_mapping() -> None:
    assert isinstance(build_policy(PriorityPolicyConfig(), seed="s"), PriorityPolicy)
    built = build_policy({"type": "uniform", "unit": "subject"}, seed="s")
    assert isinstance(built, UniformPolicy) and built.params == {"unit": "subject"}
    with pytest.raises(DefinitionError) as caught:
        parse_policy({"type": "uniform", "unit": 1}, path="placements[2].policy")
    assert caught.value.path == "placements[2].policy.uniform.unit"


def test_a_saved_policy_loads_as_the_same_policy() -> None:
    policy = build_policy({"type": "uniform", "unit": "subject"}, seed="home_hero")
    loaded = load_policy(save_policy(policy))
    assert isinstance(loaded, UniformPolicy)
    assert (loaded.params, loaded.seed) == (policy.params, policy.seed)
    for bad in (b"{}", b'{"format": 1, "type": "bandit", "params": {}, "seed": ""}'):
        with pytest.raises(ValueError):
            load_policy(bad)
    newer = save_policy(policy).replace(b'"version":1', b'"version":2')
    with pytest.raises(ValueError, match="version 2"):
        load_policy(newer)


def test_stateless_policies_refuse_a_state_they_cannot_have() -> None:
    policy = build_policy("priority", seed="s")
    policy.restore({})
    with pytest.raises(ValueError):
        policy.restore({"counts": [1]})


# -- uniform ------------------------------------------------------------------------------------


def test_uniform_lists_every_eligible_candidate_of_every_tier_at_one_over_n() -> None:
    items = _items(("a", 10), ("b", 10), ("c", 0), ("d", -5))
    policy = UniformPolicy(seed="home_hero")
    choice = policy.choose(_input([items["a"], items["b"]], [items["c"]], [], [items["d"]]))
    assert choice is not None
    assert choice.probabilities == {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    assert choice.propensity == 0.25
    assert math.isclose(sum(choice.probabilities.values()), 1.0)
    assert choice.policy == "uniform" and choice.params == {"unit": "decision"}
    assert policy.choose(_input()) is None and policy.choose(_input([], [])) is None


def test_uniform_is_deterministic_given_seed_and_decision() -> None:
    items = _items(("a", 1), ("b", 1), ("c", 1))
    tier = list(items.values())
    policy = UniformPolicy(seed="home_hero")
    for n in range(50):
        first = policy.choose(_input(tier, decision_id=f"d{n}"))
        again = UniformPolicy(seed="home_hero").choose(_input(tier, decision_id=f"d{n}"))
        assert first == again
    other_seed = [
        UniformPolicy(seed="other").choose(_input(tier, decision_id=f"d{n}")) for n in range(50)
    ]
    same_seed = [policy.choose(_input(tier, decision_id=f"d{n}")) for n in range(50)]
    assert [c.content.id for c in other_seed if c] != [c.content.id for c in same_seed if c]


def test_uniform_spreads_decisions_evenly_and_ignores_priority() -> None:
    items = _items(("high", 10), ("mid", 5), ("low", 0))
    policy = UniformPolicy(seed="home_hero")
    counts: Counter[str] = Counter()
    for n in range(3000):
        choice = policy.choose(
            _input([items["high"]], [items["mid"]], [items["low"]], decision_id=f"d{n}")
        )
        assert choice is not None
        counts[choice.content.id] += 1
    assert set(counts) == {"high", "mid", "low"}
    assert all(850 < count < 1150 for count in counts.values()), counts


def test_uniform_by_subject_keeps_a_person_on_one_item_across_decisions() -> None:
    items = _items(("a", 1), ("b", 1), ("c", 1))
    tier = list(items.values())
    policy = UniformPolicy(UniformPolicyConfig(type="uniform", unit="subject"), seed="home_hero")
    seen: Counter[str] = Counter()
    for person in range(60):
        chosen = {
            choice.content.id
            for n in range(5)
            if (choice := policy.choose(_input(tier, subject=f"s{person}", decision_id=f"d{n}")))
        }
        assert len(chosen) == 1
        seen.update(chosen)
    assert set(seen) == {"a", "b", "c"}
