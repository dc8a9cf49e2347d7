"""The embedded audit log: one append-only SQLite table.

Ids come from `AUTOINCREMENT`, so they only grow (never reused, even after a
future retention job deletes old rows) and order entries by time; a page's
cursor is the last id it returned. The file runs in WAL mode with
`synchronous=FULL`: an action reported as done is on disk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from touchpoint.audit.base import AuditEntry, AuditLog, entry_from_row
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import InvalidInput
from touchpoint.core.pages import Page, parse_id_cursor
from touchpoint.core.sqlite import open_connection
from touchpoint.core.sqlite_migrations import SqliteMigration

logger = logging.getLogger(__name__)

MAX_PAGE = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, id);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit (target, id);
"""
# The schema, version by version (see core.sqlite_migrations).
MIGRATIONS = [SqliteMigration("audit", 1, _SCHEMA)]
_COLUMNS = "id, at, actor, action, target, details"


class SqliteAuditLog(AuditLog):
    """Audit entries in one SQLite file (WAL, synchronous FULL), safe across threads and
    processes: one connection behind a lock, since admin actions are rare."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.path = Path(path)
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = open_connection(self.path, synchronous="full", migrations=MIGRATIONS)

    def record(
        self, *, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> AuditEntry:
        """See `AuditLog.record`. `details` must be JSON-able; anything else (a datetime, a
        path) is stored as its text rather than failing the action it records."""
        stored = orjson.loads(
            orjson.dumps(details or {}, default=str, option=orjson.OPT_NON_STR_KEYS)
        )
        at = isoformat(self._clock())
        with self._lock:
            cursor = self._connection.execute(
                "INSERT INTO audit (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)",
                (at, actor, action, target, orjson.dumps(stored).decode("utf-8")),
            )
            entry_id = int(cursor.lastrowid or 0)
        logger.info("audit %s %s by %s (entry %d)", action, target, actor, entry_id)
        return AuditEntry(
            id=entry_id, at=at, actor=actor, action=action, target=target, details=stored
        )

    def list(
        self,
        *,
        action: str | None = None,
        target: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[AuditEntry]:
        """See `AuditLog.list`. The cursor is the id of the last entry returned."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        conditions: list[str] = []
        params: list[Any] = []
        for condition, value in (
            ("action = ?", action),
            ("target = ?", target),
            ("id < ?", parse_id_cursor(cursor)),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {_COLUMNS} FROM audit{where} ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._connection.execute(sql, (*params, limit + 1)).fetchall()
        items = [entry_from_row(row) for row in rows[:limit]]
        next_cursor = str(items[-1].id) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    def get(self, entry_id: int) -> AuditEntry | None:
        """See `AuditLog.get`."""
        with self._lock:
            row = self._connection.execute(
                f"SELECT {_COLUMNS} FROM audit WHERE id = ?", (entry_id,)
            ).fetchone()
        return None if row is None else entry_from_row(row)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()
