"""Policies: how a placement picks one item among its eligible candidates.

Every policy follows one small protocol, so the decision engine and, later, the
off-policy evaluation harness treat them alike:

    choose(placement, candidates, subject) -> Choice | None

`candidates` are the *eligible* items (active, eligible for this person, not
capped) in tiers of equal priority, highest first, produced lazily: a policy
reads only as many tiers as it needs, and eligibility is only evaluated for the
tiers it reads. `subject` names the person (`kind:value`) for policies that
must be consistent per person. The `Choice` says what was chosen and with which
probability (`propensity`), which off-policy evaluation needs.

v1 has one policy, `priority`. The shape leaves room for the next ones:

- ranking by model scores: read every tier, score the items (by `value` times a
  predicted rate, say), choose the best; propensity stays 1.0;
- bandits: choose at random with learned weights, report the probability of the
  item chosen as `propensity` (< 1), and learn from outcomes through an
  `update(outcome)` verb (the uniform verbs of STYLE.md);
- experiment arms: a wrapper that assigns the subject to an arm by a stable
  hash (like `stable_hash` below) and delegates to the arm's policy, filling
  `experiment` and `arm` in the Choice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from touchpoint.decide.catalog import CompiledContent

PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class Choice:
    """What a policy chose: the content, the probability it had of choosing it, the policy's
    name, and (for experiments) the experiment and arm."""

    content: CompiledContent
    propensity: float
    policy: str
    experiment: str | None = None
    arm: str | None = None


class Policy(Protocol):
    """Chooses one item for a placement among eligible candidates (see the module doc)."""

    @property
    def name(self) -> str:
        """The name decisions record (`priority`)."""
        ...

    def choose(
        self,
        placement: str,
        candidates: Iterable[Sequence[CompiledContent]],
        subject: str,
    ) -> Choice | None:
        """The chosen item, or None when there is no eligible candidate. Must not mutate
        its inputs; given the same inputs, a deterministic policy gives the same Choice."""
        ...


def stable_hash(subject: str, placement: str, content_id: str) -> int:
    """A 64-bit number from (subject, placement, content id), the same on every machine and
    in every process (SHA-256, never Python's salted `hash()`)."""
    key = f"{subject}\x1f{placement}\x1f{content_id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def pick_tied(subject: str, placement: str, content_ids: Sequence[str]) -> str:
    """Among tied content ids, the one with the highest `stable_hash` for this person.

    The same person always gets the same item (a consistent page), different people spread
    evenly across the items, and adding or removing one item only moves the people who get
    or got that item (rendezvous hashing). Ties of the hash itself go to the smaller id.
    """
    if not content_ids:
        raise ValueError("pick_tied needs at least one content id")
    best = content_ids[0]
    best_score = stable_hash(subject, placement, best)
    for content_id in content_ids[1:]:
        score = stable_hash(subject, placement, content_id)
        if score > best_score or (score == best_score and content_id < best):
            best, best_score = content_id, score
    return best


class PriorityPolicy:
    """v1: the highest-priority eligible item; ties broken by `pick_tied` on the subject.

    It reads only the first tier of eligible candidates, so lower tiers are never evaluated.
    Propensity is 1.0: given the person, the choice is deterministic.
    """

    name = PRIORITY

    def choose(
        self,
        placement: str,
        candidates: Iterable[Sequence[CompiledContent]],
        subject: str,
    ) -> Choice | None:
        for tier in candidates:
            if not tier:
                continue
            if len(tier) == 1:
                return Choice(tier[0], 1.0, self.name)
            by_id = {item.id: item for item in tier}
            chosen = pick_tied(subject, placement, list(by_id))
            return Choice(by_id[chosen], 1.0, self.name)
        return None


def default_policies() -> Mapping[str, Policy]:
    """The policies a placement's `policy` may name."""
    return {PRIORITY: PriorityPolicy()}
