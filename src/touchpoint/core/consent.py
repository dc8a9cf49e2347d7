"""Consent purposes: what people agree to, and what holds until they say otherwise.

Every area asks the same question (does this person allow `analytics`, `personalization`,
`marketing`?), so the purposes and their defaults live at the bottom of the house.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from touchpoint.core.config_base import ConfigModel

ANALYTICS = "analytics"
PERSONALIZATION = "personalization"
MARKETING = "marketing"


class ConsentPurpose(ConfigModel):
    """A purpose people consent to. `default`: what holds until the person says otherwise
    (opt-in regions need `false`)."""

    default: bool = True
    description: str = ""


def _default_purposes() -> dict[str, ConsentPurpose]:
    return {
        ANALYTICS: ConsentPurpose(default=True, description="Collect and profile behaviour."),
        PERSONALIZATION: ConsentPurpose(default=True, description="Personalize content."),
        MARKETING: ConsentPurpose(default=False, description="Send marketing messages."),
    }


class ConsentConfig(ConfigModel):
    """Consent purposes and what happens to events without `analytics` consent.

    `without_analytics`: `anonymize` keeps such events only stripped of every identifier
    (no profile grows from them); `drop` deletes them.
    """

    purposes: dict[str, ConsentPurpose] = Field(default_factory=_default_purposes)
    without_analytics: Literal["anonymize", "drop"] = "anonymize"

    @model_validator(mode="after")
    def _required_purposes(self) -> ConsentConfig:
        missing = [p for p in (ANALYTICS, PERSONALIZATION) if p not in self.purposes]
        if missing:
            raise ValueError(f"consent purposes must include {', '.join(missing)}")
        return self

    def allows(self, consent: Mapping[str, Any], purpose: str) -> bool:
        """Whether a person's recorded consent (`{purpose: bool}`) allows `purpose`; a purpose
        they never answered takes its default (an unknown purpose is denied)."""
        given = consent.get(purpose)
        if isinstance(given, bool):
            return given
        declared = self.purposes.get(purpose)
        return declared.default if declared is not None else False
