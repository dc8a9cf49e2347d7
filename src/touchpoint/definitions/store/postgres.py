"""The server definition store: every applied version in PostgreSQL, shared by every API
process of the workspace.

One row per version (`version` is the primary key, so `MAX(version)` is one backward
index seek: cheap enough for every API process to poll once a second). `apply` runs in
one transaction that first locks the table against other writers (`SHARE ROW
EXCLUSIVE`: readers never wait), then reads the latest version, so two processes
applying at once get consecutive numbers and an unchanged set never becomes a version.
The lock is the table's, so it serializes the applies of this schema only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import psycopg

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import InvalidInput
from touchpoint.core.pages import Page, parse_id_cursor
from touchpoint.core.postgres import Migration, Postgres, postgres_text
from touchpoint.definitions.model import Definitions
from touchpoint.definitions.store.base import DefinitionStore, DefinitionVersion, version_from_row

logger = logging.getLogger(__name__)

STORE = "definition store"
MAX_PAGE = 1000
_MAX_INTEGER = 2**31 - 1
Connection = psycopg.Connection[tuple[Any, ...]]

MIGRATIONS: list[Migration] = [
    Migration(
        "definitions",
        1,
        """
CREATE TABLE definition_versions (
    version integer PRIMARY KEY, digest text NOT NULL, definitions text NOT NULL,
    applied_at text NOT NULL, actor text NOT NULL, note text NOT NULL DEFAULT '');
""",
    )
]
_COLUMNS = "version, digest, definitions, applied_at, actor, note"
_SELECT_VERSION = f"SELECT {_COLUMNS} FROM definition_versions WHERE version = %s"
_MAX_VERSION = "SELECT MAX(version) FROM definition_versions"


class PostgresDefinitionStore(DefinitionStore):
    """Definition versions in PostgreSQL, safe across threads and processes.

    The last version read is kept parsed, so `current()` on an unchanged store costs the
    poll query and no JSON decoding. `close` leaves the pool open: it belongs to the
    process's `Postgres` service. A lost server or connection surfaces as `Unavailable`.
    """

    def __init__(self, postgres: Postgres, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._postgres = postgres
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: DefinitionVersion | None = None
        postgres.ensure(MIGRATIONS)

    def current(self) -> DefinitionVersion | None:
        """See `DefinitionStore.current`; served from the parsed copy while it is the latest."""
        with self._postgres.connection(STORE) as connection:
            return self._latest(connection)

    def latest_version(self) -> int:
        """See `DefinitionStore.latest_version`: one index seek, no decoding."""
        with self._postgres.connection(STORE) as connection:
            return _max_version(connection)

    def get(self, version: int) -> DefinitionVersion | None:
        """See `DefinitionStore.get`."""
        cached = self._cached
        if cached is not None and cached.version == version:
            return cached
        if not 0 < version <= _MAX_INTEGER:
            return None
        with self._postgres.connection(STORE) as connection:
            row = connection.execute(_SELECT_VERSION, (version,)).fetchone()
        return None if row is None else version_from_row(row)

    def versions(self, *, cursor: str | None = None, limit: int = 50) -> Page[DefinitionVersion]:
        """See `DefinitionStore.versions`. The cursor is the last version number returned."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        before = parse_id_cursor(cursor, _MAX_INTEGER)
        where = "" if before is None else " WHERE version < %s"
        params: tuple[int, ...] = () if before is None else (before,)
        with self._postgres.connection(STORE) as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM definition_versions{where} ORDER BY version DESC LIMIT %s",
                (*params, limit + 1),
            ).fetchall()
        items = [version_from_row(row) for row in rows[:limit]]
        next_cursor = str(items[-1].version) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    def apply(self, definitions: Definitions, *, actor: str, note: str = "") -> DefinitionVersion:
        """See `DefinitionStore.apply`: the table lock, the digest check and the insert share
        one transaction, so concurrent applies (threads or processes) never share a number.
        Retried once on a fresh connection if the connection failed: the digest check makes
        a retry of an apply that did commit return that version instead of adding one."""
        digest = definitions.digest()
        document = orjson.dumps(definitions.model_dump(mode="json")).decode("utf-8")
        actor, note = postgres_text(actor), postgres_text(note)

        def store(connection: Connection) -> tuple[DefinitionVersion, bool]:
            connection.execute("LOCK TABLE definition_versions IN SHARE ROW EXCLUSIVE MODE")
            latest = self._latest(connection)
            if latest is not None and latest.digest == digest:
                return latest, False
            number = (latest.version if latest is not None else 0) + 1
            applied_at = isoformat(self._clock())
            connection.execute(
                f"INSERT INTO definition_versions ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
                (number, digest, document, applied_at, actor, note),
            )
            created = DefinitionVersion(
                version=number,
                definitions=definitions,
                digest=digest,
                applied_at=applied_at,
                actor=actor,
                note=note,
            )
            return created, True

        stored, created = self._postgres.run(STORE, store)
        if created:
            with self._lock:
                cached = self._cached
                if cached is None or cached.version < stored.version:
                    self._cached = stored
            logger.info("definitions version %d stored (digest %s)", stored.version, digest[:12])
        return stored

    def close(self) -> None:
        """Nothing to release: the connection pool belongs to the `Postgres` service."""

    def _latest(self, connection: Connection) -> DefinitionVersion | None:
        """The latest version, decoded only when it is not the cached one."""
        number = _max_version(connection)
        if number == 0:
            return None
        cached = self._cached
        if cached is not None and cached.version == number:
            return cached
        row = connection.execute(_SELECT_VERSION, (number,)).fetchone()
        if row is None:  # pragma: no cover - versions are never deleted
            return None
        latest = version_from_row(row)
        with self._lock:
            self._cached = latest
        return latest


def _max_version(connection: Connection) -> int:
    row = connection.execute(_MAX_VERSION).fetchone()
    return int(row[0] or 0) if row is not None else 0
