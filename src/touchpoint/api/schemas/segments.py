"""Segments: their definitions with sizes, and their members."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from touchpoint.api.schemas.common import Out


class SegmentOut(Out):
    """A real-time segment (`kind` realtime, with its condition) or one a model wrote
    (`kind` batch, with that model)."""

    name: str
    kind: Literal["realtime", "batch"]
    size: int
    description: str | None = None
    condition: Any = Field(default=None, description="realtime: the condition, as written")
    model: str | None = Field(default=None, description="batch: the model family that wrote it")


class SegmentList(Out):
    """Every segment with its current size."""

    segments: list[SegmentOut]


class SegmentMember(Out):
    """A member and when they entered."""

    profile_id: str
    entered_at: str


class SegmentMembersPage(Out):
    """A segment's current members; pass `next_cursor` as `cursor` for the next page."""

    segment: str
    members: list[SegmentMember]
    next_cursor: str | None
