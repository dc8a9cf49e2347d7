"""The priority policy (protocol v2) and the stable hashing that breaks its ties."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

from tests.conftest import TEST_START
from touchpoint.decide.catalog import Catalog, CompiledContent
from touchpoint.decide.policies.base import Choice, PolicyInput
from touchpoint.decide.policies.hashing import pick_tied, stable_hash
from touchpoint.decide.policies.priority import PriorityPolicy
from touchpoint.definitions.model import Definitions

# A shared table of cases: if one of these changes, every visitor's page changes with it.
HASH_TABLE = [
    ("anonymous_id:a1", "home_hero", "hero_a", 0xB0DB9542EC14589F),
    ("anonymous_id:a1", "home_hero", "hero_b", 0x3915B040CE035E80),
    ("user_id:42", "product_recs", "recs_recent", 0x5550205D733900B3),
]
PICK_TABLE = [
    ("anonymous_id:a1", "home_hero", ["hero_a", "hero_b"], "hero_a"),
    ("anonymous_id:a2", "home_hero", ["hero_a", "hero_b", "hero_c"], "hero_a"),
    ("user_id:42", "product_recs", ["x"], "x"),
]


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


def test_stable_hash_is_a_pure_function_of_its_inputs() -> None:
    for subject, placement, content_id, _ in HASH_TABLE:
        first = stable_hash(subject, placement, content_id)
        assert first == stable_hash(subject, placement, content_id)
        assert 0 <= first < 2**64
    # Every part matters, and the separator keeps ("ab", "c") apart from ("a", "bc").
    assert stable_hash("s", "p", "c") != stable_hash("s", "p", "d")
    assert stable_hash("ab", "c", "x") != stable_hash("a", "bc", "x")


def test_stable_hash_matches_the_shared_table() -> None:
    # SHA-256 of "subject\x1fplacement\x1fcontent_id", first 8 bytes, big-endian: any
    # process, machine or SDK computes the same numbers.
    for subject, placement, content_id, expected in HASH_TABLE:
        assert stable_hash(subject, placement, content_id) == expected


def test_pick_tied_matches_the_shared_table_whatever_the_order() -> None:
    for subject, placement, ids, expected in PICK_TABLE:
        assert pick_tied(subject, placement, ids) == expected
        assert pick_tied(subject, placement, list(reversed(ids))) == expected
        highest = max(ids, key=lambda content_id: stable_hash(subject, placement, content_id))
        assert expected == highest


def test_pick_tied_needs_a_candidate() -> None:
    with pytest.raises(ValueError):
        pick_tied("s", "p", [])


def test_pick_tied_spreads_people_evenly() -> None:
    ids = ["a", "b", "c"]
    counts = Counter(pick_tied(f"anonymous_id:v{n}", "home_hero", ids) for n in range(3000))
    assert set(counts) == set(ids)
    assert all(800 < count < 1200 for count in counts.values()), counts


def test_removing_an_item_only_moves_the_people_who_had_it() -> None:
    people = [f"anonymous_id:v{n}" for n in range(500)]
    before = {person: pick_tied(person, "p", ["a", "b", "c"]) for person in people}
    after = {person: pick_tied(person, "p", ["a", "b"]) for person in people}
    for person in people:
        if before[person] != "c":
            assert after[person] == before[person]


def _tiers(*tiers: Sequence[CompiledContent]) -> Iterator[Sequence[CompiledContent]]:
    yield from tiers


def _input(
    candidates: Iterator[Sequence[CompiledContent]], subject: str, placement: str = "home_hero"
) -> PolicyInput:
    return PolicyInput(
        placement=placement,
        candidates=candidates,
        subject=subject,
        decision_id="d1",
        now=TEST_START,
    )


def test_priority_policy_takes_the_first_tier() -> None:
    items = _items(("high", 10), ("low", 0))
    choice = PriorityPolicy().choose(
        _input(_tiers([items["high"]], [items["low"]]), "anonymous_id:a")
    )
    assert choice == Choice(items["high"], {"high": 1.0}, "priority")
    assert choice.propensity == 1.0 and choice.features == {} and choice.experiment is None


def test_priority_policy_never_reads_lower_tiers() -> None:
    items = _items(("high", 10))

    def tiers() -> Iterator[Sequence[CompiledContent]]:
        yield [items["high"]]
        raise AssertionError("a lower tier was evaluated")

    choice = PriorityPolicy().choose(_input(tiers(), "anonymous_id:a"))
    assert choice is not None and choice.content.id == "high"


def test_priority_policy_skips_empty_tiers_and_returns_none_without_candidates() -> None:
    items = _items(("low", 0))
    policy = PriorityPolicy()
    choice = policy.choose(_input(_tiers([], [items["low"]]), "s"))
    assert choice is not None and choice.content.id == "low"
    assert policy.choose(_input(_tiers(), "s")) is None
    assert policy.choose(_input(_tiers([], []), "s")) is None


def test_priority_policy_breaks_ties_consistently_per_person() -> None:
    items = _items(("a", 5), ("b", 5), ("c", 5))
    tier = [items["a"], items["b"], items["c"]]
    policy = PriorityPolicy()
    chosen: Counter[str] = Counter()
    for n in range(300):
        subject = f"anonymous_id:v{n}"
        first = policy.choose(_input(_tiers(tier), subject))
        again = policy.choose(_input(_tiers(list(reversed(tier))), subject))
        assert first is not None and again is not None
        assert first.content is again.content
        assert first.propensity == 1.0
        chosen[first.content.id] += 1
    assert set(chosen) == {"a", "b", "c"}


def test_priority_policy_does_not_mutate_its_inputs() -> None:
    items = _items(("a", 5), ("b", 5))
    tier = [items["a"], items["b"]]
    kept = copy.copy(tier)
    PriorityPolicy().choose(_input(_tiers(tier), "s"))
    assert tier == kept


def test_priority_policy_lists_only_the_chosen_item() -> None:
    # The rest of the tier had probability 0 given the person: not listed.
    items = _items(("a", 5), ("b", 5), ("low", 0))
    choice = PriorityPolicy().choose(_input(_tiers([items["a"], items["b"]], [items["low"]]), "s"))
    assert choice is not None
    assert choice.probabilities == {choice.content.id: 1.0}
    assert choice.params == {} and choice.version == 1
