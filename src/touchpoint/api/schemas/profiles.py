"""Profile lookups: the merged profile document and its timeline."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from touchpoint.api.schemas.common import Out


class IdentityOut(Out):
    """One identifier of a person (PII kinds are hashed)."""

    kind: str
    value: str


class MergeOut(Out):
    """Two profiles became one: `merged_id` into `survivor_id`, because of `identity`."""

    survivor_id: str
    merged_id: str
    identity: IdentityOut
    message_id: str
    at: str


class ProfileSummary(Out):
    """The profile's id and times, as conditions see them (`profile.last_seen`)."""

    id: str
    first_seen: str | None
    last_seen: str | None


class ProfileDocument(Out):
    """A person as conditions and templates see them: identities, traits, feature values
    now, segments, consent, scores and recommendations."""

    profile_id: str
    identities: dict[str, list[str]] = Field(description="values per identity kind")
    traits: dict[str, Any]
    features: dict[str, Any] = Field(description="each feature's value now")
    segments: list[str]
    segment_memberships: dict[str, str] = Field(description="segment: when the person entered")
    consent: dict[str, bool]
    scores: dict[str, Any]
    first_seen: str | None
    last_seen: str | None
    created_at: str
    profile: ProfileSummary
    recommendations: list[str] | None = Field(
        default=None, description="precomputed item ids, best first (absent when none)"
    )


class ProfileOut(ProfileDocument):
    """The merged profile of an identifier, with the merges that made it."""

    lineage: list[MergeOut]


class ProfileEventsPage(Out):
    """The profile's stored events, newest first; pass `next_cursor` as `cursor`."""

    events: list[dict[str, Any]]
    next_cursor: str | None
