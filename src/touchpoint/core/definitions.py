"""Definitions of what a workspace decides and how consent gates it: consent purposes,
placements and content.

Placements and content are *versioned* definitions: `touchpoint apply` (or the
admin API) stores a new version of the whole set, and every decision records the
version it used. They are declared in `touchpoint.yaml` beside the rest of the
configuration, and validated the same way: every error names its path, every
condition is compiled and every Liquid template parsed before anything is
stored, so a bad definition is refused whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from touchpoint.core.clock import isoformat, parse_timestamp
from touchpoint.core.config_base import ConfigModel, check_duration
from touchpoint.core.errors import DefinitionError, format_location

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
CONTENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
ANALYTICS = "analytics"
PERSONALIZATION = "personalization"
MARKETING = "marketing"
MAX_WHOLE = 10**9
"""The largest `priority` (and smallest, negated) and cap `max`: far beyond any real use,
and within what every store and the JSON a version is kept as can hold."""


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


class CapConfig(ConfigModel):
    """A frequency cap: at most `max` decisions showing this content to one person per `per`."""

    max: int = Field(ge=1, le=MAX_WHOLE)
    per: str

    @field_validator("per")
    @classmethod
    def _per(cls, value: str) -> str:
        return check_duration(value)


class RecommendationsConfig(ConfigModel):
    """Fill a content item with a recommender's items for the person.

    `model`: the registry's recommender (`recommendations`, trained by `touchpoint train`);
    `k`: how many items; `min_items`: fewer than this and the item is not eligible (the
    placement's next candidate or fallback shows). The items reach the payload as `items`
    and the template as `items` (`{% for item in items %}{{ item.name }}{% endfor %}`), each
    with `item_id`, `score` and the catalog's attributes.
    """

    model: str = Field(default="recommendations", pattern=NAME_PATTERN)
    k: int = Field(default=4, ge=1, le=50)
    min_items: int = Field(default=1, ge=1, le=50)

    @model_validator(mode="after")
    def _bounds(self) -> RecommendationsConfig:
        if self.min_items > self.k:
            raise ValueError("`min_items` must not exceed `k`")
        return self


class ContentConfig(ConfigModel):
    """An item that can fill a placement.

    `payload` (JSON) and/or `template` (Liquid, rendered with the profile document and the
    request context). `placements`: the placements it may fill (a placement may also take
    content by tag). `eligibility`: a condition over the profile document plus `context`.
    Higher `priority` wins; `value` is what one conversion is worth (for reports and, later,
    ranking). `start`/`end`: the active window (ISO-8601 times, either open).
    `recommendations`: filled with a recommender's items for the person (see
    RecommendationsConfig); not eligible when the recommender has too few.
    """

    id: str = Field(pattern=CONTENT_ID_PATTERN)
    description: str = ""
    placements: list[str] = Field(default_factory=list)
    payload: dict[str, Any] | None = None
    template: str | None = None
    tags: list[str] = Field(default_factory=list)
    eligibility: Any = None
    priority: int = Field(default=0, ge=-MAX_WHOLE, le=MAX_WHOLE)
    value: float | None = Field(default=None, allow_inf_nan=False)
    start: str | None = None
    end: str | None = None
    caps: list[CapConfig] = Field(default_factory=list)
    recommendations: RecommendationsConfig | None = None

    @field_validator("payload")
    @classmethod
    def _json(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Storable as the JSON a version is kept in (64-bit whole numbers, finite numbers,
        at most 254 levels), so applying it cannot fail after validation."""
        if value is not None:
            try:
                orjson.dumps(value)
            except orjson.JSONEncodeError as error:
                raise ValueError(f"not storable as JSON: {error}") from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        """Stored canonical (`2026-01-01T00:00:00.000Z`), so times compare as strings."""
        if value is None:
            return None
        moment = parse_timestamp(value)
        if moment is None:
            raise ValueError("not an ISO-8601 time")
        return isoformat(moment)

    @model_validator(mode="after")
    def _shape(self) -> ContentConfig:
        if self.payload is None and self.template is None and self.recommendations is None:
            raise ValueError("content needs a `payload`, a `template` or `recommendations`")
        if self.start and self.end and self.start >= self.end:
            raise ValueError("`start` must be before `end`")
        return self


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


class Definitions(ConfigModel):
    """The versioned set: placements and their content."""

    placements: list[PlacementConfig] = Field(default_factory=list)
    content: list[ContentConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Definitions:
        placement_names = [placement.name for placement in self.placements]
        content_ids = [item.id for item in self.content]
        for label, names in (("placements", placement_names), ("content", content_ids)):
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{label}: names must be unique, repeated: {', '.join(repeated)}")
        known_content = set(content_ids)
        for placement in self.placements:
            if placement.fallback is not None and placement.fallback not in known_content:
                raise ValueError(
                    f"placement {placement.name!r}: fallback {placement.fallback!r} "
                    "is not a content id"
                )
        known_placements = set(placement_names)
        for item in self.content:
            unknown = [name for name in item.placements if name not in known_placements]
            if unknown:
                raise ValueError(
                    f"content {item.id!r}: unknown placements {', '.join(sorted(unknown))}"
                )
        return self

    def digest(self) -> str:
        """A stable hash of the definitions' content: equal sets have equal digests."""
        canonical = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()


def check_definitions(definitions: Definitions, *, prefix: str = "") -> None:
    """Compile every eligibility condition and parse every template; raise DefinitionError
    naming the first bad one's path (`content[3].template`)."""
    from liquid import Environment
    from liquid.exceptions import LiquidError

    from touchpoint.core.conditions import compile_condition

    environment = Environment()
    for index, item in enumerate(definitions.content):
        path = f"{prefix}content[{index}]"
        if item.eligibility is not None:
            compile_condition(item.eligibility, path=f"{path}.eligibility")
        if item.template is not None:
            try:
                environment.parse(item.template)
            except LiquidError as error:
                raise DefinitionError(
                    f"{path}.template", f"not a valid Liquid template: {error}"
                ) from None


def parse_definitions(data: Mapping[str, Any] | None) -> Definitions:
    """Validate a mapping `{placements: [...], content: [...]}` (the admin API's body, or the
    two sections of a `touchpoint.yaml`); raise DefinitionError naming the first bad path."""
    try:
        definitions = Definitions.model_validate(dict(data or {}))
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(part for part in first["loc"] if not str(part).startswith("function-"))
        raise DefinitionError(format_location(location) or "<root>", first["msg"]) from None
    check_definitions(definitions)
    return definitions
