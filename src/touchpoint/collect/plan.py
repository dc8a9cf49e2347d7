"""The tracking plan: declared events and the JSON Schema of their properties.

Schemas are checked against the JSON Schema 2020-12 meta-schema once, when the
plan loads (a bad schema is a definition error with its path), and compiled
into validators kept for the life of the plan. Validation runs on every
collected event, so it uses jsonschema-rs (a compiled validator: well under a
microsecond for a typical event, where the pure-Python `jsonschema` takes tens).
Schemas are interpreted; nothing is generated or executed as code.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from touchpoint.core.config_sources import TrackingPlanConfig
from touchpoint.core.errors import DefinitionError


class TrackingPlan:
    """Checks stored events against the plan; returns violations as field/reason pairs."""

    def __init__(self, config: TrackingPlanConfig) -> None:
        self._allow_unplanned = config.allow_unplanned
        self._validators: dict[str, jsonschema_rs.Draft202012Validator] = {}
        for name, planned in config.events.items():
            path = f"tracking_plan.events.{name}.properties"
            self._validators[name] = _compile(planned.properties, path)
        self._identify: jsonschema_rs.Draft202012Validator | None = None
        if config.identify_traits is not None:
            self._identify = _compile(config.identify_traits, "tracking_plan.identify_traits")

    def violations(self, event: dict[str, Any]) -> list[dict[str, str]]:
        """Every way `event` breaks the plan (empty when it conforms)."""
        kind = event["type"]
        if kind == "identify":
            if self._identify is None:
                return []
            return _errors(self._identify, event.get("traits") or {}, "traits")
        if kind not in ("track", "page", "screen"):
            return []
        name = event.get("event") if kind == "track" else event.get("name")
        validator = self._validators.get(name) if isinstance(name, str) else None
        if validator is None:
            if kind == "track" and not self._allow_unplanned:
                return [{"field": "event", "reason": f"event {name!r} is not in the tracking plan"}]
            return []
        return _errors(validator, event.get("properties") or {}, "properties")


def _compile(schema: dict[str, Any], path: str) -> jsonschema_rs.Draft202012Validator:
    try:
        jsonschema_rs.meta.validate(schema)
        return jsonschema_rs.Draft202012Validator(schema)
    except jsonschema_rs.ValidationError as error:
        where = ".".join(str(part) for part in error.instance_path)
        reason = error.message.splitlines()[0]
        raise DefinitionError(f"{path}.{where}" if where else path, reason) from None
    except (ValueError, jsonschema_rs.ReferencingError) as error:
        raise DefinitionError(path, str(error).splitlines()[0]) from None


def _errors(
    validator: jsonschema_rs.Draft202012Validator, instance: Any, root: str
) -> list[dict[str, str]]:
    if validator.is_valid(instance):
        return []
    found = []
    for error in validator.iter_errors(instance):
        where = ".".join(str(part) for part in error.instance_path)
        found.append({"field": f"{root}.{where}" if where else root, "reason": error.message})
    found.sort(key=lambda item: item["field"])
    return found
