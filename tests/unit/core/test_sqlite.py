"""The shared SQLite helpers: a store's own failures say "retry later", nothing half-written."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from touchpoint.core.errors import Unavailable
from touchpoint.core.sqlite import open_connection, write_transaction

SCHEMA = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"


def test_a_failing_block_rolls_back(tmp_path: Path) -> None:
    connection = open_connection(tmp_path / "s.sqlite3", synchronous="full", schema=SCHEMA)
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
    holder = open_connection(path, synchronous="normal", schema=SCHEMA)
    holder.execute("BEGIN IMMEDIATE")
    waiting = open_connection(path, synchronous="normal", timeout=0.05)
    starting = write_transaction(waiting, threading.Lock(), store="test store")
    with pytest.raises(Unavailable, match="the test store cannot start a write"), starting:
        pass  # pragma: no cover - never entered
    holder.execute("ROLLBACK")
    assert waiting.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_bad_schema_closes_the_connection(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        open_connection(tmp_path / "s.sqlite3", synchronous="full", schema="CREATE TABLE (")
