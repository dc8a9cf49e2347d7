"""The server audit log: one append-only PostgreSQL table, shared by every process of the
workspace.

Ids come from an identity column (a sequence), so they only grow, are never reused and
order entries by time; a page's cursor is the last id it returned. A committed entry is
durable by PostgreSQL's own rules (the WAL is flushed at commit by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import psycopg

from touchpoint.audit.base import AuditEntry, AuditLog, entry_from_row
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import InvalidInput
from touchpoint.core.pages import Page, parse_id_cursor
from touchpoint.core.postgres import Migration, Postgres, postgres_text

logger = logging.getLogger(__name__)

STORE = "audit log"
MAX_PAGE = 1000
_MAX_BIGINT = 2**63 - 1
Connection = psycopg.Connection[tuple[Any, ...]]

MIGRATIONS: list[Migration] = [
    Migration(
        "audit",
        1,
        """
CREATE TABLE audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at text NOT NULL, actor text NOT NULL,
    action text NOT NULL, target text NOT NULL, details text NOT NULL);
CREATE INDEX audit_by_action ON audit (action, id);
CREATE INDEX audit_by_target ON audit (target, id);
""",
    )
]
_COLUMNS = "id, at, actor, action, target, details"


class PostgresAuditLog(AuditLog):
    """Audit entries in PostgreSQL, safe across threads and processes. `close` leaves the
    pool open: it belongs to the process's `Postgres` service. A lost server or connection
    surfaces as `Unavailable`."""

    def __init__(self, postgres: Postgres, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._postgres = postgres
        self._clock = clock
        postgres.ensure(MIGRATIONS)

    def record(
        self, *, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> AuditEntry:
        """See `AuditLog.record`. `details` must be JSON-able; anything else (a datetime, a
        path) is stored as its text rather than failing the action it records. One
        transaction, retried once on a fresh connection if the connection failed first."""
        stored = orjson.loads(
            orjson.dumps(details or {}, default=str, option=orjson.OPT_NON_STR_KEYS)
        )
        at = isoformat(self._clock())
        values = (
            at,
            postgres_text(actor),
            postgres_text(action),
            postgres_text(target),
            orjson.dumps(stored).decode(),
        )

        def insert(connection: Connection) -> int:
            row = connection.execute(
                "INSERT INTO audit (at, actor, action, target, details) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                values,
            ).fetchone()
            assert row is not None
            return int(row[0])

        entry_id = self._postgres.run(STORE, insert)
        logger.info("audit %s %s by %s (entry %d)", action, target, actor, entry_id)
        return AuditEntry(
            id=entry_id, at=at, actor=values[1], action=values[2], target=values[3], details=stored
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
            ("action = %s", None if action is None else postgres_text(action)),
            ("target = %s", None if target is None else postgres_text(target)),
            ("id < %s", parse_id_cursor(cursor)),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {_COLUMNS} FROM audit{where} ORDER BY id DESC LIMIT %s"
        with self._postgres.connection(STORE) as connection:
            rows = connection.execute(sql, (*params, limit + 1)).fetchall()
        items = [entry_from_row(row) for row in rows[:limit]]
        next_cursor = str(items[-1].id) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    def get(self, entry_id: int) -> AuditEntry | None:
        """See `AuditLog.get`."""
        if not 0 < entry_id <= _MAX_BIGINT:
            return None
        with self._postgres.connection(STORE) as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM audit WHERE id = %s", (entry_id,)
            ).fetchone()
        return None if row is None else entry_from_row(row)

    def close(self) -> None:
        """Nothing to release: the connection pool belongs to the `Postgres` service."""
