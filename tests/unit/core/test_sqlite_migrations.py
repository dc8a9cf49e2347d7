"""Versioned migrations of the embedded stores: recorded per store in the file, applied in
one transaction, idempotent, safe for concurrent openers, refusing a file newer than the
code, and adopting a file written before migrations were recorded without losing data."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import SECRET_KEY, WRITE_KEY, basic, bearer, drain
from touchpoint.config.settings import Settings
from touchpoint.core.clock import Clock
from touchpoint.core.sqlite import open_connection
from touchpoint.core.sqlite_migrations import (
    MIGRATIONS_TABLE,
    SchemaTooNew,
    SqliteMigration,
    add_column,
    applied_versions,
    migrate,
)
from touchpoint.profiles.model import Identity
from touchpoint.runtime import Workspace

ITEMS = [SqliteMigration("items", 1, "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY)")]


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10.0)


def test_migrations_are_applied_once_and_recorded_per_store(tmp_path: Path) -> None:
    connection = connect(tmp_path / "s.sqlite3")
    assert [m.version for m in migrate(connection, ITEMS)] == [1]
    assert migrate(connection, ITEMS) == []
    assert applied_versions(connection, "items") == [1]
    assert applied_versions(connection, "other") == []


def test_adding_a_column_is_one_line_and_keeps_the_rows(tmp_path: Path) -> None:
    connection = connect(tmp_path / "s.sqlite3")
    migrate(connection, ITEMS)
    connection.execute("INSERT INTO items (id) VALUES (7)")
    later = [*ITEMS, add_column("items", 2, "items", "note", "TEXT NOT NULL DEFAULT 'x'")]
    assert [m.version for m in migrate(connection, later)] == [2]
    assert connection.execute("SELECT id, note FROM items").fetchall() == [(7, "x")]
    assert applied_versions(connection, "items") == [1, 2]


def test_add_column_skips_a_column_the_file_already_has(tmp_path: Path) -> None:
    connection = connect(tmp_path / "s.sqlite3")
    connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT)")
    connection.execute("INSERT INTO items VALUES (1, 'kept')")
    migrate(connection, [*ITEMS, add_column("items", 2, "items", "note", "TEXT")])
    assert connection.execute("SELECT note FROM items").fetchall() == [("kept",)]


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    connection = connect(tmp_path / "s.sqlite3")
    broken = [*ITEMS, SqliteMigration("items", 2, "INSERT INTO items VALUES (1); NOT SQL")]
    with pytest.raises(sqlite3.OperationalError):
        migrate(connection, broken)
    assert not connection.in_transaction
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert ("items",) not in tables  # version 1 rolled back with version 2
    assert applied_versions(connection, "items") == []


def test_a_file_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    newer = [*ITEMS, add_column("items", 2, "items", "note", "TEXT")]
    migrate(connect(path), newer)
    connection = connect(path)
    with pytest.raises(SchemaTooNew, match=r"items schema is at version 2.*up to 1.*upgrade"):
        migrate(connection, ITEMS, path=path)
    with pytest.raises(SchemaTooNew):  # the same through a store's opener, which closes
        open_connection(path, synchronous="full", migrations=ITEMS)
    assert applied_versions(connection, "items") == [1, 2]


def test_versions_must_be_numbered_from_one_without_gaps(tmp_path: Path) -> None:
    gap = [*ITEMS, SqliteMigration("items", 3, "SELECT 1")]
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        migrate(connect(tmp_path / "s.sqlite3"), gap)


def test_statements_split_where_sqlite_says_they_end(tmp_path: Path) -> None:
    connection = connect(tmp_path / "s.sqlite3")
    script = """
    CREATE TABLE notes (text TEXT);
    INSERT INTO notes VALUES ('a; b');
    CREATE TRIGGER upper AFTER INSERT ON notes BEGIN
        UPDATE notes SET text = upper(text) WHERE rowid = new.rowid;
    END;
    INSERT INTO notes VALUES ('c')
    """
    migrate(connection, [SqliteMigration("notes", 1, script)])
    assert connection.execute("SELECT text FROM notes ORDER BY rowid").fetchall() == [
        ("a; b",),
        ("C",),
    ]


def test_concurrent_openers_apply_each_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"

    def slow_step(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO applied VALUES (1)")
        time.sleep(0.05)  # widen the window two openers could both apply in

    migrations = [
        SqliteMigration("counted", 1, "CREATE TABLE IF NOT EXISTS applied (n INTEGER)"),
        SqliteMigration("counted", 2, step=slow_step),
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        try:
            start.wait()
            open_connection(path, synchronous="normal", migrations=migrations).close()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    connection = connect(path)
    assert connection.execute("SELECT COUNT(*) FROM applied").fetchone() == (1,)
    assert applied_versions(connection, "counted") == [1, 2]


def _table_counts(data_dir: Path) -> dict[str, int]:
    """Rows per table of every SQLite file under `data_dir`, but the migrations table."""
    counts: dict[str, int] = {}
    for path in sorted(data_dir.rglob("*.sqlite3")):
        connection = connect(path)
        tables = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        for (table,) in tables:
            if table != MIGRATIONS_TABLE:
                (count,) = connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
                counts[f"{path.name}:{table}"] = count
        connection.close()
    return counts


def _use(workspace: Workspace, settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from touchpoint.api.app import create_app

    with TestClient(create_app(settings, workspace=workspace)) as client:
        event = {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}
        batch = client.post("/v1/batch", json={"batch": [event, 1]}, headers=basic(WRITE_KEY))
        assert batch.status_code == 200
        drain(workspace)
        decide = {"user_id": "u1", "placements": ["home_hero"]}
        assert client.post("/v1/decide", json=decide, headers=bearer(SECRET_KEY)).is_success
    workspace.share_partitions(member="m1")  # leases, in the log's file
    workspace.processor.run_once()


def test_a_workspace_written_before_migrations_is_adopted_with_its_data(
    settings: Settings, clock: Clock
) -> None:
    """Every embedded store's file as today's code wrote it (its tables, no migrations
    table: version 1 of each store is its DDL as it was) opens with its rows intact and
    its versions recorded; the log and its leases, sharing one file, each get their own."""
    workspace = Workspace.open(settings, clock=clock)
    try:
        _use(workspace, settings)
    finally:
        workspace.close()
    files = sorted(settings.data_dir.rglob("*.sqlite3"))
    assert {path.name for path in files} >= {
        "log.sqlite3",
        "profiles.sqlite3",
        "decisions.sqlite3",
        "definitions.sqlite3",
        "audit.sqlite3",
        "rejected.sqlite3",
    }
    for path in files:  # back to a file of before migrations
        connection = connect(path)
        connection.execute(f"DROP TABLE {MIGRATIONS_TABLE}")
        connection.close()
    before = _table_counts(settings.data_dir)
    assert before["log.sqlite3:events"] == 1 and before["rejected.sqlite3:rejected"] == 1
    assert before["decisions.sqlite3:decisions"] == 1
    assert before["log.sqlite3:partition_leases"] > 0

    reopened = Workspace.open(settings, clock=clock)
    try:
        reopened.share_partitions(member="m2")
        document = reopened.profiles.get(reopened.profiles.find(Identity("user_id", "u1")) or "")
        assert document is not None and document.traits["plan"] == "pro"
    finally:
        reopened.close()
    after = _table_counts(settings.data_dir)
    assert {k: v for k, v in after.items() if "group_members" not in k} == {
        k: v for k, v in before.items() if "group_members" not in k
    }
    log = connect(settings.data_dir / "log.sqlite3")
    assert applied_versions(log, "log") == [1] and applied_versions(log, "leases") == [1]
    rejected = connect(settings.data_dir / "rejected.sqlite3")
    assert applied_versions(rejected, "rejected") == [1, 2]
