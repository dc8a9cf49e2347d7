"""Placements: the named slots on a channel that decisions fill."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from touchpoint.core.config_base import ConfigModel
from touchpoint.definitions.common import NAME_PATTERN


class PlacementConfig(ConfigModel):
    """A named slot on a channel (`home_hero`, `email_banner`).

    Candidates: content that lists this placement in its `placements`, plus content carrying
    any of `tags`. `fallback`: the content shown when nothing is eligible (or when the person
    does not consent to personalization); it is exempt from eligibility and caps.
    `conversion_events`: track events that count as conversions when they carry this
    placement's `decision_id`. `policy`: how candidates are chosen (`priority` in v1).
    """

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    channel: str = "web"
    tags: list[str] = Field(default_factory=list)
    fallback: str | None = None
    conversion_events: list[str] = Field(default_factory=list)
    policy: Literal["priority"] = "priority"
