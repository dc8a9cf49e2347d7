"""Definitions admin: the sets and items it takes, and the versions and diffs it answers.

Inputs are checked item by item by `definitions.model.parse_definitions` (so an error names
its path inside the set); these models take the items as plain JSON. Outputs mirror
`definitions.model` as written back (`model_dump(mode="json")`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from touchpoint.api.schemas.common import Out


class PlanRequest(BaseModel):
    """A whole set of placements and content (items are validated by `parse_definitions`,
    so an error names its path inside the set)."""

    model_config = ConfigDict(extra="forbid")

    placements: list[Any]
    content: list[Any]


class ApplyRequest(PlanRequest):
    """A whole set to apply, with a note kept on the version."""

    note: str = ""


class Cap(Out):
    """At most `max` decisions showing the item per person over `per` (`1d`, `12h`)."""

    max: int
    per: str


class Recommendations(Out):
    """The item is filled with a recommender's items for the person."""

    model: str
    k: int
    min_items: int


class ContentItem(Out):
    """A content item as written in the definitions."""

    id: str
    description: str
    placements: list[str]
    payload: dict[str, Any] | None
    template: str | None
    tags: list[str]
    eligibility: Any = Field(description="a condition, as written (text or structured)")
    priority: int
    value: float | None
    start: str | None
    end: str | None
    caps: list[Cap]
    recommendations: Recommendations | None


class Placement(Out):
    """A placement as written in the definitions."""

    name: str
    description: str
    channel: str
    tags: list[str]
    fallback: str | None
    conversion_events: list[str]
    policy: str | dict[str, Any] = Field(
        description="the policy's name when its parameters are all defaults, else "
        "`{type: name, parameter: value…}`"
    )


class DefinitionSet(Out):
    """Placements and content, in definition order."""

    placements: list[Placement]
    content: list[ContentItem]


class DefinitionVersionOut(Out):
    """One applied version with its whole set."""

    version: int
    digest: str
    applied_at: str
    actor: str
    note: str
    definitions: DefinitionSet


class DefinitionVersionSummary(Out):
    """One applied version, with how many placements and content items it has."""

    version: int
    digest: str
    applied_at: str
    actor: str
    note: str
    placements: int
    content: int


class DefinitionVersionPage(Out):
    """Applied versions, newest first; pass `next_cursor` as `cursor` for the next page."""

    versions: list[DefinitionVersionSummary]
    next_cursor: str | None


class KindDiff(Out):
    """Ids added, removed and changed (with the changed fields), and whether kept items
    moved."""

    added: list[str]
    removed: list[str]
    changed: dict[str, list[str]]
    reordered: bool


class DefinitionDiff(Out):
    """What a set changes against the current version, per kind."""

    placements: KindDiff
    content: KindDiff


class PlanResult(Out):
    """What applying the set would change (nothing is stored)."""

    current_version: int
    changed: bool
    diff: DefinitionDiff


class ApplyResult(Out):
    """The version now current (`changed` false when the set equals the current one)."""

    version: int
    changed: bool
    diff: DefinitionDiff
