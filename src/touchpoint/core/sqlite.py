"""What every embedded (SQLite) store shares: opening a file the same way, one write
transaction at a time whose failures of the file itself say "retry later", and scrubbing
the write-ahead log after an erasure.

Each store keeps its own schema (an ordered list of migrations, applied on open by
`open_connection` or `sqlite_migrations.migrate`), pragmas that differ (synchronous level, cache and
checkpoint sizes) and its own read connections; these helpers are the part that was
otherwise written once per store.

Every store holds personal data (profiles, events, decisions, rejected events, audit
entries), so every connection turns `secure_delete` on (`SECURE_DELETE_PRAGMA`): SQLite
then overwrites a deleted row's bytes with zeros instead of leaving them in the page's
free space or on the free-page list. Builds of SQLite differ in their default (Debian's
turns it on, the upstream amalgamation leaves it off), so it is set, never assumed. In WAL
mode the zeroed page is a new frame; the old frames, with the row, stay in the `-wal` file
until a checkpoint truncates it: `checkpoint_truncate` does that after an erasure.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from touchpoint.core.errors import Unavailable
from touchpoint.core.leftovers import Leftover
from touchpoint.core.sqlite_migrations import SqliteMigration, migrate

logger = logging.getLogger(__name__)

# Deleted rows are overwritten with zeros, not left in free space (see the module doc).
SECURE_DELETE_PRAGMA = "secure_delete = ON"

# How much a busy store's WAL may hold before SQLite copies it back into the database
# (pages of 4 KiB: 8 MiB), and the size the WAL file shrinks back to afterwards. Larger
# values mean fewer checkpoints under load, but everything in a WAL must be copied into
# the database file before the WAL can shrink: on a full disk, that copy needs as much free
# space as the WAL holds. With 40 MiB WALs, freeing a few MiB never let a stuck workspace
# resume; with these, freeing about 8 MiB per busy store does (tests/e2e/test_disk_full.py).
WAL_AUTOCHECKPOINT_PAGES = 2000
WAL_SIZE_LIMIT_BYTES = 8 * 1024 * 1024


def open_connection(
    path: str | Path,
    *,
    synchronous: Literal["full", "normal"],
    timeout: float = 5.0,
    migrations: Sequence[SqliteMigration] = (),
    pragmas: Iterable[str] = (),
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread,
    with secure delete on, in WAL mode at the given synchronous level, with `pragmas`
    (`"temp_store=MEMORY"`) applied and the store's schema brought up to date by
    `migrations` (see `core.sqlite_migrations`); closed again if any of that fails."""
    connection = sqlite3.connect(
        Path(path), isolation_level=None, check_same_thread=False, timeout=timeout
    )
    try:
        connection.execute(f"PRAGMA {SECURE_DELETE_PRAGMA}")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
        for pragma in pragmas:
            connection.execute(f"PRAGMA {pragma}")
        if migrations:
            migrate(connection, migrations, path=path)
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
                if disk_full(error):
                    shrink_wal(connection)
                raise Unavailable(f"the {store} failed a write: {error}") from error
            raise


def disk_full(error: BaseException) -> bool:
    """Whether SQLite failed because the disk (or the database's size limit) is full."""
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def shrink_wal(connection: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and truncate it to zero bytes, if it can be done now;
    whether it was. A store calls this after a write failed on a full disk: the WAL holds
    pages the database file does not have yet, and it never shrinks by itself while every
    write fails, so space freed by an operator would go to the next failing write instead
    of letting the store resume. Best effort: a checkpoint on a disk still full, or one
    that a reader blocks, simply reports that it did not complete."""
    try:
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return False
    return not busy


def checkpoint_truncate(
    path: str | Path,
    *,
    store: str,
    attempts: int = 20,
    pause: float = 0.05,
    timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Leftover]:
    """Copy the whole write-ahead log of the database at `path` into it and truncate the
    `-wal` file to zero bytes, so no frame written before (an erased row's old page) is
    left in it; an empty list when done, else the `Leftover` saying what remains.

    A checkpoint cannot reset the log while a reader still uses a snapshot in it, nor while
    a writer holds the lock beyond `timeout`; it is tried `attempts` times, `pause` seconds
    apart. Runs on a connection of its own, so it needs no store's lock and never runs
    inside a store's transaction."""
    connection = sqlite3.connect(Path(path), isolation_level=None, timeout=timeout)
    try:
        for _ in range(attempts):
            if shrink_wal(connection):
                return []
            sleep(pause)
    finally:
        connection.close()
    logger.warning("%s: the write-ahead log could not be truncated after an erasure", store)
    return [
        Leftover(
            store=store,
            where=f"{Path(path).name}-wal (frames written before the erasure)",
            until="the next checkpoint that resets the write-ahead log "
            "(at the latest when the store is closed)",
        )
    ]
