"""Content: the items that can fill a placement (a payload, a Liquid template, or a
recommender's items), with their eligibility, priority, active window and caps."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import Field, field_validator, model_validator

from touchpoint.core.clock import isoformat, parse_timestamp
from touchpoint.core.config_base import ConfigModel, check_duration
from touchpoint.definitions.common import CONTENT_ID_PATTERN, MAX_WHOLE, NAME_PATTERN


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
