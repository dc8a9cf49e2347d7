"""The profile: one person, as the stream processor keeps them.

A profile is a mutable record inside the processor (it is loaded, changed by
events and saved in one transaction) and a plain JSON document outside it.
Feature *states* are kept here; feature *values* (which may depend on the
current time, e.g. a 7-day window) are computed when read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """An identifier of a person: its kind (`user_id`, `email`…) and value (hashed if PII)."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class MergeRecord:
    """Lineage: `merged_id` was folded into `survivor_id` because `identity` linked them."""

    survivor_id: str
    merged_id: str
    identity: Identity
    message_id: str
    at: str


@dataclass(slots=True)
class Profile:
    """One person. Times are canonical ISO-8601 strings (see core.clock.isoformat)."""

    profile_id: str
    created_at: str
    first_seen: str | None = None
    last_seen: str | None = None
    last_event_at: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    trait_times: dict[str, str] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    consent_times: dict[str, str] = field(default_factory=dict)
    segments: dict[str, str] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    recommendations: dict[str, Any] = field(default_factory=dict)
    identities: list[Identity] = field(default_factory=list)
    version: int = 0

    def state(self) -> dict[str, Any]:
        """The stored document (identities and segments live in their own tables)."""
        return {
            "created_at": self.created_at,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_event_at": self.last_event_at,
            "traits": self.traits,
            "trait_times": self.trait_times,
            "features": self.features,
            "consent": self.consent,
            "consent_times": self.consent_times,
            "scores": self.scores,
            "recommendations": self.recommendations,
        }

    @classmethod
    def from_state(
        cls,
        profile_id: str,
        state: dict[str, Any],
        *,
        identities: list[Identity] | None = None,
        segments: dict[str, str] | None = None,
        version: int = 0,
    ) -> Profile:
        return cls(
            profile_id=profile_id,
            created_at=state["created_at"],
            first_seen=state.get("first_seen"),
            last_seen=state.get("last_seen"),
            last_event_at=state.get("last_event_at"),
            traits=dict(state.get("traits") or {}),
            trait_times=dict(state.get("trait_times") or {}),
            features=dict(state.get("features") or {}),
            consent=dict(state.get("consent") or {}),
            consent_times=dict(state.get("consent_times") or {}),
            scores=dict(state.get("scores") or {}),
            recommendations=dict(state.get("recommendations") or {}),
            identities=list(identities or []),
            segments=dict(segments or {}),
            version=version,
        )

    def identity_values(self, kind: str) -> list[str]:
        return [identity.value for identity in self.identities if identity.kind == kind]
