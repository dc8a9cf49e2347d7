"""The real servers tests run against: PostgreSQL and Redis, each test on storage of its own.

A PostgreSQL test gets a fresh schema (dropped afterwards); a Redis test gets a fresh
key prefix (its keys deleted afterwards). Where a server is unreachable, its tests
skip with a message saying what is missing, except in CI (`CI=true`), where that
is a failure: server backends must run there, not skip.

URLs: TOUCHPOINT_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) and
TOUCHPOINT_TEST_REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
import redis

from touchpoint.core.config_stores import PostgresConfig, RedisConfig
from touchpoint.core.postgres import Postgres
from touchpoint.core.redis import RedisService

POSTGRES_URL = os.environ.get(
    "TOUCHPOINT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TOUCHPOINT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@functools.cache
def _postgres_problem() -> str | None:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0]
    return None


@functools.cache
def _redis_problem() -> str | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        return str(error)
    finally:
        client.close()
    return None


def _missing(server: str, url: str, problem: str) -> None:
    message = (
        f"{server} is not reachable at {url} ({problem}); set TOUCHPOINT_TEST_{server.upper()}_URL"
    )
    if in_ci():
        pytest.fail(f"{message}: in CI the server backends must run", pytrace=False)
    pytest.skip(message)


def require_postgres() -> str:
    """The test PostgreSQL URL, or skip (fail in CI) naming what is missing."""
    problem = _postgres_problem()
    if problem is not None:
        _missing("postgres", POSTGRES_URL, problem)
    return POSTGRES_URL


def require_redis() -> str:
    """The test Redis URL, or skip (fail in CI) naming what is missing."""
    problem = _redis_problem()
    if problem is not None:
        _missing("redis", REDIS_URL, problem)
    return REDIS_URL


def fresh_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def postgres_config(schema: str, **overrides: object) -> PostgresConfig:
    return PostgresConfig.model_validate(
        {"url": require_postgres(), "schema": schema, "pool_max": 4, **overrides}
    )


def redis_config(prefix: str, **overrides: object) -> RedisConfig:
    return RedisConfig.model_validate({"url": require_redis(), "prefix": prefix, **overrides})


def drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A schema name of this test's own (dropped afterwards), PostgreSQL checked reachable."""
    require_postgres()
    schema = fresh_name("t")
    yield schema
    drop_schema(schema)


@pytest.fixture
def postgres(postgres_schema: str) -> Iterator[Postgres]:
    """A Postgres service on this test's own schema."""
    service = Postgres(postgres_config(postgres_schema))
    yield service
    service.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own (its keys deleted afterwards), Redis checked reachable."""
    require_redis()
    prefix = fresh_name("t")
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def redis_service(redis_prefix: str) -> Iterator[RedisService]:
    """A Redis service under this test's own key prefix."""
    service = RedisService(redis_config(redis_prefix))
    yield service
    service.close()
