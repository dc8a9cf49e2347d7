"""The policy protocol, version 2: one frozen input in, a `Choice` with a probability per
candidate out, and `update(outcomes)` to learn.

    choose(input: PolicyInput) -> Choice | None
    update(outcomes: Sequence[DecisionOutcome]) -> None
    state() -> dict / restore(state)            (what `save_policy` keeps)

`PolicyInput.candidates` are the *eligible* items (active, eligible for this person, not
capped) in tiers of equal priority, highest first, produced lazily: a policy reads only
as many tiers as it needs, and eligibility is only evaluated for the tiers it reads. New
fields are added to `PolicyInput` with defaults, so a policy written today keeps working.

`Choice.probabilities` gives the probability the policy had of choosing each candidate it
considered, which off-policy evaluation needs. A candidate not listed had probability 0:
the candidates of tiers the policy never read, and those a deterministic policy passed
over. What is listed lies in (0, 1] and sums to 1; the chosen item's entry is its
`propensity`.

Policies are shared by every request thread: `choose` must not mutate its input or the
policy, and a policy that learns guards its state in `update`/`restore`. Randomness comes
only from the `seed` the registry gives (the placement) and the input's seed material
(decision id, subject), so the same input always gives the same Choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from touchpoint.decide.catalog import CompiledContent
from touchpoint.decide.decision_log.base import DecisionRecord, Outcome

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """Everything a policy may read for one placement of one decision.

    `candidates`: lazy tiers of eligible items (see the module doc). `document`: the
    profile document eligibility conditions see (with `context`). `subject`: the person as
    decisions name them (`kind:value`). `decision_id`: the decision's id, seed material for
    per-decision draws.
    """

    placement: str
    candidates: Iterable[Sequence[CompiledContent]]
    subject: str
    decision_id: str
    now: datetime
    document: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    context: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Choice:
    """What a policy chose: the content, the probability of every candidate considered (see
    the module doc), the policy's name, version and parameters, the experiment and arm that
    exposed the person (None outside experiments), and the features the policy read (empty
    for policies that read none), which the decision log keeps with the record."""

    content: CompiledContent
    probabilities: Mapping[str, float]
    policy: str
    version: int = 1
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    experiment: str | None = None
    arm: str | None = None
    features: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def propensity(self) -> float:
        """The probability the policy had of choosing what it chose."""
        return self.probabilities[self.content.id]


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """An outcome with the decision record it is joined to: what `update` learns from
    (what was shown, with which propensity and features, and what followed)."""

    decision: DecisionRecord
    outcome: Outcome


class Policy(Protocol):
    """Chooses one item for a placement among eligible candidates (see the module doc)."""

    @property
    def name(self) -> str:
        """The type name decisions record (`priority`)."""
        ...

    @property
    def version(self) -> int:
        """The version of the policy's algorithm: bumped when the same input would be
        chosen differently."""
        ...

    @property
    def params(self) -> Mapping[str, Any]:
        """The parameters the policy was built with (its config without `type`)."""
        ...

    @property
    def seed(self) -> str:
        """The seed the registry built the policy with."""
        ...

    def choose(self, input: PolicyInput) -> Choice | None:
        """The chosen item, or None when there is no eligible candidate. Must not mutate
        its input; the same input (and state) gives the same Choice."""
        ...

    def update(self, outcomes: Sequence[DecisionOutcome]) -> None:
        """Learn from outcomes of past decisions (a no-op for stateless policies)."""
        ...

    def state(self) -> dict[str, Any]:
        """What the policy learned, JSON-ready (empty for stateless policies)."""
        ...

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what `state` returned; a policy then chooses as the one saved."""
        ...


class StatelessPolicy:
    """What every policy that learns nothing shares: `update` ignores outcomes, the state
    is empty, and restoring anything else is a ValueError."""

    version = 1
    seed: str

    def update(self, outcomes: Sequence[DecisionOutcome]) -> None:
        """Nothing to learn."""

    def state(self) -> dict[str, Any]:
        """Nothing learned."""
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Only the empty state is a state of this policy."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}")
