"""The embedded rejected-events store: one SQLite table (see `base.py` for what it keeps
and how its cost is bounded)."""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from touchpoint.collect.rejected.base import (
    MAX_PAGE,
    Distinct,
    NewRejected,
    RejectedEvent,
    RejectedStore,
    distinct,
    identity_forms,
    rejected_from_row,
)
from touchpoint.core.errors import InvalidInput
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page, parse_id_cursor
from touchpoint.core.sqlite import checkpoint_truncate, open_connection, write_transaction
from touchpoint.core.sqlite_migrations import SqliteMigration, add_columns

_CHUNK = 500
# The first schema, as the first version created it (a file of that version is adopted by
# it, `IF NOT EXISTS`, then upgraded by version 2).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, message_id TEXT,
    received_at TEXT NOT NULL, reason TEXT NOT NULL, errors TEXT NOT NULL, event TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS rejected_once
    ON rejected (source, message_id, reason) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rejected_by_reason ON rejected (reason, id);
CREATE INDEX IF NOT EXISTS rejected_by_source ON rejected (source, id);
CREATE INDEX IF NOT EXISTS rejected_by_message_id ON rejected (message_id);
"""
# Version 2: identical refusals share a row that counts them, and retention by last seen.
_COUNTED_INDEXES = """
UPDATE rejected SET last_seen = received_at WHERE last_seen IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS rejected_same
    ON rejected (source, reason, payload_hash) WHERE message_id IS NULL;
CREATE INDEX IF NOT EXISTS rejected_by_last_seen ON rejected (last_seen);
"""
# The schema, version by version (see core.sqlite_migrations).
MIGRATIONS = [
    SqliteMigration("rejected", 1, _SCHEMA),
    add_columns(
        "rejected",
        2,
        "rejected",
        [
            ("payload_hash", "BLOB"),
            ("occurrences", "INTEGER NOT NULL DEFAULT 1"),
            ("last_seen", "TEXT"),
        ],
        then=_COUNTED_INDEXES,
    ),
]
_COLUMNS = "id, source, message_id, received_at, reason, errors, event, occurrences, last_seen"


# The fields an identity can come from, extracted by SQLite without decoding whole events:
# the top-level ids, and the trait objects (only when they are objects) as JSON text.
_IDENTIFYING_FIELDS = """
SELECT id,
    json_extract(event, '$.userId'), json_extract(event, '$.anonymousId'),
    json_extract(event, '$.previousId'),
    CASE json_type(event, '$.traits') WHEN 'object' THEN json_extract(event, '$.traits') END,
    CASE json_type(event, '$.context.traits')
        WHEN 'object' THEN json_extract(event, '$.context.traits') END
FROM rejected WHERE json_valid(event) AND json_type(event) = 'object'
"""


def _identifying_forms(row: Sequence[Any]) -> set[str]:
    """`identity_forms` of an event from the fields `_IDENTIFYING_FIELDS` extracts."""
    user_id, anonymous_id, previous_id, traits, context_traits = row[1:6]
    return identity_forms(
        {
            "userId": user_id,
            "anonymousId": anonymous_id,
            "previousId": previous_id,
            "traits": None if traits is None else json.loads(traits),
            "context": {"traits": None if context_traits is None else json.loads(context_traits)},
        }
    )


def _where(
    reason: str | None, source: str | None, *, before: int | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause (with a leading space, or empty) and its parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    for condition, value in (("reason = ?", reason), ("source = ?", source), ("id < ?", before)):
        if value is not None:
            conditions.append(condition)
            params.append(value)
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


class SqliteRejectedStore(RejectedStore):
    """Rejected events in one SQLite file (WAL, synchronous FULL).

    One connection behind a lock: rejections are the exception, so simplicity wins
    over concurrency here. `AUTOINCREMENT` keeps ids from being reused after removal,
    so a cursor never skips or repeats an event.
    """

    def __init__(self, path: Path, *, max_per_source: int | None = None) -> None:
        self.path = Path(path)
        self.max_per_source = max_per_source
        self._lock = threading.Lock()
        self._connection = open_connection(self.path, synchronous="full", migrations=MIGRATIONS)

    def add(self, items: Sequence[NewRejected]) -> list[int | None]:
        """See `RejectedStore.add`; one transaction, so the batch is stored whole or not."""
        ids: list[int | None] = [None] * len(items)
        room: dict[str, int] = {}
        with self._transaction() as connection:
            for entry in distinct(items):
                item_id = self._existing(connection, entry)
                if item_id is None:
                    item_id = self._insert(connection, entry, room)
                for position in entry.positions:
                    ids[position] = item_id
        return ids

    def _existing(self, connection: sqlite3.Connection, entry: Distinct) -> int | None:
        """The row `entry` is already stored as (counting it there), or None."""
        item = entry.item
        if item.message_id is not None:
            row = connection.execute(
                "SELECT id FROM rejected WHERE source = ? AND message_id = ? AND reason = ?",
                (item.source, item.message_id, item.reason),
            ).fetchone()
            return None if row is None else int(row[0])
        row = connection.execute(
            "UPDATE rejected SET occurrences = occurrences + ?, last_seen = max(last_seen, ?) "
            "WHERE source = ? AND reason = ? AND payload_hash = ? AND message_id IS NULL "
            "RETURNING id",
            (entry.occurrences, entry.last_seen, item.source, item.reason, entry.digest),
        ).fetchone()
        return None if row is None else int(row[0])

    def _insert(
        self, connection: sqlite3.Connection, entry: Distinct, room: dict[str, int]
    ) -> int | None:
        """Store `entry` as a new row if its source has room (None if not)."""
        item = entry.item
        if self.max_per_source is not None:
            if item.source not in room:
                sql = "SELECT COUNT(*) FROM rejected WHERE source = ?"
                stored = int(connection.execute(sql, (item.source,)).fetchone()[0])
                room[item.source] = self.max_per_source - stored
            if room[item.source] <= 0:
                return None
            room[item.source] -= 1
        occurrences = 1 if item.message_id is not None else entry.occurrences
        cursor = connection.execute(
            "INSERT INTO rejected (source, message_id, received_at, reason, errors, event, "
            "payload_hash, occurrences, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.source,
                item.message_id,
                item.received_at,
                item.reason,
                json.dumps(item.errors, ensure_ascii=False, default=str),
                json.dumps(item.event, ensure_ascii=False, default=str),
                entry.digest,
                occurrences,
                entry.last_seen,
            ),
        )
        return int(cursor.lastrowid or 0)

    def purge(self, seen_before: str) -> int:
        """See `RejectedStore.purge`."""
        with self._transaction() as connection:
            sql = "DELETE FROM rejected WHERE last_seen < ?"
            return int(connection.execute(sql, (seen_before,)).rowcount)

    def list(
        self,
        *,
        reason: str | None = None,
        source: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[RejectedEvent]:
        """See `RejectedStore.list`. The cursor is the id of the last event returned."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        where, params = _where(reason, source, before=parse_id_cursor(cursor))
        sql = f"SELECT {_COLUMNS} FROM rejected{where} ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._connection.execute(sql, (*params, limit + 1)).fetchall()
        items = [rejected_from_row(row) for row in rows[:limit]]
        next_cursor = str(items[-1].id) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    def count(self, *, reason: str | None = None, source: str | None = None) -> int:
        """See `RejectedStore.count`."""
        where, params = _where(reason, source)
        with self._lock:
            sql = f"SELECT COUNT(*) FROM rejected{where}"
            return int(self._connection.execute(sql, params).fetchone()[0])

    def counts_by_reason(self) -> dict[str, int]:
        """See `RejectedStore.counts_by_reason`."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT reason, COUNT(*) FROM rejected GROUP BY reason ORDER BY reason"
            ).fetchall()
        return {str(reason): int(count) for reason, count in rows}

    def remove(self, ids: Sequence[int]) -> int:
        """See `RejectedStore.remove`."""
        return self._delete("id", list(dict.fromkeys(ids)))

    def erase_identities(self, values: Sequence[str]) -> int:
        """See `RejectedStore.erase_identities`. The store is small (rejections are the
        exception), so this scans it: SQLite extracts the identifying fields, Python matches
        them with `names_any`, and the matches are deleted in the same transaction."""
        wanted = frozenset(value for value in values if value)
        if not wanted:
            return 0
        with self._transaction() as connection:
            rows = connection.execute(_IDENTIFYING_FIELDS).fetchall()
            ids = [row[0] for row in rows if not _identifying_forms(row).isdisjoint(wanted)]
            deleted = 0
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"DELETE FROM rejected WHERE id IN ({marks})"
                deleted += connection.execute(sql, tuple(chunk)).rowcount
        return deleted

    def erase_message_ids(self, message_ids: Sequence[str]) -> int:
        """See `RejectedStore.erase_message_ids`."""
        return self._delete("message_id", list(dict.fromkeys(message_ids)))

    def scrub(self) -> builtins.list[Leftover]:
        """See `RejectedStore.scrub`: erased rows were zeroed in their pages (secure
        delete); the write-ahead log, which still has their old pages, is truncated."""
        return checkpoint_truncate(self.path, store="rejected_store")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()

    def _delete(self, column: str, values: Sequence[Any]) -> int:
        deleted = 0
        with self._transaction() as connection:
            for start in range(0, len(values), _CHUNK):
                chunk = values[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"DELETE FROM rejected WHERE {column} IN ({marks})"
                deleted += connection.execute(sql, tuple(chunk)).rowcount
        return deleted

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction under the lock: committed on success, else rolled back."""
        return write_transaction(self._connection, self._lock, store="rejected store")
