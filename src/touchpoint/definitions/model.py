"""The versioned set of definitions: every kind together (placements and content today).

`touchpoint apply` (or the admin API) stores a new version of the whole set, and every
decision records the version it used. They are declared in `touchpoint.yaml` beside the
rest of the configuration, and validated the same way: every error names its path, every
condition is compiled and every Liquid template parsed before anything is stored, so a bad
definition is refused whole. Each kind has its own schema module in this package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import Field, ValidationError, model_validator

from touchpoint.core.config_base import ConfigModel
from touchpoint.core.errors import DefinitionError, format_location
from touchpoint.definitions.content import ContentConfig
from touchpoint.definitions.placements import PlacementConfig


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
