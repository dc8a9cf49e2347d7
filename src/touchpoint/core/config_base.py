"""What every section of the workspace configuration shares: frozen models that refuse
unknown keys (a typo is an error naming its path, never a silently ignored setting), and the
duration check."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from touchpoint.core.clock import parse_duration


class ConfigModel(BaseModel):
    """A section of `touchpoint.yaml`: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_duration(value: str) -> str:
    """`value` if it is a duration such as `30d` (see core.clock.parse_duration); else the
    ValueError that names why, which pydantic reports with the setting's path."""
    parse_duration(value)
    return value
