"""The checks every policy must pass (see `touchpoint.decide.policies.base`).

`policy_checks()` lists them; each takes a `build()` that returns a fresh policy with a
fixed seed and raises AssertionError naming what failed. They run on a small fixed
catalog (several tiers, ties, a lone item) and many subjects and decision ids.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from touchpoint.decide.catalog import Catalog, CompiledContent
from touchpoint.decide.decision_log.base import DecisionRecord, Outcome, OutcomeKind
from touchpoint.decide.policies.base import Choice, DecisionOutcome, Policy, PolicyInput
from touchpoint.decide.policies.registry import load_policy, save_policy
from touchpoint.definitions.model import Definitions

PolicyBuilder = Callable[[], Policy]
PolicyCheck = Callable[[PolicyBuilder], None]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PLACEMENT = "home_hero"
_TIERS = (("a", 30), ("b", 20), ("c", 20), ("d", 20), ("e", 0))


def _catalog_items() -> dict[str, CompiledContent]:
    definitions = Definitions.model_validate(
        {
            "placements": [{"name": PLACEMENT}],
            "content": [
                {"id": item, "placements": [PLACEMENT], "priority": priority, "payload": {}}
                for item, priority in _TIERS
            ],
        }
    )
    return dict(Catalog.compile(definitions, 1).content)


class _Case:
    """One input, rebuilt as often as needed (its tiers are consumed by a policy)."""

    def __init__(
        self, tiers: Sequence[list[CompiledContent]], subject: str, decision_id: str
    ) -> None:
        self.tiers = tiers
        self.subject = subject
        self.decision_id = decision_id
        self.document = {"features": {"views_7d": 3}, "context": {"page": "/"}}
        self.context = {"page": "/"}

    def input(self) -> PolicyInput:
        def lazy() -> Iterator[Sequence[CompiledContent]]:
            yield from self.tiers

        return PolicyInput(
            placement=PLACEMENT,
            candidates=lazy(),
            subject=self.subject,
            decision_id=self.decision_id,
            now=NOW,
            document=self.document,
            context=self.context,
        )

    @property
    def ids(self) -> set[str]:
        return {item.id for tier in self.tiers for item in tier}


def _cases() -> list[_Case]:
    items = _catalog_items()
    shapes: list[list[list[CompiledContent]]] = [
        [[items["a"]], [items["b"], items["c"], items["d"]], [items["e"]]],
        [[], [items["b"], items["c"], items["d"]], [items["e"]]],
        [[items["e"]]],
    ]
    return [_Case(shape, f"anonymous_id:v{n}", f"d{n:04d}") for n in range(40) for shape in shapes]


def _same(first: Choice | None, second: Choice | None) -> bool:
    if first is None or second is None:
        return first is second
    return (
        first.content.id == second.content.id
        and dict(first.probabilities) == dict(second.probabilities)
        and (first.policy, first.version, dict(first.params))
        == (second.policy, second.version, dict(second.params))
        and (first.experiment, first.arm, dict(first.features))
        == (second.experiment, second.arm, dict(second.features))
    )


def check_nothing_eligible_is_none(build: PolicyBuilder) -> None:
    """No candidate (no tier, or only empty tiers): no choice."""
    policy = build()
    nothing: tuple[list[list[CompiledContent]], ...] = ([], [[], []])
    for tiers in nothing:
        case = _Case(tiers, "anonymous_id:v", "d")
        assert policy.choose(case.input()) is None, f"{policy.name}: chose among nothing"


def check_deterministic_under_a_seed(build: PolicyBuilder) -> None:
    """Two policies built alike choose alike for the same inputs, and so does one policy
    asked twice."""
    first, second = build(), build()
    for case in _cases():
        choice = first.choose(case.input())
        assert _same(choice, second.choose(case.input())), f"{first.name}: not deterministic"
        assert _same(choice, first.choose(case.input())), f"{first.name}: changed its mind"


def check_inputs_not_mutated(build: PolicyBuilder) -> None:
    """`choose` leaves the tiers, the document and the context as they were."""
    policy = build()
    for case in _cases():
        before = (list(map(list, case.tiers)), copy.deepcopy(case.document), dict(case.context))
        policy.choose(case.input())
        after = (list(map(list, case.tiers)), case.document, dict(case.context))
        assert before == after, f"{policy.name}: mutated its input"


def check_probabilities(build: PolicyBuilder) -> None:
    """What a choice lists lies in (0, 1], sums to 1, names only candidates given, and
    includes the chosen item with its propensity."""
    _check_probabilities(build())


def _check_probabilities(policy: Policy) -> None:
    for case in _cases():
        choice = policy.choose(case.input())
        assert choice is not None, f"{policy.name}: chose nothing among candidates"
        listed = dict(choice.probabilities)
        assert listed, f"{policy.name}: listed no probability"
        assert set(listed) <= case.ids, f"{policy.name}: listed {set(listed) - case.ids}"
        assert all(0.0 < p <= 1.0 for p in listed.values()), f"{policy.name}: {listed}"
        assert math.isclose(sum(listed.values()), 1.0, abs_tol=1e-9), f"{policy.name}: {listed}"
        assert choice.content.id in case.ids, f"{policy.name}: chose a non-candidate"
        assert choice.content.id in listed, f"{policy.name}: the chosen item is not listed"
        assert choice.propensity == listed[choice.content.id]
        assert choice.policy == policy.name and choice.version == policy.version


def _outcomes(policy: Policy) -> list[DecisionOutcome]:
    """Outcomes of decisions the policy made: a view for each, a click for every third."""
    joined = []
    for n, case in enumerate(_cases()):
        choice = policy.choose(case.input())
        if choice is None:
            continue
        record = DecisionRecord(
            decision_id=case.decision_id,
            placement=PLACEMENT,
            content_id=choice.content.id,
            profile_id=None,
            subject=case.subject,
            policy=choice.policy,
            definitions_version=1,
            reason="eligible",
            propensity=choice.propensity,
            at="2026-01-01T00:00:00.000Z",
            experiment=choice.experiment,
            arm=choice.arm,
            features=dict(choice.features),
        )
        kind: OutcomeKind = "click" if n % 3 == 0 else "view"
        outcome = Outcome(
            message_id=f"m{n}",
            decision_id=case.decision_id,
            placement=PLACEMENT,
            content_id=choice.content.id,
            kind=kind,
            event="Decision Clicked" if kind == "click" else "Decision Viewed",
            profile_id=None,
            at="2026-01-01T00:00:01.000Z",
        )
        joined.append(DecisionOutcome(record, outcome))
    return joined


def check_update_accepts_outcomes(build: PolicyBuilder) -> None:
    """`update` takes outcomes joined to the policy's decisions (and none), and the policy
    still reports valid probabilities afterwards."""
    policy = build()
    policy.update([])
    policy.update(_outcomes(policy))
    _check_probabilities(policy)


def check_save_then_load_is_identical(build: PolicyBuilder) -> None:
    """A policy saved (after learning) and loaded saves the same bytes and chooses alike."""
    policy = build()
    policy.update(_outcomes(policy))
    saved = save_policy(policy)
    loaded = load_policy(saved)
    assert save_policy(loaded) == saved, f"{policy.name}: not the same after loading"
    for case in _cases():
        assert _same(policy.choose(case.input()), loaded.choose(case.input())), (
            f"{policy.name}: a loaded policy chooses differently"
        )


def policy_checks() -> tuple[PolicyCheck, ...]:
    """Every check a policy must pass."""
    return (
        check_nothing_eligible_is_none,
        check_deterministic_under_a_seed,
        check_inputs_not_mutated,
        check_probabilities,
        check_update_accepts_outcomes,
        check_save_then_load_is_identical,
    )
