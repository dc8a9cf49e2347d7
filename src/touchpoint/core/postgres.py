"""What every PostgreSQL store shares: one connection pool per process, transactions whose
connection failures say "retry later", and versioned migrations.

Each store keeps its own tables and SQL; it declares its schema as a list of
`Migration`s and calls `Postgres.ensure` when it opens. Migrations run under an
advisory lock, so several API processes and workers starting at once apply each
one exactly once. Every table lives in the configured schema (`search_path`), so
one database can hold several workspaces (and the tests a schema each).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from touchpoint.core.clock import parse_duration
from touchpoint.core.config_stores import PostgresConfig
from touchpoint.core.errors import ServiceUnavailableAtStart, Unavailable
from touchpoint.core.leftovers import Leftover
from touchpoint.core.migration_order import in_version_order
from touchpoint.core.servers import POSTGRES_SETTING, first_line, redact_url

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "CONNECTION_ERRORS",
    "POSTGRES_SETTING",
    "Migration",
    "Postgres",
    "check_identifier",
    "first_line",
    "postgres_text",
    "redact_url",
]

_MIGRATIONS_TABLE = "touchpoint_migrations"
# The failures of the server or the connection, and the transactions the server rolled back
# (deadlock, serialization failure: OperationalError subclasses), as opposed to a bad
# statement: the caller may retry the whole transaction.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
)


def postgres_text(value: str) -> str:
    """`value` as PostgreSQL text can hold it: text cannot hold NUL, so NUL becomes U+FFFD.

    Applied alike to what is stored and to what is looked up, so an identity or message id
    with a NUL in it is found again (and can never fail a request or stall the stream
    processor); two values differing only there are taken as one."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a store's schema: `component` (the store), its `version` (1, 2, …, in
    order) and the SQL that takes the schema there (several statements allowed)."""

    component: str
    version: int
    sql: str


class Postgres:
    """A connection pool on one database and schema, opened once per process and shared by
    every PostgreSQL store of the workspace."""

    def __init__(self, config: PostgresConfig, *, setting: str = POSTGRES_SETTING) -> None:
        url = config.url
        if not url:
            raise ServiceUnavailableAtStart(setting, "no URL is set")
        scheme = url.split(":", 1)[0]
        if scheme not in ("postgres", "postgresql"):
            raise ServiceUnavailableAtStart(
                setting, f"{redact_url(url)} is not a postgresql:// URL"
            )
        self.schema = config.schema_name
        self.migrate_on_start = config.migrate_on_start
        self.setting = setting
        self.display_url = redact_url(url)
        timeout = max(1, round(parse_duration(config.connect_timeout).total_seconds()))
        try:
            probe = psycopg.connect(url, connect_timeout=timeout)
        except (psycopg.Error, ValueError) as error:
            raise ServiceUnavailableAtStart(
                setting, f"cannot connect to {self.display_url}: {first_line(error)}"
            ) from None
        probe.close()
        self._pool_timeout = float(timeout)
        self.applied: list[Migration] = []  # by this process, in order (`touchpoint migrate`)
        self.pool = ConnectionPool(
            url,
            min_size=config.pool_min,
            max_size=config.pool_max,
            kwargs={
                "autocommit": True,
                "connect_timeout": timeout,
                "options": f"-c search_path={self.schema}",
                "application_name": f"touchpoint:{self.schema}",
            },
            timeout=self._pool_timeout,
            reconnect_timeout=3600.0,
            name=f"touchpoint-{self.schema}",
            open=False,
        )
        self.pool.open(wait=False)

    # -- using connections --------------------------------------------------------------------

    @contextmanager
    def connection(self, store: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A pooled connection in autocommit mode (each statement its own transaction), for
        reads. A lost server or connection surfaces as `Unavailable` naming `store`."""
        try:
            with self.pool.connection(timeout=self._pool_timeout) as connection:
                yield connection
        except CONNECTION_ERRORS as error:
            if isinstance(error, psycopg.OperationalError) and not isinstance(
                error, psycopg.errors.TransactionRollback
            ):
                # After a server restart every idle pooled connection is dead too: have the
                # pool test them now rather than hand each one out to fail in turn.
                self._check_idle()
            raise Unavailable(f"the {store} cannot reach PostgreSQL: {first_line(error)}") from (
                error
            )

    @contextmanager
    def transaction(self, store: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A pooled connection inside one transaction: committed when the block ends, rolled
        back on any exception (so nothing is half-written). Connection failures surface as
        `Unavailable` naming `store`; the pool replaces a broken connection."""
        with self.connection(store) as connection, connection.transaction():
            yield connection

    def vacuum(self, store: str, tables: Sequence[str], *, name: str) -> list[Leftover]:
        """After an erasure: plain `VACUUM` of `tables` (outside any transaction, on an
        autocommit connection), so the erased rows' dead tuples and index entries are
        removed now instead of whenever autovacuum comes by; what may still hold their
        bytes. Not `VACUUM FULL`: that rewrites the whole table under an exclusive lock,
        stopping every write for as long, for one person.

        PostgreSQL does not zero freed space: the bytes stay in the table's (and its
        indexes' and TOAST's) pages until new rows are written over them, and in the
        server's write-ahead log until its segments are recycled; `name` (`profile_store`)
        labels the leftovers."""
        listed = sql.SQL(", ").join(sql.Identifier(table) for table in tables)
        leftovers = [
            Leftover(
                store=name,
                where=f"PostgreSQL pages of {', '.join(tables)} (and their indexes and TOAST)",
                until="new rows are written over the space VACUUM freed, or the table is "
                "rewritten (VACUUM FULL, CLUSTER, pg_repack); rows a transaction open during "
                "the erasure could still see are freed by the next (auto)vacuum after it ends",
            ),
            Leftover(
                store=name,
                where="PostgreSQL write-ahead log (pg_wal), WAL archives, replicas' WAL, "
                "base backups",
                until="the WAL segments are recycled after later checkpoints (max_wal_size, "
                "wal_keep_size), and archives and backups expire under their own retention",
            ),
        ]
        try:
            with self.connection(store) as connection:
                connection.execute(sql.SQL("VACUUM (ANALYZE FALSE) {}").format(listed))
        except (Unavailable, psycopg.Error) as error:
            logger.warning("the %s could not vacuum after an erasure: %s", store, error)
            leftovers.insert(
                0,
                Leftover(
                    store=name,
                    where=f"PostgreSQL dead tuples of {', '.join(tables)} (VACUUM failed: "
                    f"{first_line(error)})",
                    until="the next (auto)vacuum of these tables",
                ),
            )
        return leftovers

    def run(
        self,
        store: str,
        work: Callable[[psycopg.Connection[tuple[object, ...]]], T],
        *,
        attempts: int = 2,
    ) -> T:
        """`work(connection)` in one transaction, retried on a fresh connection when the
        first one failed (a server restart, a dropped connection): safe because a failed
        transaction left nothing behind. Other errors propagate at once."""
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction(store) as connection:
                    return work(connection)
            except Unavailable:
                if attempt == attempts:
                    raise
                logger.warning("the %s lost its PostgreSQL connection; retrying", store)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_idle(self) -> None:
        try:
            self.pool.check()
        except Exception:  # the server may still be down: the pool reconnects by itself
            logger.debug("checking the pool's idle connections failed", exc_info=True)

    # -- migrations ---------------------------------------------------------------------------

    def ensure(self, migrations: Sequence[Migration]) -> list[Migration]:
        """Bring the schema up to date with `migrations` (when `migrate_on_start`), or check it
        is (otherwise: a schema behind the code is refused, naming what to run). Returns the
        migrations applied now."""
        if self.migrate_on_start:
            return self.migrate(migrations)
        pending = self.pending(migrations)
        if pending:
            names = ", ".join(f"{m.component} {m.version}" for m in pending)
            raise ServiceUnavailableAtStart(
                "postgres.migrate_on_start",
                f"schema {self.schema} is behind the code (pending: {names}); "
                "run `touchpoint migrate`",
            )
        return []

    def pending(self, migrations: Sequence[Migration]) -> list[Migration]:
        """The migrations not applied yet, in order."""
        with self.connection("migrations") as connection:
            exists = connection.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = %s",
                (self.schema, _MIGRATIONS_TABLE),
            ).fetchone()
            applied: set[tuple[str, int]] = set()
            if exists:
                rows = connection.execute(
                    sql.SQL("SELECT component, version FROM {}.{}").format(
                        sql.Identifier(self.schema), sql.Identifier(_MIGRATIONS_TABLE)
                    )
                ).fetchall()
                applied = {(str(row[0]), int(str(row[1]))) for row in rows}
        return [m for m in _ordered(migrations) if (m.component, m.version) not in applied]

    def migrate(self, migrations: Sequence[Migration]) -> list[Migration]:
        """Apply what is pending, each migration in its own transaction with its record,
        under an advisory lock held for the whole run (concurrent starters wait, then find
        nothing left to do)."""
        schema = sql.Identifier(self.schema)
        table = sql.Identifier(self.schema, _MIGRATIONS_TABLE)
        applied: list[Migration] = []
        with self.connection("migrations") as connection:
            lock_key = f"touchpoint.migrations.{self.schema}"
            connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_key,))
            try:
                connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                connection.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (component text NOT NULL, "
                        "version integer NOT NULL, applied_at timestamptz NOT NULL "
                        "DEFAULT now(), PRIMARY KEY (component, version))"
                    ).format(table)
                )
                rows = connection.execute(
                    sql.SQL("SELECT component, version FROM {}").format(table)
                ).fetchall()
                done = {(str(row[0]), int(str(row[1]))) for row in rows}
                for migration in _ordered(migrations):
                    if (migration.component, migration.version) in done:
                        continue
                    with connection.transaction():
                        connection.execute(migration.sql.encode("utf-8"))
                        connection.execute(
                            sql.SQL("INSERT INTO {} (component, version) VALUES (%s, %s)").format(
                                table
                            ),
                            (migration.component, migration.version),
                        )
                    applied.append(migration)
                    self.applied.append(migration)
                    logger.info(
                        "applied migration %s %d to schema %s",
                        migration.component,
                        migration.version,
                        self.schema,
                    )
            finally:
                connection.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_key,))
        return applied

    def close(self) -> None:
        self.pool.close()


def _ordered(migrations: Sequence[Migration]) -> list[Migration]:
    """Migrations by component then version; a component's versions must be 1, 2, …"""
    return in_version_order(migrations, lambda migration: migration.component)


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(name: str) -> str:
    """A schema or table name safe to interpolate (lower-case letters, digits, underscore)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a valid identifier")
    return name
