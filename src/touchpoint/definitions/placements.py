"""Placements: the named slots on a channel that decisions fill."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_serializer

from touchpoint.core.config_base import ConfigModel
from touchpoint.definitions.common import NAME_PATTERN
from touchpoint.definitions.policies import PolicyConfig, PriorityPolicyConfig, policy_document


class PlacementConfig(ConfigModel):
    """A named slot on a channel (`home_hero`, `email_banner`).

    Candidates: content that lists this placement in its `placements`, plus content carrying
    any of `tags`. `fallback`: the content shown when nothing is eligible (or when the person
    does not consent to personalization); it is exempt from eligibility and caps.
    `conversion_events`: track events that count as conversions when they carry this
    placement's `decision_id`. `policy`: how candidates are chosen, a policy name
    (`priority`, the default, or `uniform`) or `{type: …, parameters…}`; see
    `touchpoint.definitions.policies`.
    """

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    channel: str = "web"
    tags: list[str] = Field(default_factory=list)
    fallback: str | None = None
    conversion_events: list[str] = Field(default_factory=list)
    policy: PolicyConfig = Field(default_factory=PriorityPolicyConfig)

    @field_serializer("policy")
    def _written_policy(self, policy: PolicyConfig) -> str | dict[str, Any]:
        return policy_document(policy)
