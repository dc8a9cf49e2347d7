"""The embedded event log: one SQLite file in WAL mode, written by one thread.

SQLite takes one writer at a time and every commit costs an fsync, while the HTTP
server appends from many threads. So callers only enqueue their records and wait;
the writer thread drains everything queued, writes it in one transaction and
commits once (group commit). Dedup runs inside that transaction: a crash can
neither lose an event nor let a retry in twice, and callers coalesced into one
transaction see each other's message ids. Reads use per-thread connections, which
WAL lets run beside the writer. Several processes may share the file: SQLite's
lock serialises their writers, and offsets are read inside each write transaction.

The events table has no index but its key `(partition, offset)`: an index on a
random value (message id, person) costs about as much as the insert, and dedup
already pays for one. Erasure therefore scans (see `_erase`).

A transaction runs few, wide statements (see `WriteTransaction`): the writer thread
shares the GIL with the HTTP loop and the stream processor, and the sqlite3
module gives the GIL up at every step of a statement, so a writer that stepped
once per row spent most of a transaction waiting to get it back.
"""

from __future__ import annotations

import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from touchpoint.core.errors import DefinitionError, Unavailable
from touchpoint.core.leftovers import Leftover
from touchpoint.core.sqlite import (
    SECURE_DELETE_PRAGMA,
    WAL_AUTOCHECKPOINT_PAGES,
    WAL_SIZE_LIMIT_BYTES,
    checkpoint_truncate,
    disk_full,
    shrink_wal,
)
from touchpoint.core.sqlite_migrations import SqliteMigration, migrate
from touchpoint.log.base import (
    AppendResult,
    EventLog,
    LogEntry,
    LogRecord,
    LogRewrite,
    partition_for,
)
from touchpoint.log.sqlite_transaction import MAX_ROWS, WriteTransaction, chunks, marks

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = "1"
_PRUNE_CHUNK = 20_000  # dedup keys deleted per transaction, so appends never wait long
_STOP = object()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
    partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL, record_count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    partition INTEGER NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL,
    message_id TEXT NOT NULL, payload BLOB NOT NULL, appended_at REAL NOT NULL,
    PRIMARY KEY (partition, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    committed_at REAL NOT NULL, PRIMARY KEY (consumer_group, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup_keys (
    message_id TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_keys_by_seen_at ON dedup_keys (seen_at);
"""
# The schema, version by version (see core.sqlite_migrations); the partition leases keep
# their own history in the same file.
MIGRATIONS = [SqliteMigration("log", 1, _SCHEMA)]


@dataclass
class _Request:
    apply: Callable[[WriteTransaction], Any]
    records: Sequence[LogRecord] = ()  # an append's, so their dedup keys are looked up early
    future: Future[Any] = field(default_factory=Future)


class SqliteEventLog(EventLog):
    """The event log in one SQLite file (WAL), with group commit through a writer thread.

    Promises: `append` returns once its transaction committed (`synchronous="full"`
    survives power loss, `"normal"` a process crash); offsets are contiguous per
    partition from 0 and never reused, even after erasure; dedup keys live in the
    file, so they survive restarts. `clock` (epoch seconds) is injectable for tests.
    """

    def __init__(
        self,
        path: Path,
        *,
        partitions: int,
        dedup_window: timedelta,
        synchronous: str = "full",
        busy_timeout: float = 5.0,
        prune_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        mode = synchronous.lower()
        if mode not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.path = Path(path)
        self.partitions = partitions
        self.dedup_window = dedup_window.total_seconds()
        self._busy_timeout = busy_timeout
        self._prune_interval = prune_interval
        self._clock = clock
        self._closed = False
        self._submit_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._appended = threading.Condition()
        self._generation = 0
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer_connection = self._connect()
        for pragma in (
            f"synchronous = {mode.upper()}",
            "cache_size = -65536",  # 64 MiB: dedup inserts land on random pages
            "temp_store = MEMORY",  # statement journals of multi-row inserts: no temp files
            f"wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}",  # see core.sqlite
            f"journal_size_limit = {WAL_SIZE_LIMIT_BYTES}",
        ):
            self._writer_connection.execute(f"PRAGMA {pragma}")
        self._create_schema()
        variables = self._writer_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._most_rows = min(MAX_ROWS, 1 << ((variables // 6).bit_length() - 1))
        self._last_prune = clock()
        self._writer = threading.Thread(
            target=self._run, name=f"event-log:{self.path.name}", daemon=True
        )
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout
        )
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        connection.execute(f"PRAGMA {SECURE_DELETE_PRAGMA}")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            connection.close()
            raise RuntimeError(f"{self.path}: cannot use WAL (journal mode is {mode})")
        return connection

    def _create_schema(self) -> None:
        connection = self._writer_connection
        try:
            migrate(connection, MIGRATIONS, path=self.path)
            connection.execute("BEGIN IMMEDIATE")
            stored = connection.execute("SELECT value FROM meta WHERE name = 'partitions'")
            row = stored.fetchone()
            if row is None:
                connection.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [("partitions", str(self.partitions)), ("schema_version", SCHEMA_VERSION)],
                )
                connection.executemany(
                    "INSERT INTO partitions (partition, next_offset, record_count) "
                    "VALUES (?, 0, 0)",
                    [(partition,) for partition in range(self.partitions)],
                )
            connection.execute("COMMIT")
            if row is not None and int(row[0]) != self.partitions:
                raise DefinitionError(
                    "log.partitions",
                    f"the log at {self.path} has {row[0]} partitions, not {self.partitions}; "
                    "keys map to partitions by their count, so it cannot change on a log",
                )
        except BaseException:
            connection.close()
            raise

    # -- the writer ----------------------------------------------------------------------

    def _submit(
        self, apply: Callable[[WriteTransaction], T], records: Sequence[LogRecord] = ()
    ) -> T:
        request = _Request(apply, records)
        with self._submit_lock:
            if self._closed:
                raise Unavailable("the event log is closed")
            self._queue.put(request)
        while True:  # wake now and then, so a writer that died cannot hang its callers
            try:
                return cast(T, request.future.result(timeout=1.0))
            except TimeoutError:
                if not self._writer.is_alive() and not request.future.done():
                    raise Unavailable("the event log writer stopped") from None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            while True:  # drain: everything queued now shares one transaction
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is _STOP for item in items)
            batch = [cast(_Request, item) for item in items if item is not _STOP]
            if batch:
                self._execute(batch)
            now = self._clock()
            if now - self._last_prune >= self._prune_interval:
                prune = _Request(functools.partial(self._delete_expired, now=now))
                self._execute([prune])
                failed = prune.future.exception() is not None
                if failed or prune.future.result() < _PRUNE_CHUNK:
                    self._last_prune = now  # else more remain: prune again after the next batch

    def _execute(self, batch: list[_Request]) -> None:
        """Run `batch` in one transaction: every request commits, or every one fails."""
        connection = self._writer_connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            now = self._clock()
            transaction = WriteTransaction(
                connection, now, now - self.dedup_window, self._most_rows
            )
            transaction.look_up(record.message_id for item in batch for record in item.records)
            results: list[Any] = []
            for request in batch:
                if not request.records:
                    transaction.flush()  # what it reads or deletes must see earlier appends
                results.append(request.apply(transaction))
            transaction.flush()
            transaction.save_partitions()
            connection.execute("COMMIT")
        except BaseException as error:
            try:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("event log: rollback failed")
            if disk_full(error):
                shrink_wal(connection)
            logger.warning("event log: a write of %d requests failed: %r", len(batch), error)
            for request in batch:
                request.future.set_exception(error)
            return
        for request, result in zip(batch, results, strict=True):
            request.future.set_result(result)
        if transaction.appended:
            with self._appended:
                self._generation += 1
                self._appended.notify_all()

    # -- the verbs -----------------------------------------------------------------------

    def append(self, records: Sequence[LogRecord]) -> AppendResult:
        """Durably append `records` (see `EventLog.append`); blocks until the group commit."""
        if any(not record.message_id for record in records):
            raise ValueError("every log record needs a non-empty message_id")
        batch = tuple(records)
        if not batch:
            return AppendResult(())
        return self._submit(lambda tx: self._insert(tx, batch), batch)

    def _insert(self, tx: WriteTransaction, records: Sequence[LogRecord]) -> AppendResult:
        """Dedup and place `records`; their rows are written by `tx.flush`."""
        tx.look_up(record.message_id for record in records)  # done already when coalesced
        seen, rows, now, partitions = tx.seen, tx.event_rows, tx.now, self.partitions
        positions: list[tuple[int, int] | None] = []
        for record in records:
            message_id = record.message_id
            if message_id in seen:
                positions.append(None)
                continue
            seen.add(message_id)
            partition = partition_for(record.key, partitions)
            offset = tx.take_offset(partition)
            positions.append((partition, offset))
            rows.append((partition, offset, record.key, message_id, record.payload, now))
        return AppendResult(tuple(positions))

    def read(self, partition: int, from_offset: int, limit: int = 500) -> list[LogEntry]:
        """Entries of `partition` from `from_offset` on, in offset order (a key range scan)."""
        self._check_partition(partition)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = self._reader().execute(
            "SELECT partition, offset, key, message_id, payload, appended_at FROM events "
            "WHERE partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
            (partition, max(0, from_offset), limit),
        )
        return [LogEntry(*row) for row in rows]

    def end_offset(self, partition: int) -> int:
        """The next offset of `partition` (offsets are contiguous here)."""
        self._check_partition(partition)
        sql = "SELECT next_offset FROM partitions WHERE partition = ?"
        return int(self._reader().execute(sql, (partition,)).fetchone()[0])

    def commit(self, group: str, partition: int, offset: int) -> None:
        """Durably record `group`'s position in `partition`.

        Not monotonic on purpose: committing a lower offset moves the group back,
        which is how a replay starts over.
        """
        self.commit_many(group, {partition: offset})

    def commit_many(self, group: str, positions: Mapping[int, int]) -> None:
        """Durably record `group`'s positions in several partitions in one transaction."""
        for partition, offset in positions.items():
            self._check_partition(partition)
            if not group or offset < 0:
                raise ValueError("a commit needs a group name and an offset >= 0")
        if not positions:
            return
        self._submit(
            lambda tx: tx.connection.executemany(
                "INSERT OR REPLACE INTO consumer_offsets "
                "(consumer_group, partition, offset, committed_at) VALUES (?, ?, ?, ?)",
                [(group, partition, offset, tx.now) for partition, offset in positions.items()],
            )
        )

    def committed(self, group: str, partition: int) -> int:
        """The next offset `group` should read in `partition` (0 when it never committed)."""
        self._check_partition(partition)
        sql = "SELECT offset FROM consumer_offsets WHERE consumer_group = ? AND partition = ?"
        row = self._reader().execute(sql, (group, partition)).fetchone()
        return 0 if row is None else int(row[0])

    def wait_for_append(self, timeout: float) -> bool:
        """Block until this process appended something since this thread's last call.

        True at once if an append already happened since then; False after `timeout`
        without one. Appends by another process are not signalled: a consumer there
        simply waits out `timeout`, then reads.
        """
        seen = getattr(self._local, "seen_generation", 0)
        with self._appended:
            self._appended.wait_for(lambda: self._generation != seen or self._closed, timeout)
            current = self._generation
        self._local.seen_generation = current
        return current != seen

    def count(self) -> int:
        """How many records the log holds (kept per partition, so no scan)."""
        sql = "SELECT COALESCE(SUM(record_count), 0) FROM partitions"
        return int(self._reader().execute(sql).fetchone()[0])

    def prune_dedup(self, now: float | None = None) -> int:
        """Forget dedup keys older than the window at `now` (default: the clock); the count.

        The writer also prunes by itself every `prune_interval` seconds.
        """
        moment = self._clock() if now is None else now
        total = 0
        while True:
            deleted = self._submit(lambda tx: self._delete_expired(tx, moment))
            total += deleted
            if deleted < _PRUNE_CHUNK:
                return total

    def _delete_expired(self, tx: WriteTransaction, now: float) -> int:
        cursor = tx.connection.execute(
            "DELETE FROM dedup_keys WHERE message_id IN "
            "(SELECT message_id FROM dedup_keys WHERE seen_at < ? LIMIT ?)",
            (now - self.dedup_window, _PRUNE_CHUNK),
        )
        return cursor.rowcount

    def erase(self, *, message_ids: Sequence[str] = (), keys: Sequence[str] = ()) -> int:
        """See `EventLog.erase`."""
        return self.erase_messages(message_ids) + self.erase_keys(keys)

    def rewrite(self, changes: Sequence[LogRewrite]) -> int:
        """See `EventLog.rewrite`: one write transaction for all the changes."""
        for change in changes:
            self._check_partition(change.partition)
        if not changes:
            return 0

        def apply(tx: WriteTransaction) -> int:
            updated = 0
            for change in changes:
                updated += tx.connection.execute(
                    "UPDATE events SET key = ?, payload = ? WHERE partition = ? AND offset = ?",
                    (change.key, change.payload, change.partition, change.offset),
                ).rowcount
            return updated

        return self._submit(apply)

    def erase_messages(self, message_ids: Sequence[str]) -> int:
        """Delete the events with these message ids (erasure); how many were deleted.

        Offsets are not reused, and dedup keys stay so a retry cannot bring one back.
        """
        return self._erase("message_id", message_ids)

    def erase_keys(self, keys: Sequence[str]) -> int:
        """Delete every event of these routing keys (erasure of a person); the count."""
        return self._erase("key", keys)

    def _erase(self, column: str, values: Sequence[str]) -> int:
        """Find the events by a scan on a reader (appends go on meanwhile), then delete them
        by key in one write that also rescans only what was appended after that scan."""
        unique = list(dict.fromkeys(values))
        if not unique:
            return 0
        reader = self._reader()
        reader.execute("BEGIN")  # one snapshot for the end offsets and the scan
        try:
            ends = reader.execute("SELECT partition, next_offset FROM partitions").fetchall()
            found: list[tuple[int, int]] = []
            for chunk in chunks(unique):
                sql = f"SELECT partition, offset FROM events WHERE {column} IN ({marks(chunk)})"
                found.extend(reader.execute(sql, tuple(chunk)).fetchall())
        finally:
            reader.execute("COMMIT")

        statements = [
            ("DELETE FROM events WHERE partition = ? AND offset = ?", position)
            for position in found
        ] + [
            (
                f"DELETE FROM events WHERE partition = ? AND offset >= ? "
                f"AND {column} IN ({marks(chunk)})",
                (partition, end, *chunk),
            )
            for partition, end in ends
            for chunk in chunks(unique)
        ]

        def apply(tx: WriteTransaction) -> int:
            deleted = 0
            for sql, params in statements:
                count = tx.connection.execute(sql, params).rowcount
                tx.change_count(params[0], -count)
                deleted += count
            return deleted

        return self._submit(apply)

    def scrub(self) -> list[Leftover]:
        """See `EventLog.scrub`: erased records were zeroed in their pages (secure delete);
        the write-ahead log, which still has their old pages, is truncated."""
        return checkpoint_truncate(self.path, store="event_log", timeout=self._busy_timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer and close every connection. Idempotent."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._writer.join()
        self._writer_connection.close()
        with self._appended:
            self._appended.notify_all()
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()

    # -- helpers -------------------------------------------------------------------------

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (WAL lets it read beside the writer)."""
        connection: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if connection is not None and not self._closed:
            return connection
        with self._readers_lock:
            if self._closed:
                raise Unavailable("the event log is closed")
            connection = self._connect()
            connection.execute("PRAGMA query_only = ON")
            self._readers.append(connection)
        self._local.reader = connection
        return connection
