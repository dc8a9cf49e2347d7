"""Versioned schema migrations for the embedded (SQLite) stores, as `core.postgres` has them
for PostgreSQL.

Each store declares an ordered list of `SqliteMigration`s under its own name (`event_log`,
`partition_leases`, `profile_store`, …) and calls `migrate` when it opens its file. What
was applied is recorded in the file itself, in a `schema_migrations` table keyed by store
name, so stores sharing one file (the log and its leases) each keep their own history.

Promises:

- all pending migrations of a store, and their records, are applied in one transaction
  (`BEGIN IMMEDIATE`): a failure leaves the file as it was;
- concurrent openers are safe: the second waits for the first's write lock (the
  connection's busy timeout), then finds nothing left to do;
- idempotent: opening again applies nothing;
- a file whose store is at a version this code does not know (written by a newer
  Touchpoint) is refused with `SchemaTooNew`, before anything is written;
- a file written before migrations existed (its tables, no `schema_migrations`) is
  adopted: version 1 of every store is its original DDL with `IF NOT EXISTS`, and a later
  column is added by `add_column`, which skips a column the file already has.

Adding a column is one line in the store's list:
`add_column("decision_log", 2, "decisions", "features", "TEXT")`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.migration_order import in_version_order

logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "schema_migrations"
_CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (store TEXT NOT NULL, "
    "version INTEGER NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (store, version))"
)

Step = Callable[[sqlite3.Connection], None]


class SchemaTooNew(RuntimeError):
    """A store's file was migrated by a newer version of Touchpoint than this one: opening
    it could misread or damage what the newer schema holds."""

    def __init__(self, path: str, store: str, found: int, known: int) -> None:
        super().__init__(
            f"{path}: the {store} schema is at version {found}, but this version of "
            f"Touchpoint knows versions up to {known}; upgrade Touchpoint to open it "
            "(or restore a copy of the file made by this version)"
        )
        self.path = path
        self.store = store
        self.found = found
        self.known = known


@dataclass(frozen=True, slots=True)
class SqliteMigration:
    """One step of a store's schema: `store` (its name), its `version` (1, 2, … in order),
    the SQL that takes the schema there (several statements allowed, no transaction
    control) and, optionally, a `step` run after the SQL on the same transaction, for
    what SQL alone cannot say idempotently (adding a column the file may already have)."""

    store: str
    version: int
    sql: str = ""
    step: Step | None = None


def add_column(
    store: str, version: int, table: str, column: str, declaration: str, *, then: str = ""
) -> SqliteMigration:
    """The migration adding `column` (`declaration`: its type and constraints, as in
    `ALTER TABLE … ADD COLUMN`) to `table`, unless the table has it already (a file written
    before migrations were recorded); `then` is SQL run afterwards (an index, a backfill)."""

    def step(connection: sqlite3.Connection) -> None:
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        run_script(connection, then)

    return SqliteMigration(store=store, version=version, step=step)


def add_columns(
    store: str, version: int, table: str, columns: Sequence[tuple[str, str]], *, then: str = ""
) -> SqliteMigration:
    """`add_column` for several columns of one table in one migration."""
    steps = [add_column(store, version, table, name, declaration) for name, declaration in columns]

    def step(connection: sqlite3.Connection) -> None:
        for migration in steps:
            assert migration.step is not None
            migration.step(connection)
        run_script(connection, then)

    return SqliteMigration(store=store, version=version, step=step)


def run_script(connection: sqlite3.Connection, script: str) -> None:
    """Run every statement of `script` on `connection` inside its current transaction
    (`executescript` would commit it first). Statements are split where SQLite says one is
    complete, so a `;` inside a string literal or a trigger body is no boundary."""
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \t\r\n;"):
                connection.execute(statement)
            statement = ""
    if statement.strip(" \t\r\n;"):
        connection.execute(statement)


def migrate(
    connection: sqlite3.Connection,
    migrations: Sequence[SqliteMigration],
    *,
    path: str | Path = "",
) -> list[SqliteMigration]:
    """Bring the schema of the store(s) in `migrations` up to date on `connection` (in
    autocommit mode, outside any transaction), in one transaction; the migrations applied
    now. `path` names the file in errors. Raises `SchemaTooNew` if the file is ahead of
    `migrations`, and `ValueError` if a store's versions are not 1, 2, … n."""
    ordered = ordered_migrations(migrations)
    known: dict[str, int] = {}
    for migration in ordered:
        known[migration.store] = migration.version
    if _recorded(connection, known, path) == len(ordered):
        return []  # up to date: no write lock taken
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(_CREATE_TABLE)
        done = _done(connection, known, path)
        applied: list[SqliteMigration] = []
        now = isoformat(utcnow())
        for migration in ordered:
            if (migration.store, migration.version) in done:
                continue
            run_script(connection, migration.sql)
            if migration.step is not None:
                migration.step(connection)
            connection.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (store, version, applied_at) VALUES (?, ?, ?)",
                (migration.store, migration.version, now),
            )
            applied.append(migration)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    for migration in applied:
        logger.debug(
            "applied migration %s %d to %s", migration.store, migration.version, path or "?"
        )
    return applied


def _recorded(connection: sqlite3.Connection, known: dict[str, int], path: str | Path) -> int:
    """How many of the known migrations the file records (0 before its first migration),
    read without a write lock; `SchemaTooNew` if the file is ahead of the code."""
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    return 0 if exists is None else len(_done(connection, known, path))


def _done(
    connection: sqlite3.Connection, known: dict[str, int], path: str | Path
) -> set[tuple[str, int]]:
    """The (store, version) pairs of the known stores the file records; `SchemaTooNew` if a
    store is at a version the code does not know."""
    done: set[tuple[str, int]] = set()
    for store, latest in known.items():
        rows = connection.execute(
            f"SELECT version FROM {MIGRATIONS_TABLE} WHERE store = ?", (store,)
        ).fetchall()
        versions = {int(row[0]) for row in rows}
        if versions and max(versions) > latest:
            raise SchemaTooNew(str(path), store, max(versions), latest)
        done.update((store, version) for version in versions)
    return done


def applied_versions(connection: sqlite3.Connection, store: str) -> list[int]:
    """The versions of `store` recorded in the file, in order (none before the first open)."""
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    if exists is None:
        return []
    rows = connection.execute(
        f"SELECT version FROM {MIGRATIONS_TABLE} WHERE store = ? ORDER BY version", (store,)
    ).fetchall()
    return [int(row[0]) for row in rows]


def ordered_migrations(migrations: Sequence[SqliteMigration]) -> list[SqliteMigration]:
    """Migrations by store (in first-seen order) then version; a store's versions must be
    1, 2, … n with no gap or repeat."""
    return in_version_order(migrations, lambda migration: migration.store)
