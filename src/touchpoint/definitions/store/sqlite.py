"""The embedded definition store: every applied version in one SQLite file.

One row per version (`version INTEGER PRIMARY KEY`, so `MAX(version)` is a single
b-tree seek: cheap enough for every API process to poll once a second). `apply`
runs in one `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock before
reading the latest version, so two processes applying at once get consecutive
numbers and an unchanged set never becomes a version. The file runs in WAL mode
with `synchronous=FULL`: an applied version survives a power loss, since
decisions record its number.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import orjson

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import InvalidInput
from touchpoint.core.pages import Page, parse_id_cursor
from touchpoint.core.sqlite import open_connection, write_transaction
from touchpoint.core.sqlite_migrations import SqliteMigration
from touchpoint.definitions.model import Definitions
from touchpoint.definitions.store.base import DefinitionStore, DefinitionVersion, version_from_row

logger = logging.getLogger(__name__)

MAX_PAGE = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY, digest TEXT NOT NULL, definitions TEXT NOT NULL,
    applied_at TEXT NOT NULL, actor TEXT NOT NULL, note TEXT NOT NULL DEFAULT '');
"""
# The schema, version by version (see core.sqlite_migrations).
MIGRATIONS = [SqliteMigration("definitions", 1, _SCHEMA)]
_COLUMNS = "version, digest, definitions, applied_at, actor, note"


class SqliteDefinitionStore(DefinitionStore):
    """Definition versions in one SQLite file (WAL, synchronous FULL), safe across threads
    and processes.

    One connection behind a lock: applies are rare and reads are either the once-a-second
    `latest_version` poll or a reload, so simplicity wins over read concurrency. The last
    version read is kept parsed, so `current()` on an unchanged store costs the poll query
    and no JSON decoding.
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.path = Path(path)
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._cached: DefinitionVersion | None = None
        self._connection = open_connection(self.path, synchronous="full", migrations=MIGRATIONS)

    def current(self) -> DefinitionVersion | None:
        """See `DefinitionStore.current`; served from the parsed copy while it is the latest."""
        with self._lock:
            return self._latest(self._connection)

    def latest_version(self) -> int:
        """See `DefinitionStore.latest_version`: one index seek, no decoding."""
        with self._lock:
            return self._max_version(self._connection)

    def get(self, version: int) -> DefinitionVersion | None:
        """See `DefinitionStore.get`."""
        with self._lock:
            cached = self._cached
            if cached is not None and cached.version == version:
                return cached
            row = self._connection.execute(
                f"SELECT {_COLUMNS} FROM versions WHERE version = ?", (version,)
            ).fetchone()
        return None if row is None else version_from_row(row)

    def versions(self, *, cursor: str | None = None, limit: int = 50) -> Page[DefinitionVersion]:
        """See `DefinitionStore.versions`. The cursor is the last version number returned."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        before = parse_id_cursor(cursor)
        where = "" if before is None else " WHERE version < ?"
        params: tuple[int, ...] = () if before is None else (before,)
        with self._lock:
            rows = self._connection.execute(
                f"SELECT {_COLUMNS} FROM versions{where} ORDER BY version DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        items = [version_from_row(row) for row in rows[:limit]]
        next_cursor = str(items[-1].version) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    def apply(self, definitions: Definitions, *, actor: str, note: str = "") -> DefinitionVersion:
        """See `DefinitionStore.apply`: the digest check and the insert share one write
        transaction, so concurrent applies (threads or processes) never share a number."""
        digest = definitions.digest()
        document = orjson.dumps(definitions.model_dump(mode="json")).decode("utf-8")
        with self._transaction() as connection:
            latest = self._latest(connection)
            if latest is not None and latest.digest == digest:
                return latest
            number = (latest.version if latest is not None else 0) + 1
            applied_at = isoformat(self._clock())
            connection.execute(
                f"INSERT INTO versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
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
        with self._lock:
            self._cached = created
        logger.info("definitions version %d stored (digest %s)", number, digest[:12])
        return created

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()

    def _latest(self, connection: sqlite3.Connection) -> DefinitionVersion | None:
        """The latest version; the caller holds the lock."""
        number = self._max_version(connection)
        if number == 0:
            return None
        cached = self._cached
        if cached is not None and cached.version == number:
            return cached
        row = connection.execute(
            f"SELECT {_COLUMNS} FROM versions WHERE version = ?", (number,)
        ).fetchone()
        self._cached = version_from_row(row)
        return self._cached

    @staticmethod
    def _max_version(connection: sqlite3.Connection) -> int:
        row = connection.execute("SELECT MAX(version) FROM versions").fetchone()
        return int(row[0] or 0)

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction under the lock: committed on success, else rolled back."""
        return write_transaction(self._connection, self._lock, store="definition store")
