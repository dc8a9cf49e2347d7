"""The shared SQLite helpers: a store's own failures say "retry later", nothing half-written."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import drain
from touchpoint.core.errors import Unavailable
from touchpoint.core.sqlite import (
    checkpoint_truncate,
    open_connection,
    write_transaction,
)
from touchpoint.core.sqlite_migrations import SqliteMigration
from touchpoint.runtime import Workspace

SCHEMA = [
    SqliteMigration(
        "items", 1, "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
    )
]


def test_a_failing_block_rolls_back(tmp_path: Path) -> None:
    connection = open_connection(tmp_path / "s.sqlite3", synchronous="full", migrations=SCHEMA)
    lock = threading.Lock()
    with pytest.raises(ValueError), write_transaction(connection, lock, store="test store"):
        connection.execute("INSERT INTO items (name) VALUES ('a')")
        raise ValueError("the caller's own error passes through")
    assert connection.execute("SELECT COUNT(*) FROM items").fetchone() == (0,)
    with write_transaction(connection, lock, store="test store"):
        connection.execute("INSERT INTO items (name) VALUES ('b')")
    assert connection.execute("SELECT name FROM items").fetchall() == [("b",)]


def test_a_locked_file_is_unavailable_naming_the_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    holder = open_connection(path, synchronous="normal", migrations=SCHEMA)
    holder.execute("BEGIN IMMEDIATE")
    waiting = open_connection(path, synchronous="normal", timeout=0.05)
    starting = write_transaction(waiting, threading.Lock(), store="test store")
    with pytest.raises(Unavailable, match="the test store cannot start a write"), starting:
        pass  # pragma: no cover - never entered
    holder.execute("ROLLBACK")
    assert waiting.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_bad_schema_closes_the_connection(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        open_connection(
            tmp_path / "s.sqlite3",
            synchronous="full",
            migrations=[SqliteMigration("bad", 1, "CREATE TABLE (")],
        )


def test_deleted_rows_are_zeroed_whatever_the_build_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = sqlite3.connect

    def connect_as_upstream_builds(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)  # the amalgamation's default: not zeroed
        connection.execute("PRAGMA secure_delete = OFF")
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect_as_upstream_builds)
    path = tmp_path / "s.sqlite3"
    connection = open_connection(path, synchronous="full", migrations=SCHEMA)
    assert connection.execute("PRAGMA secure_delete").fetchone() == (1,)
    connection.execute("INSERT INTO items (name) VALUES ('keep-me'), ('zq-erase-me-77')")
    connection.execute("DELETE FROM items WHERE name = 'zq-erase-me-77'")
    assert checkpoint_truncate(path, store="test store") == []
    assert Path(f"{path}-wal").stat().st_size == 0
    data = path.read_bytes()
    assert b"keep-me" in data and b"zq-erase-me-77" not in data


def test_a_reader_holding_a_snapshot_stops_the_truncation_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    writer = open_connection(path, synchronous="full", migrations=SCHEMA)
    writer.execute("INSERT INTO items (name) VALUES ('a')")
    reader = open_connection(path, synchronous="full")
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM items").fetchone()  # its snapshot is in the WAL
    writer.execute("INSERT INTO items (name) VALUES ('b')")
    pauses: list[float] = []
    [leftover] = checkpoint_truncate(
        path, store="test store", attempts=3, pause=0.01, timeout=0.01, sleep=pauses.append
    )
    assert pauses == [0.01, 0.01, 0.01]
    assert leftover.store == "test store"
    assert leftover.where.startswith("s.sqlite3-wal")
    reader.execute("COMMIT")
    assert checkpoint_truncate(path, store="test store") == []


def test_the_busy_stores_keep_their_write_ahead_logs_near_8_mib(workspace: Workspace) -> None:
    """The event log's and the profile store's WALs are checkpointed every 8 MiB and shrink
    back to 8 MiB: on a full disk, what must be copied back to resume stays that small."""
    source = workspace.settings.config.sources[0]
    blob = "x" * 1000
    for batch in range(30):
        events = [
            {"type": "identify", "userId": f"u{batch}-{n}", "traits": {"blob": blob}}
            for n in range(500)
        ]
        workspace.collector.commit(workspace.collector.prepare(source, events))
        drain(workspace)
    data_dir = workspace.settings.data_dir
    mib = 1024 * 1024
    assert (data_dir / "log.sqlite3").stat().st_size > 24 * mib, "too little to show a bound"
    for name in ("log.sqlite3-wal", "profiles.sqlite3-wal"):
        size = (data_dir / name).stat().st_size
        assert size <= 10 * mib, f"{name}: {size:,} bytes"
