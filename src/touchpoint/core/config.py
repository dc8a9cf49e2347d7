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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from touchpoint.core.clock import parse_duration
from touchpoint.core.definitions import (
    ConsentConfig,
    ContentConfig,
    Definitions,
    PlacementConfig,
    check_definitions,
)
from touchpoint.core.errors import DefinitionError, format_location
from touchpoint.core.keys import same_key
from touchpoint.core.privacy import BUILTIN_AS, PrivacyConfig, parse_path

DEFAULT_DATA_DIR = "./touchpoint-data"
DEFAULT_SOURCE = "default"
PRIVACY_SOURCE_ROOTS = ("traits.", "properties.", "context.")
ITEM_PROPERTIES = ("product_id", "item_id", "sku")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


class RateLimitConfig(_Model):
    """How fast one source may send, as a rate and a burst of requests and of events (a
    cell-rate limit: `burst` may arrive at once, then `per_second` on average). Over either,
    `/v1/batch` and the single-event routes answer 429 with `Retry-After`. `null` turns a
    rate off. The requests default is Segment's documented figure for its HTTP API (1,000
    requests/s); the events default is half of what one embedded node acknowledges, so one
    public write key cannot take the whole node.
    """

    requests_per_second: float | None = Field(default=1000.0, gt=0)
    request_burst: int = Field(default=2000, ge=1)
    events_per_second: float | None = Field(default=10_000.0, gt=0)
    event_burst: int = Field(default=25_000, ge=1)


class IdentityVerificationConfig(_Model):
    """How a source proves who its visitors are (see docs/threat-model.md).

    `secret` signs user ids (`user_hash` = hex HMAC-SHA256(secret, user id), computed by the
    site's backend). It need not be written here: name an environment variable in
    `secret_env`, or leave both out and one is generated once and kept in
    `<data-dir>/workspace-keys.json` (printed by `touchpoint serve`). `events`: whether every
    event with a `userId` must carry `context.user_hash`; unset, it follows
    `allow_client_decisions`, because a source whose pages may decide must not let them link
    a device to anyone they name.
    """

    secret: str | None = Field(default=None, min_length=16)
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    events: bool | None = None


class SourceConfig(_Model):
    """A source of events (a website, an app, a server) and its public write key.

    With `allow_client_decisions`, its write key may also ask `POST /v1/decide`, for the
    device it names, or for a user id signed with the source's identity secret.

    `rate_limit`: this source's own limits (default: `collect.rate_limit`).
    """

    name: str
    write_key: str = Field(min_length=8)
    tracking_plan_mode: Literal["enforce", "flag", "off"] = "flag"
    allow_client_decisions: bool = False
    rate_limit: RateLimitConfig | None = None
    identity_verification: IdentityVerificationConfig = Field(
        default_factory=IdentityVerificationConfig
    )

    @property
    def verifies_events(self) -> bool:
        """Whether this source's events naming a user id must carry a valid `user_hash`."""
        events = self.identity_verification.events
        return self.allow_client_decisions if events is None else events

    @property
    def needs_identity_secret(self) -> bool:
        """Whether anything this source does checks a signature."""
        return self.allow_client_decisions or self.verifies_events


class PlannedEvent(_Model):
    """One event of the tracking plan: JSON Schema for its properties (or traits)."""

    description: str = ""
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON Schema of `properties` (track/page/screen) or `traits` (identify).",
    )


class TrackingPlanConfig(_Model):
    """Declared events. `allow_unplanned`: whether events not listed are violations."""

    allow_unplanned: bool = True
    events: dict[str, PlannedEvent] = Field(default_factory=dict)
    identify_traits: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of identify traits, if the plan declares them."
    )


class IdentityKind(_Model):
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


class IdentityConfig(_Model):
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


class FeatureConfig(_Model):
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
        return None if value is None else _check_duration(value)

    @model_validator(mode="after")
    def _needs(self) -> FeatureConfig:
        if self.type != "cart" and not self.event:
            raise ValueError(f"a {self.type} feature needs `event`")
        if self.type in ("sum", "last", "last_distinct") and not self.property:
            raise ValueError(f"a {self.type} feature needs `property`")
        if self.window and self.type not in ("count", "sum"):
            raise ValueError("`window` applies to count and sum features only")
        return self


class SegmentConfig(_Model):
    """A real-time segment: profiles for which `condition` holds."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    condition: Any


class LogConfig(_Model):
    """The event log backend.

    `type`: `sqlite` (a file, embedded), `redis` (Redis Streams, one stream per partition)
    or `auto` (Redis when `redis.url` / TOUCHPOINT_REDIS_URL is set, else SQLite).
    """

    type: Literal["auto", "sqlite", "redis"] = "auto"
    partitions: int = Field(default=8, ge=1, le=1024)
    path: str | None = Field(default=None, description="Defaults to <data_dir>/log.sqlite3.")
    synchronous: Literal["full", "normal"] = "full"


class StreamConfig(_Model):
    """The stream processor.

    `poll_interval`: how long an idle processor waits before looking at the log again when
    no append notification can reach it (a `touchpoint worker` in its own process); within
    `touchpoint serve` appends wake it at once. `segment_refresh`: how often segments whose
    conditions depend on time alone (`within`, windows) are swept. `lease_ttl`: how long a
    worker keeps its partitions after its last heartbeat; the partitions of a worker that died
    move to the others after at most this long.
    """

    poll_interval: str = "20ms"
    segment_refresh: str = "5m"
    lease_ttl: str = "10s"

    @field_validator("poll_interval", "segment_refresh", "lease_ttl")
    @classmethod
    def _durations(cls, value: str) -> str:
        return _check_duration(value)


class StoreConfig(_Model):
    """A state store backend (profiles, rejected events, decisions, definitions, audit).

    `type`: `sqlite` (a file under the data directory, or `path`), `postgres`, or `auto`
    (PostgreSQL when `postgres.url` / TOUCHPOINT_POSTGRES_URL is set, else SQLite).
    """

    type: Literal["auto", "sqlite", "postgres"] = "auto"
    path: str | None = None


_SCHEMA_NAME = r"^[a-z_][a-z0-9_]{0,62}$"


class PostgresConfig(_Model):
    """The PostgreSQL server of server mode. `url` is a libpq URL
    (`postgresql://user:password@host:5432/db`); TOUCHPOINT_POSTGRES_URL overrides it, which
    is the place for a password. Every table lives in `schema` (created if missing).
    `migrate_on_start`: apply pending migrations when a process opens the workspace; when
    false, a schema behind the code is refused with a message to run `touchpoint migrate`.
    """

    url: str | None = None
    schema_name: str = Field(default="touchpoint", alias="schema", pattern=_SCHEMA_NAME)
    pool_min: int = Field(default=1, ge=0, le=100)
    pool_max: int = Field(default=8, ge=1, le=200)
    connect_timeout: str = "5s"
    migrate_on_start: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("connect_timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        return _check_duration(value)

    @model_validator(mode="after")
    def _pool(self) -> PostgresConfig:
        if self.pool_min > self.pool_max:
            raise ValueError("pool_min must not exceed pool_max")
        return self


class RedisConfig(_Model):
    """The Redis server of server mode: the event log (when `log.type` is redis or auto) and a
    read-through cache of hot profiles. `url`: `redis://host:6379/0` (TOUCHPOINT_REDIS_URL
    overrides it). Every key starts with `prefix:`. `cache_ttl`: how long a cached profile
    lives at most ("0s" turns the cache off); every profile change invalidates it anyway.
    """

    url: str | None = None
    prefix: str = Field(default="touchpoint", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    cache_ttl: str = "1h"
    socket_timeout: str = "5s"

    @field_validator("cache_ttl", "socket_timeout")
    @classmethod
    def _durations(cls, value: str) -> str:
        return _check_duration(value)


class WarehouseConfig(_Model):
    """The analytics warehouse (Parquet files queried with DuckDB, see warehouse/).

    `path`: defaults to <data_dir>/warehouse. Applied events are copied from the log once
    `flush_rows` of them are pending or the oldest has waited `flush_interval`, checked
    every `sync_interval` by `serve` and `worker`; large files keep queries fast.
    """

    enabled: bool = True
    path: str | None = None
    flush_rows: int = Field(default=50_000, ge=1)
    flush_interval: str = "1m"
    sync_interval: str = "5s"

    @field_validator("flush_interval", "sync_interval")
    @classmethod
    def _durations(cls, value: str) -> str:
        return _check_duration(value)


MODEL_JOBS = (
    "rfm",
    "clusters",
    "lifecycle",
    "propensity",
    "churn",
    "lifetime",
    "recommendations",
)


class ScheduleConfig(_Model):
    """When `serve` and `worker` retrain: `every` (e.g. `1h`, `1d`)."""

    every: str

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        if parse_duration(value).total_seconds() < 60:
            raise ValueError("retraining more often than every minute is not supported")
        return value


class RecommenderConfig(_Model):
    """The workspace recommender `touchpoint train` fits: `algorithm` (default: the best of
    the MovieLens benchmark), `k` items precomputed for each profile active within
    `active_days`."""

    algorithm: str | None = None
    k: int = Field(default=10, ge=1, le=100)
    active_days: int = Field(default=30, ge=1)


class ModelsConfig(_Model):
    """What the models learn from and how they are trained.

    Events: which mean a purchase, a product view and an add to cart (Segment's e-commerce
    spec by default), and how much each kind of interaction with an item weighs for the
    recommender. `train`: the models `touchpoint train` fits (all by default);
    `schedule.every`: retrain in the background of `serve` / `worker`; `tolerance`: how much
    worse (absolute, in the model's validation metric) a new version may be and still
    replace the serving one; `horizon_days`: the window propensity, churn and lifetime value
    predict; `recent_feature`: the profile feature (a `last_distinct` of item ids) that
    holds the session's recent items for recommendations (default: the first
    `last_distinct` feature of `product_id`, `item_id` or `sku`).
    """

    purchase_event: str = "Order Completed"
    view_event: str = "Product Viewed"
    cart_event: str = "Product Added"
    interaction_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "Product Viewed": 1.0,
            "Product Clicked": 1.0,
            "Product Added": 3.0,
            "Order Completed": 5.0,
        }
    )
    train: list[str] = Field(default_factory=lambda: list(MODEL_JOBS))
    schedule: ScheduleConfig | None = None
    tolerance: float = Field(default=0.01, ge=0)
    horizon_days: int = Field(default=30, ge=1, le=730)
    seed: int = 0
    recent_feature: str | None = None
    recommender: RecommenderConfig = Field(default_factory=RecommenderConfig)

    @field_validator("train")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in MODEL_JOBS]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r} (known: {', '.join(MODEL_JOBS)})")
        return value


MAX_EVENT_DEPTH = 128
"""The deepest nesting `collect.max_depth` may allow: far enough below orjson's 254 levels
(and SQLite's JSON limit of 1,000) that an accepted event is always readable and exportable,
with the levels a response wraps around it."""


class CollectConfig(_Model):
    """Collection limits and dedup.

    Per request: `max_event_bytes` (32 KB) and `max_batch_bytes` (500 KB, after gzip is
    undone) and `max_batch_events` (2,500), Segment's limits. Per source: `rate_limit`, the
    default of every source without its own. The rejected store keeps a refused event for
    `rejected_retention` after it was last seen, at most `rejected_per_source` of them per
    source (beyond that new ones are counted, not stored); identical refusals share a row.
    `max_depth`: how deeply objects and arrays may nest in one event (the event itself is
    level 1); `max_object_keys` / `max_array_items`: how wide one object or array may be.
    An event over a limit is rejected naming the path (see `collect.shape`).
    """

    dedup_window: str = "24h"
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_events: int = Field(default=2500, ge=1)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    rejected_retention: str = "7d"
    rejected_per_source: int = Field(default=50_000, ge=1)
    max_depth: int = Field(default=32, ge=2, le=MAX_EVENT_DEPTH)
    max_object_keys: int = Field(default=1000, ge=1)
    max_array_items: int = Field(default=1000, ge=1)

    @field_validator("dedup_window", "rejected_retention")
    @classmethod
    def _window(cls, value: str) -> str:
        return _check_duration(value)


class TouchpointConfig(_Model):
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
