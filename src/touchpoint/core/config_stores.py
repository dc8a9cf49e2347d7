"""Where a workspace keeps things and runs its background work: the event log, the stream
processor, each store, PostgreSQL and Redis, the warehouse and the models' schedule (a
section each of `touchpoint.yaml`; `config.workspace` assembles them)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from touchpoint.core.clock import parse_duration
from touchpoint.core.config_base import ConfigModel, check_duration


class LogConfig(ConfigModel):
    """The event log backend.

    `type`: `sqlite` (a file, embedded), `redis` (Redis Streams, one stream per partition)
    or `auto` (Redis when `redis.url` / TOUCHPOINT_REDIS_URL is set, else SQLite).
    """

    type: Literal["auto", "sqlite", "redis"] = "auto"
    partitions: int = Field(default=8, ge=1, le=1024)
    path: str | None = Field(default=None, description="Defaults to <data_dir>/log.sqlite3.")
    synchronous: Literal["full", "normal"] = "full"


class StreamConfig(ConfigModel):
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
        return check_duration(value)


class StoreConfig(ConfigModel):
    """A state store backend (profiles, rejected events, decisions, definitions, audit,
    timers).

    `type`: `sqlite` (a file under the data directory, or `path`), `postgres`, or `auto`
    (PostgreSQL when `postgres.url` / TOUCHPOINT_POSTGRES_URL is set, else SQLite).
    """

    type: Literal["auto", "sqlite", "postgres"] = "auto"
    path: str | None = None


_SCHEMA_NAME = r"^[a-z_][a-z0-9_]{0,62}$"


class PostgresConfig(ConfigModel):
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

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("connect_timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        return check_duration(value)

    @model_validator(mode="after")
    def _pool(self) -> PostgresConfig:
        if self.pool_min > self.pool_max:
            raise ValueError("pool_min must not exceed pool_max")
        return self


class RedisConfig(ConfigModel):
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
        return check_duration(value)


class WarehouseConfig(ConfigModel):
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
        return check_duration(value)


MODEL_JOBS = (
    "rfm",
    "clusters",
    "lifecycle",
    "propensity",
    "churn",
    "lifetime",
    "recommendations",
)


class ScheduleConfig(ConfigModel):
    """When `serve` and `worker` retrain: `every` (e.g. `1h`, `1d`)."""

    every: str

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        if parse_duration(value).total_seconds() < 60:
            raise ValueError("retraining more often than every minute is not supported")
        return value


class RecommenderConfig(ConfigModel):
    """The workspace recommender `touchpoint train` fits: `algorithm` (default: the best of
    the MovieLens benchmark), `k` items precomputed for each profile active within
    `active_days`."""

    algorithm: str | None = None
    k: int = Field(default=10, ge=1, le=100)
    active_days: int = Field(default=30, ge=1)


class ModelsConfig(ConfigModel):
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
