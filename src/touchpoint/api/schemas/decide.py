"""`POST /v1/decide`'s body and answer, and the placements as the admin API shows them.

The route parses its body itself (`routers.decide.parse_decide_body`, orjson, no model on
the hot path); `decide_body_schema` documents it with the workspace's own identity kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from touchpoint.api.schemas.common import Out
from touchpoint.api.schemas.definitions import ContentItem
from touchpoint.core.identity_verification import USER_HASH_FIELD


def decide_body_schema(identity_kinds: Sequence[str], max_placements: int) -> dict[str, Any]:
    """The JSON schema of the decide body: the person named by one or more of the workspace's
    identity kinds, the placements to fill, and a context for conditions and templates."""
    identities: dict[str, Any] = {
        kind: {
            "anyOf": [{"type": "string", "minLength": 1, "pattern": r"\S"}, {"type": "null"}],
            "description": f"the person's {kind}",
        }
        for kind in identity_kinds
    }
    return {
        "title": "DecideBody",
        "type": "object",
        "description": (
            "Name the person with at least one identity kind ("
            + ", ".join(identity_kinds)
            + "); the first one that resolves to a profile is used."
        ),
        "properties": {
            **identities,
            "context": {
                "type": "object",
                "description": "request context: conditions and templates see it as `context`",
            },
            "placements": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": max_placements,
                "uniqueItems": True,
                "description": "the placements to fill, by name",
            },
            USER_HASH_FIELD: {
                "type": "string",
                "description": (
                    "with a write key: hex HMAC-SHA256 of `user_id` under the source's "
                    "identity secret, computed by the site's backend (docs/threat-model.md)"
                ),
            },
        },
        "required": ["placements"],
        "anyOf": [{"required": [kind]} for kind in identity_kinds],
        "additionalProperties": False,
    }


class PlacementDecision(Out):
    """What one placement shows: the content (None when nothing could be shown), its payload
    and rendered HTML, why it was chosen and by which policy."""

    content_id: str | None
    payload: dict[str, Any] | None
    html: str | None
    reason: str = Field(description="eligible, fallback, no_consent, render_error, empty")
    policy: str
    experiment: str | None = Field(
        default=None, description="the experiment that exposed the person (only then)"
    )
    arm: str | None = Field(default=None, description="the experiment's arm (with experiment)")


class DecideResponse(Out):
    """One decision: its id (send it back with `Decision Viewed`/`Clicked` events), the person
    (`profile_id`, None before they have a profile; only in answers to the secret key), the
    definitions version used, and each requested placement."""

    decision_id: str
    profile_id: str | None = Field(default=None, description="only for the secret key")
    definitions_version: int
    placements: dict[str, PlacementDecision]


class PlacementDescription(Out):
    """A placement of the current definitions with its candidate content and fallback."""

    name: str
    description: str
    channel: str
    policy: str
    tags: list[str]
    conversion_events: list[str]
    fallback: ContentItem | None
    content: list[ContentItem]


class PlacementDetail(PlacementDescription):
    """One placement, with the definitions version it comes from."""

    version: int


class PlacementList(Out):
    """Every placement of the current definitions version."""

    version: int
    placements: list[PlacementDescription]
