"""Partition leases and group membership in a SQLite file (the log's): members are
processes on one machine. Times come from the injected clock (epoch seconds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from touchpoint.core.sqlite import open_connection, write_transaction
from touchpoint.core.sqlite_migrations import SqliteMigration
from touchpoint.log.leases.base import Leases

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS group_members (
    consumer_group TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (consumer_group, member)
);
CREATE TABLE IF NOT EXISTS partition_leases (
    consumer_group TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (consumer_group, partition)
);
"""
# The schema, version by version (see core.sqlite_migrations); recorded apart from the
# log's own, which shares the file.
MIGRATIONS = [SqliteMigration("leases", 1, _SQLITE_SCHEMA)]


class SqliteLeases(Leases):
    """Leases in a SQLite file (the log's): members are processes on one machine."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._connection = open_connection(path, synchronous="normal", migrations=MIGRATIONS)
        self._lock = threading.Lock()
        self._clock = clock

    def heartbeat(self, group: str, member: str, ttl: float) -> list[str]:
        now = self._clock()
        with write_transaction(self._connection, self._lock, store="partition leases") as db:
            db.execute(
                "INSERT INTO group_members VALUES (?, ?, ?) ON CONFLICT (consumer_group, member) "
                "DO UPDATE SET expires_at = excluded.expires_at",
                (group, member, now + ttl),
            )
            db.execute(
                "DELETE FROM group_members WHERE consumer_group = ? AND expires_at < ?",
                (group, now),
            )
            rows = db.execute(
                "SELECT member FROM group_members WHERE consumer_group = ? ORDER BY member",
                (group,),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def acquire(self, group: str, partition: int, member: str, ttl: float) -> bool:
        now = self._clock()
        with write_transaction(self._connection, self._lock, store="partition leases") as db:
            cursor = db.execute(
                "INSERT INTO partition_leases VALUES (?, ?, ?, ?) "
                "ON CONFLICT (consumer_group, partition) DO UPDATE "
                "SET member = excluded.member, expires_at = excluded.expires_at "
                "WHERE partition_leases.member = excluded.member "
                "OR partition_leases.expires_at < ?",
                (group, partition, member, now + ttl, now),
            )
            return cursor.rowcount == 1

    def release(self, group: str, partition: int, member: str) -> None:
        with write_transaction(self._connection, self._lock, store="partition leases") as db:
            db.execute(
                "DELETE FROM partition_leases WHERE consumer_group = ? AND partition = ? "
                "AND member = ?",
                (group, partition, member),
            )

    def leave(self, group: str, member: str) -> None:
        with write_transaction(self._connection, self._lock, store="partition leases") as db:
            db.execute(
                "DELETE FROM partition_leases WHERE consumer_group = ? AND member = ?",
                (group, member),
            )
            db.execute(
                "DELETE FROM group_members WHERE consumer_group = ? AND member = ?",
                (group, member),
            )

    def owners(self, group: str) -> dict[int, str]:
        # Under the lock: the connection is shared, and a read on it while another thread's
        # write transaction is open would see that transaction's uncommitted rows.
        with self._lock:
            rows = self._connection.execute(
                "SELECT partition, member FROM partition_leases WHERE consumer_group = ? "
                "AND expires_at >= ?",
                (group, self._clock()),
            ).fetchall()
        return {int(row[0]): str(row[1]) for row in rows}

    def close(self) -> None:
        self._connection.close()
