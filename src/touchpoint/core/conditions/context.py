"""What callers put in front of a condition: the documented namespaces.

The condition language does not restrict namespaces; it resolves any dotted
path through nested mappings. This TypedDict documents what the areas provide,
so definitions written for one caller read the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict


class ConditionContext(TypedDict, total=False):
    """The context a profile-level condition (segments, eligibility, targeting) sees.

    - `traits`, `features`, `scores` (also reachable as `score.`), `consent`,
      `identities`: the profile's mappings;
    - `segments`: the profile's segment names (a list, or a mapping name -> entered_at;
      `{"segment": name}` and `segments contains name` work with both);
    - `context`: the request context of a decision (`context.page.path`);
    - `profile`: `id`, `first_seen`, `last_seen`; `first_seen` / `last_seen` also top level.

    Times may be datetimes or ISO-8601 strings. Event filters (feature `where`)
    get the stored event itself instead: `event`, `type`, `properties.x`,
    `context.x`, `traits.x`, `timestamp`.
    """

    traits: Mapping[str, Any]
    features: Mapping[str, Any]
    segments: Sequence[str] | Mapping[str, Any]
    scores: Mapping[str, Any]
    consent: Mapping[str, Any]
    identities: Mapping[str, Any]
    context: Mapping[str, Any]
    profile: Mapping[str, Any]
    first_seen: str | datetime | None
    last_seen: str | datetime | None
