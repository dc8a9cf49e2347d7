"""The decision log: every decision, and the outcomes joined to it.

One interface, several backends (SQLite embedded, PostgreSQL in server mode). A
decision request covering several placements gives one `decision_id` and one
record per placement. Outcomes are ordinary track events that carry
`properties.decision_id`; the `outcomes` consumer (decide/outcomes.py) records them here,
keyed by the event's message id, so a replay changes nothing.

A decision names its person twice: `profile_id` when the person had a profile,
and `subject` (the identity the request named, `kind:value`, hashed when the kind
is PII) always, so caps and erasure work for a visitor whose profile does not
exist yet.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres

OutcomeKind = Literal["view", "click", "conversion"]
VIEW_EVENT = "Decision Viewed"
CLICK_EVENT = "Decision Clicked"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What one placement showed one person, and why.

    `content_id` is None when nothing (not even a fallback) could be shown. `reason`:
    `eligible` (chosen by the policy), `fallback`, `no_consent`, `render_error`, `empty`.
    `propensity`: the probability the policy had of choosing this content (1.0 for
    deterministic policies), which off-policy evaluation needs. `experiment`/`arm`: the
    experiment and arm that exposed the person, as the policy's choice named them (None
    outside experiments). `features`: what the policy read to choose (empty for policies
    that read none), so a learning policy can be replayed and evaluated.
    """

    decision_id: str
    placement: str
    content_id: str | None
    profile_id: str | None
    subject: str
    policy: str
    definitions_version: int
    reason: str
    propensity: float
    at: str
    experiment: str | None = None
    arm: str | None = None
    context: dict[str, Any] = field(default_factory=dict, compare=False)
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """An event joined to a decision. `placement`/`content_id` are None when the event did
    not say which of the decision's placements it is about (and the decision had several)."""

    message_id: str
    decision_id: str
    placement: str | None
    content_id: str | None
    kind: OutcomeKind
    event: str
    profile_id: str | None
    at: str
    value: float | None = None


@dataclass(frozen=True, slots=True)
class ContentReport:
    """One content item's figures on one placement over a window.

    `decisions`: times it was chosen; `impressions`, `clicks`, `conversions`: distinct
    decisions with at least one outcome of that kind; `value`: sum of conversion values.
    """

    content_id: str | None
    decisions: int
    impressions: int
    clicks: int
    conversions: int
    value: float

    @property
    def click_rate(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.impressions if self.impressions else None


@dataclass(frozen=True, slots=True)
class ErasedDecisions:
    """What an erasure removed from the decision log."""

    decisions: int
    outcomes: int


class DecisionLog(abc.ABC):
    """Decisions and their outcomes."""

    @abc.abstractmethod
    def record(self, decisions: Sequence[DecisionRecord]) -> None:
        """Durably store decisions (all or none). A decision id + placement already stored
        is an error (`ValueError`): ids are generated, never reused."""

    @abc.abstractmethod
    def get(self, decision_id: str) -> list[DecisionRecord]:
        """The decision's records, one per placement (empty if unknown)."""

    @abc.abstractmethod
    def outcomes(self, decision_id: str) -> list[Outcome]:
        """Outcomes joined to the decision, oldest first."""

    @abc.abstractmethod
    def record_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        """Store outcomes, ignoring message ids already stored; how many were new."""

    @abc.abstractmethod
    def shown_counts(
        self,
        *,
        profile_id: str | None,
        subjects: Collection[str],
        content_ids: Collection[str],
        since: str,
    ) -> dict[str, int]:
        """Per content id, how many decisions since `since` showed it to this person (matched
        by profile id or any of `subjects`). Frequency caps read this."""

    @abc.abstractmethod
    def report(self, placement: str, *, since: str, until: str) -> list[ContentReport]:
        """Per content id (None for "nothing shown"), the placement's figures over
        [since, until), by decision time, highest decision count first."""

    @abc.abstractmethod
    def for_person(
        self, *, profile_ids: Collection[str], subjects: Collection[str]
    ) -> tuple[list[DecisionRecord], list[Outcome]]:
        """Every decision and outcome of a person, oldest first (for export)."""

    @abc.abstractmethod
    def erase(self, *, profile_ids: Collection[str], subjects: Collection[str]) -> ErasedDecisions:
        """Delete a person's decisions and outcomes (outcomes of their decisions, and any
        outcome recorded with one of their profile ids)."""

    @abc.abstractmethod
    def list(
        self, *, placement: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[DecisionRecord]:
        """Decisions, newest first."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many decision records are stored."""

    def scrub(self) -> builtins.list[Leftover]:
        """After an erasure: make the backend overwrite what the erased rows left in its
        files, where it can; what may still hold their bytes, and until when (empty when
        nothing does). Nothing to do by default (a backend without files of its own)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


DEFAULT_DECISIONS_FILE = "decisions.sqlite3"


def build_decision_log(
    config: StoreConfig, data_dir: Path, postgres: Postgres | None = None
) -> DecisionLog:
    """The decision log the configuration names: PostgreSQL when `postgres` is given, else
    SQLite under `data_dir`."""
    if postgres is not None:
        from touchpoint.decide.decision_log.postgres import PostgresDecisionLog

        return PostgresDecisionLog(postgres)
    from touchpoint.decide.decision_log.sqlite import SqliteDecisionLog

    path = Path(config.path) if config.path else data_dir / DEFAULT_DECISIONS_FILE
    return SqliteDecisionLog(path)
