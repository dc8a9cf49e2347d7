"""Policies by type name: built from a placement's `policy` config and a seed, saved and
loaded with what they learned.

`POLICIES` maps every `type` of `touchpoint.definitions.policies` to a factory; a new policy
is one entry here (and its config there), and the shared checks
(`touchpoint.checks.policies`) then run over it too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from touchpoint.core.errors import DefinitionError, format_location
from touchpoint.decide.policies.base import Policy
from touchpoint.decide.policies.priority import PriorityPolicy
from touchpoint.decide.policies.uniform import UniformPolicy
from touchpoint.definitions.policies import (
    PRIORITY,
    UNIFORM,
    PolicyConfig,
    PriorityPolicyConfig,
    UniformPolicyConfig,
)

PolicyFactory = Callable[[Any, str], Policy]


def _priority(config: PriorityPolicyConfig, seed: str) -> Policy:
    return PriorityPolicy(config, seed=seed)


def _uniform(config: UniformPolicyConfig, seed: str) -> Policy:
    return UniformPolicy(config, seed=seed)


POLICIES: Mapping[str, PolicyFactory] = {PRIORITY: _priority, UNIFORM: _uniform}
"""Every policy by the `type` a placement names."""

_CONFIG: TypeAdapter[PolicyConfig] = TypeAdapter(PolicyConfig)
SAVED_FORMAT = 1


def parse_policy(value: Any, *, path: str = "policy") -> PolicyConfig:
    """A policy config from its written form (a name or `{type: …}`); DefinitionError naming
    `path` and the bad part otherwise."""
    try:
        return _CONFIG.validate_python(value)
    except ValidationError as error:
        first = error.errors()[0]
        where = format_location((path, *first["loc"])) if first["loc"] else path
        raise DefinitionError(where, first["msg"]) from None


def build_policy(config: PolicyConfig | str | Mapping[str, Any], *, seed: str) -> Policy:
    """The policy `config` names, built with its parameters and `seed` (the decision engine
    passes the placement's name)."""
    parsed = config if not isinstance(config, str | Mapping) else parse_policy(config)
    return POLICIES[parsed.type](parsed, seed)


def save_policy(policy: Policy) -> bytes:
    """The policy as JSON bytes: its type, parameters, seed and learned state."""
    document = {
        "format": SAVED_FORMAT,
        "type": policy.name,
        "version": policy.version,
        "params": dict(policy.params),
        "seed": policy.seed,
        "state": policy.state(),
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def load_policy(data: bytes) -> Policy:
    """The policy `save_policy` wrote, choosing exactly as the saved one; ValueError for
    another format, an unknown type or a version this code does not implement."""
    document = orjson.loads(data)
    if not isinstance(document, dict) or document.get("format") != SAVED_FORMAT:
        raise ValueError("not a saved policy")
    kind = document.get("type")
    if kind not in POLICIES:
        raise ValueError(f"unknown policy type {kind!r}")
    policy = build_policy({"type": kind, **document["params"]}, seed=str(document["seed"]))
    if document.get("version") != policy.version:
        raise ValueError(
            f"saved {kind} policy is version {document.get('version')}, "
            f"this code implements version {policy.version}"
        )
    policy.restore(document["state"])
    return policy
