"""What a decision request is and what it answers: the values the engine, the API and the
tests share (the engine itself is in `decide.engine`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

ELIGIBLE = "eligible"
FALLBACK = "fallback"
NO_CONSENT = "no_consent"
RENDER_ERROR = "render_error"
EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class DecideRequest:
    """Who is asking (`identities`: kind -> value as the caller knows it, raw or hashed for
    PII kinds), in which `context` (page, device…), for which placements (in order)."""

    identities: Mapping[str, str]
    placements: Sequence[str]
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlacementDecision:
    """What one placement shows: the content (None if nothing), its payload and rendered
    HTML (None without a template), why (`reason`), the policy and its propensity, the
    experiment and arm that exposed the person (None outside experiments) and the features
    the policy read (the decision log keeps them with the record)."""

    placement: str
    content_id: str | None
    payload: dict[str, Any] | None
    html: str | None
    reason: str
    policy: str
    propensity: float
    experiment: str | None = None
    arm: str | None = None
    features: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        """The API's shape of one placement; `experiment` and `arm` only when the person was
        exposed to an experiment (so answers outside experiments keep their shape)."""
        body = {
            "content_id": self.content_id,
            "payload": self.payload,
            "html": self.html,
            "reason": self.reason,
            "policy": self.policy,
        }
        if self.experiment is not None:
            body["experiment"] = self.experiment
            body["arm"] = self.arm
        return body


@dataclass(frozen=True, slots=True)
class DecideResult:
    """One decision: its id, the person (`profile_id` None for someone without a profile
    yet; `subject` the identity decisions are keyed on), the definitions version used, and
    one PlacementDecision per requested placement, in request order."""

    decision_id: str
    profile_id: str | None
    subject: str
    definitions_version: int
    at: str
    placements: dict[str, PlacementDecision]

    def to_dict(self, *, with_profile_id: bool = True) -> dict[str, Any]:
        """The API's response body; without `profile_id` for a caller that must not learn
        it (a write key), so the answer has one shape for a known person and a stranger."""
        body: dict[str, Any] = {"decision_id": self.decision_id}
        if with_profile_id:
            body["profile_id"] = self.profile_id
        body["definitions_version"] = self.definitions_version
        body["placements"] = {name: item.to_dict() for name, item in self.placements.items()}
        return body
