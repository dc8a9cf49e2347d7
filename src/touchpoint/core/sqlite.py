"""What every embedded (SQLite) store shares: opening a file the same way, and one
write transaction at a time whose failures of the file itself say "retry later".

Each store keeps its own schema, pragmas that differ (synchronous level, cache and
checkpoint sizes) and its own read connections; these two helpers are the part
that was otherwise written once per store.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from touchpoint.core.errors import Unavailable


def open_connection(
    path: str | Path,
    *,
    synchronous: Literal["full", "normal"],
    timeout: float = 5.0,
    schema: str | None = None,
    pragmas: Iterable[str] = (),
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread,
    in WAL mode at the given synchronous level, with `pragmas` (`"temp_store=MEMORY"`) and
    `schema` applied; closed again if any of that fails."""
    connection = sqlite3.connect(
        Path(path), isolation_level=None, check_same_thread=False, timeout=timeout
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
        for pragma in pragmas:
            connection.execute(f"PRAGMA {pragma}")
        if schema is not None:
            connection.executescript(schema)
    except BaseException:
        connection.close()
        raise
    return connection


@contextmanager
def write_transaction(
    connection: sqlite3.Connection, lock: threading.Lock, *, store: str
) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` on `connection` under `lock`: committed when the block ends, rolled
    back on any exception. SQLite's own failures (locked past the timeout, disk full, I/O)
    surface as `Unavailable` naming `store`, so a caller can tell "retry later" from a
    problem with its input."""
    with lock:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise Unavailable(f"the {store} cannot start a write: {error}") from error
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            if isinstance(error, sqlite3.OperationalError):
                raise Unavailable(f"the {store} failed a write: {error}") from error
            raise
