"""The servers a workspace runs on: none (embedded), or PostgreSQL and/or Redis.

`Services.open` connects to what the configuration names, once per process, and
says clearly, naming the setting, when a URL is wrong or a server unreachable.
The store factories take these services: a store whose `type` is `auto` runs on
PostgreSQL when a PostgreSQL service is open, and the log on Redis when Redis is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from touchpoint.config.workspace import TouchpointConfig
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import ServiceUnavailableAtStart
from touchpoint.core.servers import (
    POSTGRES_SETTING,
    REDIS_SETTING,
    require_postgres_client,
    require_redis_client,
)

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres
    from touchpoint.core.redis import RedisService

STORES = ("profiles", "rejected", "decisions", "definitions_store", "audit", "timers")


@dataclass
class Services:
    """The open server connections of one process (None: not configured)."""

    postgres: Postgres | None = None
    redis: RedisService | None = None

    @classmethod
    def open(cls, config: TouchpointConfig) -> Services:
        """Connect to the configured servers; a store or log that names a server with no URL
        set, a malformed URL or an unreachable server raises `ServiceUnavailableAtStart`."""
        for name in STORES:
            store: StoreConfig = getattr(config, name)
            if store.type == "postgres" and not config.postgres.url:
                raise ServiceUnavailableAtStart(
                    POSTGRES_SETTING, f"{name}.type is postgres, but no URL is set"
                )
        if config.log.type == "redis" and not config.redis.url:
            raise ServiceUnavailableAtStart(REDIS_SETTING, "log.type is redis, but no URL is set")
        # The clients are imported only for a configured server: an embedded workspace
        # never loads psycopg or redis (core.servers).
        postgres = _open_postgres(config) if config.postgres.url else None
        try:
            redis = _open_redis(config) if config.redis.url else None
        except BaseException:
            if postgres is not None:
                postgres.close()
            raise
        return cls(postgres=postgres, redis=redis)

    def postgres_for(self, store: StoreConfig, name: str) -> Postgres | None:
        """The PostgreSQL service if `store` runs on it (explicitly or by `auto`), else None
        (SQLite)."""
        if store.type == "sqlite":
            return None
        if self.postgres is None:
            if store.type == "postgres":
                raise ServiceUnavailableAtStart(
                    POSTGRES_SETTING, f"{name}.type is postgres, but no URL is set"
                )
            return None
        return self.postgres

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()
        if self.postgres is not None:
            self.postgres.close()


def _open_postgres(config: TouchpointConfig) -> Postgres:
    require_postgres_client()
    from touchpoint.core.postgres import Postgres

    return Postgres(config.postgres)


def _open_redis(config: TouchpointConfig) -> RedisService:
    require_redis_client()
    from touchpoint.core.redis import RedisService

    return RedisService(config.redis)
