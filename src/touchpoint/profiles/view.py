"""The profile as conditions and the API see it: one plain JSON document.

Segments, placements' eligibility rules and the HTTP API all read a profile
through this document, so a condition such as `features.views_7d >= 3` means the
same thing everywhere. Feature values are computed at `now` (windows expire with
time alone), which is why the document is built on demand and never stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from touchpoint.profiles.model import Profile

if TYPE_CHECKING:
    from touchpoint.profiles.features import FeatureEngine


def profile_document(profile: Profile, engine: FeatureEngine, now: datetime) -> dict[str, Any]:
    """The document of `profile` at `now`.

    Keys: `profile_id`, `identities` ({kind: [values]}), `traits`, `features` (values at
    `now`), `segments` (member names, sorted), `segment_memberships` ({name: entered_at}),
    `consent`, `scores`, `recommendations` (the precomputed item ids, best first; absent
    when there are none, so `recommendations exists` says whether there are),
    `first_seen`, `last_seen`, `created_at`, and `profile`
    ({id, first_seen, last_seen}) for conditions written as `profile.last_seen`.
    The document shares nothing mutable with the profile.
    """
    identities: dict[str, list[str]] = {}
    for identity in profile.identities:
        identities.setdefault(identity.kind, []).append(identity.value)
    document = {
        "profile_id": profile.profile_id,
        "identities": identities,
        "traits": dict(profile.traits),
        "features": engine.values(profile.features, now),
        "segments": sorted(profile.segments),
        "segment_memberships": dict(profile.segments),
        "consent": dict(profile.consent),
        "scores": dict(profile.scores),
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "created_at": profile.created_at,
        "profile": {
            "id": profile.profile_id,
            "first_seen": profile.first_seen,
            "last_seen": profile.last_seen,
        },
    }
    items = profile.recommendations.get("items")
    if items:
        document["recommendations"] = [item["item_id"] for item in items]
    return document
