"""Server mode's shared parts: choosing backends, connecting with clear errors, migrations."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from tests import servers
from tests.conftest import TEST_CONFIG, write_config
from touchpoint.cli.main import app
from touchpoint.config.services import Services
from touchpoint.config.settings import load_settings
from touchpoint.config.workspace import parse_config
from touchpoint.core.config_stores import PostgresConfig, RedisConfig, StoreConfig
from touchpoint.core.errors import DefinitionError, ServiceUnavailableAtStart, Unavailable
from touchpoint.core.postgres import Migration, Postgres, redact_url
from touchpoint.core.redis import RedisService

MIGRATIONS = [
    Migration("things", 1, "CREATE TABLE things (id integer PRIMARY KEY, name text)"),
    Migration(
        "things", 2, "ALTER TABLE things ADD COLUMN size integer; CREATE INDEX ON things (size)"
    ),
]


def test_environment_urls_choose_the_server_backends() -> None:
    settings = load_settings(
        environ={
            "TOUCHPOINT_POSTGRES_URL": "postgresql://u:secret@db/x",
            "TOUCHPOINT_REDIS_URL": "redis://cache:6379/1",
            "TOUCHPOINT_DATA_DIR": "/tmp/unused",
        }
    )
    config = settings.config
    assert config.postgres.url == "postgresql://u:secret@db/x"
    assert config.redis.url == "redis://cache:6379/1"
    assert config.store_type(config.profiles) == "postgres"
    assert config.log_type() == "redis"
    embedded = parse_config({})
    assert embedded.store_type(embedded.profiles) == "sqlite"
    assert embedded.log_type() == "sqlite"
    pinned = parse_config({"postgres": {"url": "postgresql://db/x"}, "audit": {"type": "sqlite"}})
    assert pinned.store_type(pinned.audit) == "sqlite"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"postgres": {"schema": "Bad-Name"}}, "postgres.schema"),
        ({"postgres": {"pool_min": 9, "pool_max": 2}}, "postgres"),
        ({"redis": {"cache_ttl": "soon"}}, "redis.cache_ttl"),
        ({"profiles": {"type": "mysql"}}, "profiles.type"),
    ],
)
def test_bad_server_settings_name_their_path(data: dict, path: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_config(data)
    assert caught.value.path == path


def test_urls_in_messages_never_carry_the_password() -> None:
    assert redact_url("postgresql://me:hunter2@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("postgresql://db/x") == "postgresql://db/x"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://postgres:hunter2@127.0.0.1:1/test", "cannot connect to"),
        ("mysql://127.0.0.1/test", "is not a postgresql:// URL"),
    ],
)
def test_an_unreachable_or_wrong_postgres_is_refused_naming_the_setting(
    url: str, reason: str
) -> None:
    with pytest.raises(ServiceUnavailableAtStart) as caught:
        Postgres(PostgresConfig(url=url, connect_timeout="1s"))
    assert caught.value.setting == "postgres.url (TOUCHPOINT_POSTGRES_URL)"
    assert reason in caught.value.reason
    assert "hunter2" not in caught.value.message


@pytest.mark.parametrize(
    ("url", "reason"),
    [("redis://127.0.0.1:1/0", "cannot connect to"), ("http://cache", "is not a redis:// URL")],
)
def test_an_unreachable_or_wrong_redis_is_refused_naming_the_setting(url: str, reason: str) -> None:
    with pytest.raises(ServiceUnavailableAtStart) as caught:
        RedisService(RedisConfig(url=url))
    assert caught.value.setting == "redis.url (TOUCHPOINT_REDIS_URL)"
    assert reason in caught.value.reason


def test_a_store_pinned_to_postgres_without_a_url_is_refused() -> None:
    with pytest.raises(ServiceUnavailableAtStart, match=r"profiles\.type is postgres"):
        Services.open(parse_config({"profiles": {"type": "postgres"}}))
    with pytest.raises(ServiceUnavailableAtStart, match=r"log\.type is redis"):
        Services.open(parse_config({"log": {"type": "redis"}}))
    assert Services().postgres_for(StoreConfig(), "audit") is None


@pytest.mark.parametrize(
    ("command", "server", "url"),
    [
        ("serve", "postgres", "postgresql://postgres:hunter2@127.0.0.1:1/x"),
        ("worker", "postgres", "postgresql://postgres:hunter2@127.0.0.1:1/x"),
        ("migrate", "postgres", "postgresql://postgres:hunter2@127.0.0.1:1/x"),
        ("serve", "redis", "redis://:hunter2@127.0.0.1:1/0"),
        ("worker", "redis", "redis://:hunter2@127.0.0.1:1/0"),
    ],
)
def test_the_cli_exits_with_the_setting_named_when_a_server_is_unreachable(
    tmp_path: Path, command: str, server: str, url: str
) -> None:
    data = {**TEST_CONFIG, server: {"url": url}}
    config = write_config(tmp_path, data)
    result = CliRunner().invoke(
        app, [command, "--config", str(config), "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 2, result.output
    assert f"{server}.url (TOUCHPOINT_{server.upper()}_URL)" in result.output
    assert "cannot connect" in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_migrations_apply_once_in_order_and_record_what_ran(postgres: Postgres) -> None:
    assert [m.version for m in postgres.migrate(MIGRATIONS)] == [1, 2]
    assert postgres.migrate(MIGRATIONS) == []
    assert postgres.pending(MIGRATIONS) == []
    with postgres.connection("test") as connection:
        connection.execute("INSERT INTO things (id, name, size) VALUES (1, 'a', 3)")
    later = [*MIGRATIONS, Migration("things", 3, "ALTER TABLE things ADD COLUMN colour text")]
    assert [m.version for m in postgres.pending(later)] == [3]
    assert [m.version for m in postgres.ensure(later)] == [3]


def test_concurrent_starters_apply_each_migration_exactly_once(postgres_schema: str) -> None:
    services = [Postgres(servers.postgres_config(postgres_schema)) for _ in range(4)]
    applied: list[int] = []
    barrier = threading.Barrier(len(services))

    def start(service: Postgres) -> None:
        barrier.wait()
        applied.extend(m.version for m in service.migrate(MIGRATIONS))

    threads = [threading.Thread(target=start, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for service in services:
        service.close()
    assert sorted(applied) == [1, 2]


def test_a_schema_behind_the_code_is_refused_without_migrate_on_start(postgres_schema: str) -> None:
    service = Postgres(servers.postgres_config(postgres_schema, migrate_on_start=False))
    try:
        with pytest.raises(ServiceUnavailableAtStart, match="run `touchpoint migrate`"):
            service.ensure(MIGRATIONS)
        service.migrate(MIGRATIONS)
        assert service.ensure(MIGRATIONS) == []
    finally:
        service.close()


def test_migration_versions_must_be_consecutive(postgres: Postgres) -> None:
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        postgres.migrate([Migration("gaps", 2, "SELECT 1")])


def test_a_failed_transaction_leaves_nothing_and_a_lost_connection_is_retried(
    postgres: Postgres,
) -> None:
    postgres.migrate(MIGRATIONS)
    with pytest.raises(ZeroDivisionError), postgres.transaction("test") as connection:
        connection.execute("INSERT INTO things (id) VALUES (1)")
        raise ZeroDivisionError
    attempts: list[int] = []

    def work(connection) -> int:
        attempts.append(1)
        connection.execute("INSERT INTO things (id) VALUES (2)")
        if len(attempts) == 1:  # the server drops this connection mid-transaction
            with postgres.pool.connection() as other:
                pid = connection.info.backend_pid
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            connection.execute("SELECT 1")
        return 2

    assert postgres.run("test", work) == 2
    assert len(attempts) == 2
    with postgres.connection("test") as connection:
        rows = connection.execute("SELECT id FROM things ORDER BY id").fetchall()
    assert rows == [(2,)]


def test_a_dropped_connection_in_a_plain_transaction_is_unavailable(postgres: Postgres) -> None:
    postgres.migrate(MIGRATIONS)
    with (
        pytest.raises(Unavailable, match="the test store cannot reach PostgreSQL"),
        postgres.transaction("test store") as connection,
    ):
        connection.execute("INSERT INTO things (id) VALUES (5)")
        with postgres.pool.connection() as other:
            other.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))
        connection.execute("SELECT 1")
    with postgres.connection("test") as connection:
        assert connection.execute("SELECT count(*) FROM things").fetchone() == (0,)


def test_redis_keys_live_under_the_prefix(redis_service: RedisService, redis_prefix: str) -> None:
    assert redis_service.key("log", 3) == f"{redis_prefix}:log:3"
    with (
        pytest.raises(Unavailable, match="the cache cannot reach Redis"),
        redis_service.errors("cache"),
    ):
        raise redis.exceptions.ConnectionError("Connection refused")
