"""The workspace configuration (`touchpoint.yaml`), validated with pydantic.

Every definition a workspace holds is declared here: sources and their keys,
the tracking plan, identity rules, computed features, segments and the stores.
Validation errors name the path of the offending value (`touchpoint config
validate`). Conditions are checked by compiling them, so a bad one is refused
at load time with its path, never at the first event.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from touchpoint.core.config_base import ConfigModel, check_duration
from touchpoint.core.config_sources import (
    CollectConfig,
    RateLimitConfig,
    SourceConfig,
    TrackingPlanConfig,
)
from touchpoint.core.config_stores import (
    LogConfig,
    ModelsConfig,
    PostgresConfig,
    RedisConfig,
    StoreConfig,
    StreamConfig,
    WarehouseConfig,
)
from touchpoint.core.consent import ConsentConfig
from touchpoint.core.errors import DefinitionError, format_location
from touchpoint.core.keys import same_key
from touchpoint.core.privacy import BUILTIN_AS, PrivacyConfig, parse_path
from touchpoint.definitions.content import ContentConfig
from touchpoint.definitions.model import Definitions, check_definitions
from touchpoint.definitions.placements import PlacementConfig

DEFAULT_DATA_DIR = "./touchpoint-data"
DEFAULT_SOURCE = "default"
PRIVACY_SOURCE_ROOTS = ("traits.", "properties.", "context.")
ITEM_PROPERTIES = ("product_id", "item_id", "sku")


class IdentityKind(ConfigModel):
    """A kind of identifier that resolves to a profile.

    `source` says where an event carries it: `user_id`, `anonymous_id`, or
    `traits.<name>` / `properties.<name>` / `context.traits.<name>`.
    `limit`: the most distinct values of this kind one profile may hold; a merge
    that would exceed it does not happen. `priority`: lower resolves first.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    source: str
    priority: int = 100
    limit: int | None = Field(default=None, ge=1)
    pii: bool = False
    normalize: Literal["none", "lower", "email", "phone"] = "none"


def identity_paths(source: str) -> list[tuple[str, ...]]:
    """Where in an event an identity kind's values are: its source as path segments, and
    for a trait also `context.traits.<name>` (SDKs copy traits there on track events).
    Empty for `user_id` / `anonymous_id`."""
    if not source.startswith(PRIVACY_SOURCE_ROOTS):
        return []
    path = tuple(source.split("."))
    return [path, ("context", *path)] if path[0] == "traits" else [path]


def _default_identity_kinds() -> list[IdentityKind]:
    return [
        IdentityKind(name="user_id", source="user_id", priority=1, limit=1),
        IdentityKind(
            name="email", source="traits.email", priority=2, limit=None, pii=True, normalize="email"
        ),
        IdentityKind(name="anonymous_id", source="anonymous_id", priority=10, limit=None),
    ]


class IdentityConfig(ConfigModel):
    """Identity resolution rules: the kinds, the values never trusted, the hash secret."""

    kinds: list[IdentityKind] = Field(default_factory=_default_identity_kinds)
    blocked_values: list[str] = Field(
        default_factory=lambda: [
            "",
            "undefined",
            "null",
            "none",
            "nil",
            "0",
            "-1",
            "unknown",
            "anonymous",
        ]
    )
    hash_secret: str | None = Field(
        default=None,
        description="HMAC key for PII identities (TOUCHPOINT_HASH_SECRET, else generated).",
    )

    @model_validator(mode="after")
    def _unique_kinds(self) -> IdentityConfig:
        names = [kind.name for kind in self.kinds]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"identity kinds must be unique, repeated: {', '.join(duplicates)}")
        return self


FeatureType = Literal["count", "sum", "last", "last_distinct", "first_time", "last_time", "cart"]


class FeatureConfig(ConfigModel):
    """A computed feature the stream processor keeps on every profile.

    - `count`: events named `event` (in `window`, if set);
    - `sum`: sum of `property` over such events (in `window`, if set);
    - `last`: the latest value of `property` (by event timestamp);
    - `last_distinct`: the last `n` distinct values of `property`, newest first;
    - `first_time` / `last_time`: when the event first / last happened;
    - `cart`: cart contents from `Product Added` / `Product Removed` / `Order Completed`.
    `where` filters the events with a condition over the event (`properties.x`).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: FeatureType
    event: str | list[str] | None = None
    property: str | None = None
    window: str | None = None
    n: int = Field(default=10, ge=1, le=1000)
    where: Any = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        return None if value is None else check_duration(value)

    @model_validator(mode="after")
    def _needs(self) -> FeatureConfig:
        if self.type != "cart" and not self.event:
            raise ValueError(f"a {self.type} feature needs `event`")
        if self.type in ("sum", "last", "last_distinct") and not self.property:
            raise ValueError(f"a {self.type} feature needs `property`")
        if self.window and self.type not in ("count", "sum"):
            raise ValueError("`window` applies to count and sum features only")
        return self


class SegmentConfig(ConfigModel):
    """A real-time segment: profiles for which `condition` holds."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    condition: Any


class TouchpointConfig(ConfigModel):
    """A whole workspace."""

    workspace: str = "default"
    secret_key: str | None = Field(default=None, min_length=16)
    sources: list[SourceConfig] = Field(default_factory=list)
    tracking_plan: TrackingPlanConfig = Field(default_factory=TrackingPlanConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    features: list[FeatureConfig] = Field(default_factory=list)
    segments: list[SegmentConfig] = Field(default_factory=list)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    profiles: StoreConfig = Field(default_factory=StoreConfig)
    rejected: StoreConfig = Field(default_factory=StoreConfig)
    decisions: StoreConfig = Field(default_factory=StoreConfig)
    definitions_store: StoreConfig = Field(default_factory=StoreConfig)
    audit: StoreConfig = Field(default_factory=StoreConfig)
    timers: StoreConfig = Field(default_factory=StoreConfig)
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    placements: list[PlacementConfig] = Field(default_factory=list)
    content: list[ContentConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> TouchpointConfig:
        for label, names in (
            ("sources", [source.name for source in self.sources]),
            ("features", [feature.name for feature in self.features]),
            ("segments", [segment.name for segment in self.segments]),
        ):
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{label}: names must be unique, repeated: {', '.join(repeated)}")
        keys = [source.write_key for source in self.sources]
        if len(set(keys)) != len(keys):
            raise ValueError("sources: write keys must be unique")
        self._bursts_fit_a_batch()
        self.definitions()  # cross-references between placements and content
        self._check_privacy()
        return self

    def _check_privacy(self) -> None:
        """A privacy rule may not name an identity kind's source (the kind's `pii` decides
        there) and hashes `as` a declared kind or a built-in normalization."""
        kinds = {kind.name for kind in self.identity.kinds}
        sources: dict[tuple[str, ...], str] = {}
        for kind in self.identity.kinds:
            for path in identity_paths(kind.source):
                sources[path] = kind.name
        for index, rule in enumerate(self.privacy.paths):
            owner = sources.get(parse_path(rule.path))
            if owner is not None:
                raise ValueError(
                    f"privacy.paths[{index}]: {rule.path} is the source of identity kind "
                    f"{owner}; set the kind's `pii` instead"
                )
            if rule.as_kind is not None and rule.as_kind not in (*kinds, *BUILTIN_AS):
                raise ValueError(
                    f"privacy.paths[{index}].as: {rule.as_kind!r} is neither an identity kind "
                    f"nor one of {', '.join(BUILTIN_AS)}"
                )

    def _bursts_fit_a_batch(self) -> None:
        """A full batch must be able to pass each events limit, or it never would."""
        largest = self.collect.max_batch_events
        limits = [("collect.rate_limit", self.collect.rate_limit)] + [
            (f"sources[{index}].rate_limit", source.rate_limit)
            for index, source in enumerate(self.sources)
        ]
        for path, limit in limits:
            if limit is not None and limit.events_per_second and limit.event_burst < largest:
                raise ValueError(
                    f"{path}.event_burst ({limit.event_burst}) must be at least "
                    f"collect.max_batch_events ({largest}), or a full batch never passes"
                )

    def rate_limit(self, source: SourceConfig) -> RateLimitConfig:
        """The limits `source` is held to: its own, else the workspace's default."""
        return source.rate_limit or self.collect.rate_limit

    def definitions(self) -> Definitions:
        """The versioned part of this file: placements and content."""
        return Definitions(placements=self.placements, content=self.content)

    def recent_items_feature(self) -> str | None:
        """The feature with a person's recent item ids (see ModelsConfig.recent_feature)."""
        if self.models.recent_feature is not None:
            return self.models.recent_feature
        for feature in self.features:
            if feature.type == "last_distinct" and feature.property in ITEM_PROPERTIES:
                return feature.name
        return None

    def store_type(self, store: StoreConfig) -> Literal["sqlite", "postgres"]:
        """The backend a store runs on once `auto` is resolved."""
        if store.type == "auto":
            return "postgres" if self.postgres.url else "sqlite"
        return store.type

    def log_type(self) -> Literal["sqlite", "redis"]:
        """The event log backend once `auto` is resolved."""
        if self.log.type == "auto":
            return "redis" if self.redis.url else "sqlite"
        return self.log.type

    def source_named(self, name: str) -> SourceConfig | None:
        """The source called `name`, if any."""
        return next((source for source in self.sources if source.name == name), None)

    def source_by_key(self, write_key: str) -> SourceConfig | None:
        for source in self.sources:
            if same_key(write_key, source.write_key):
                return source
        return None


def parse_config(data: dict[str, Any] | None) -> TouchpointConfig:
    """Validate a configuration mapping; raise DefinitionError naming the first bad path."""
    try:
        config = TouchpointConfig.model_validate(data or {})
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(part for part in first["loc"] if not str(part).startswith("function-"))
        raise DefinitionError(format_location(location), first["msg"]) from None
    _compile_conditions(config)
    return config


def _compile_conditions(config: TouchpointConfig) -> None:
    """Compile every condition once so a bad one is refused at load, with its path."""
    from touchpoint.core.conditions import compile_condition

    for index, segment in enumerate(config.segments):
        compile_condition(segment.condition, path=f"segments[{index}].condition")
    for index, feature in enumerate(config.features):
        if feature.where is not None:
            compile_condition(feature.where, path=f"features[{index}].where")
    check_definitions(config.definitions())


def load_config_file(path: str | Path) -> TouchpointConfig:
    """Read and validate a `touchpoint.yaml`."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DefinitionError("<file>", f"not valid YAML: {error}") from None
    if data is not None and not isinstance(data, dict):
        raise DefinitionError("<root>", "the configuration must be a mapping")
    return parse_config(data)


def apply_environment(
    config: TouchpointConfig, environ: dict[str, str] | None = None
) -> TouchpointConfig:
    """Apply TOUCHPOINT_WRITE_KEY / TOUCHPOINT_SECRET_KEY / TOUCHPOINT_HASH_SECRET and
    TOUCHPOINT_POSTGRES_URL / TOUCHPOINT_REDIS_URL overrides."""
    env = os.environ if environ is None else environ
    data = config.model_dump(by_alias=True)
    if env.get("TOUCHPOINT_POSTGRES_URL"):
        data["postgres"]["url"] = env["TOUCHPOINT_POSTGRES_URL"]
    if env.get("TOUCHPOINT_REDIS_URL"):
        data["redis"]["url"] = env["TOUCHPOINT_REDIS_URL"]
    if env.get("TOUCHPOINT_SECRET_KEY"):
        data["secret_key"] = env["TOUCHPOINT_SECRET_KEY"]
    if env.get("TOUCHPOINT_HASH_SECRET"):
        data["identity"]["hash_secret"] = env["TOUCHPOINT_HASH_SECRET"]
    write_key = env.get("TOUCHPOINT_WRITE_KEY")
    if write_key:
        if data["sources"]:
            data["sources"][0]["write_key"] = write_key
        else:
            data["sources"] = [{"name": DEFAULT_SOURCE, "write_key": write_key}]
    return parse_config(data)
