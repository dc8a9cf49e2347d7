"""The embedded decision log: decisions and their outcomes in one SQLite file (WAL).

`record` runs inside every decide request, so it is one short transaction on a
dedicated write connection (behind a lock), with one `executemany`. Reads (caps,
reports, the API) use one connection per thread and never wait for the writer.

Durability: `synchronous=NORMAL`. In WAL mode a committed transaction is in the WAL
file before `record` returns, so a decision survives a crash of the process; only a
power loss or an operating-system crash can lose the last few commits, and it never
corrupts the file. That is the right trade-off for this log: `FULL` would add an fsync
to every decide request (a tenth of a millisecond on a local SSD, milliseconds on
network volumes), which the latency goal cannot afford, while what such a loss costs is
small and bounded: the outcomes of those few decisions are ignored as "unknown
decision", and a frequency cap may allow one more impression than it should. WAL
checkpoints run on a background thread, off the request path (see
`SqliteDecisionLog._checkpoint_loop`).
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from touchpoint.core.errors import InvalidInput, TouchpointError, Unavailable
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page
from touchpoint.core.sqlite import SECURE_DELETE_PRAGMA, checkpoint_truncate, write_transaction
from touchpoint.core.sqlite_migrations import SqliteMigration, add_column, migrate
from touchpoint.decide.decision_log.base import (
    ContentReport,
    DecisionLog,
    DecisionRecord,
    ErasedDecisions,
    Outcome,
)
from touchpoint.decide.decision_log.rows import (
    DECISION_COLUMNS,
    DECISION_WIDTH,
    OUTCOME_COLUMNS,
    decision_fields,
    decision_from_row,
    decode_cursor,
    encode_cursor,
    json_columns,
    outcome_fields,
    outcome_from_row,
)

logger = logging.getLogger(__name__)

MAX_PAGE = 1000
# Commits after which the checkpointer runs without waiting for its interval.
_CHECKPOINT_COMMITS = 256
# WAL pages (4 KiB each) after which the checkpointer lets the WAL start over (128 MiB):
# that pass holds the write lock for its syncs (8-19 ms measured), so it must be rare.
_RESTART_FRAMES = 32_768

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT NOT NULL, placement TEXT NOT NULL, content_id TEXT, profile_id TEXT,
    subject TEXT NOT NULL, policy TEXT NOT NULL, definitions_version INTEGER NOT NULL,
    reason TEXT NOT NULL, propensity REAL NOT NULL, at TEXT NOT NULL, experiment TEXT,
    arm TEXT, context BLOB NOT NULL, PRIMARY KEY (decision_id, placement));
CREATE INDEX IF NOT EXISTS decisions_profile ON decisions (profile_id, content_id, at);
CREATE INDEX IF NOT EXISTS decisions_subject ON decisions (subject, content_id, at);
CREATE INDEX IF NOT EXISTS decisions_placement ON decisions (placement, at);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at);
CREATE TABLE IF NOT EXISTS outcomes (
    message_id TEXT PRIMARY KEY, decision_id TEXT NOT NULL, placement TEXT, content_id TEXT,
    kind TEXT NOT NULL, event TEXT NOT NULL, profile_id TEXT, at TEXT NOT NULL, value REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outcomes_decision ON outcomes (decision_id, at);
CREATE INDEX IF NOT EXISTS outcomes_profile ON outcomes (profile_id) WHERE profile_id IS NOT NULL;
"""
# The schema, version by version (see core.sqlite_migrations): a new column is one line.
# 2: the features a policy read (`{}` for the decisions stored before).
MIGRATIONS = [
    SqliteMigration("decisions", 1, _SCHEMA),
    add_column("decisions", 2, "decisions", "features", "BLOB NOT NULL DEFAULT X'7B7D'"),
]
_INSERT_DECISION = (
    f"INSERT INTO decisions ({DECISION_COLUMNS}) VALUES ({', '.join('?' * DECISION_WIDTH)})"
)
_INSERT_OUTCOME = (
    f"INSERT OR IGNORE INTO outcomes ({OUTCOME_COLUMNS}) VALUES ({', '.join('?' * 9)})"
)
# A person's decisions: by any of their profile ids or any of their subjects. The lists are
# passed as JSON arrays, so a person with many identities needs no statement of their own.
_PERSON_DECISIONS = (
    "SELECT rowid FROM decisions WHERE profile_id IN (SELECT value FROM json_each(?1)) "
    "UNION SELECT rowid FROM decisions WHERE subject IN (SELECT value FROM json_each(?2))"
)
_PERSON_OUTCOMES = (
    "SELECT message_id FROM outcomes WHERE decision_id IN "
    f"(SELECT decision_id FROM decisions WHERE rowid IN ({_PERSON_DECISIONS})) "
    "UNION SELECT message_id FROM outcomes WHERE profile_id IN (SELECT value FROM json_each(?1))"
)
# Per content id of the placement over [since, until): decisions, then distinct decisions
# with each outcome kind. An outcome counts for this placement when it names it, or names
# no placement and its decision has no other placement. One pass over the window's
# decisions (placement, at index), each joined to its outcomes by the decision-id index.
_REPORT = """
SELECT content_id, COUNT(*), COALESCE(SUM(viewed), 0), COALESCE(SUM(clicked), 0),
       COALESCE(SUM(converted), 0), TOTAL(value)
FROM (
    SELECT d.content_id,
           MAX(o.kind = 'view') AS viewed,
           MAX(o.kind = 'click') AS clicked,
           MAX(o.kind = 'conversion') AS converted,
           TOTAL(CASE WHEN o.kind = 'conversion' THEN o.value END) AS value
    FROM decisions AS d
    LEFT JOIN outcomes AS o ON o.decision_id = d.decision_id AND (
        o.placement = :placement OR (o.placement IS NULL AND NOT EXISTS (
            SELECT 1 FROM decisions AS other
            WHERE other.decision_id = d.decision_id AND other.placement <> :placement)))
    WHERE d.placement = :placement AND d.at >= :since AND d.at < :until
    GROUP BY d.rowid
)
GROUP BY content_id
ORDER BY COUNT(*) DESC, content_id
"""


def _json_list(values: Collection[str]) -> bytes:
    return orjson.dumps(list(values))


def _decision_row(record: DecisionRecord) -> tuple[Any, ...]:
    return (*decision_fields(record), *json_columns(record))


class SqliteDecisionLog(DecisionLog):
    """Decisions and outcomes in one SQLite file: the embedded default.

    Thread-safe: one write connection behind a lock, one read connection per thread. A
    path is required (`:memory:` would give each connection its own empty database).
    `timeout`: how long (seconds) a statement waits for another process's lock.
    `checkpoint_interval`: seconds between background WAL checkpoints (see
    `_checkpoint_loop`); None leaves checkpoints to SQLite, on the committing connection.
    Errors of the file itself (locked past the timeout, disk full, I/O) surface as
    `Unavailable`, so a caller can tell "retry later" from a problem with its input.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = 5.0,
        checkpoint_interval: float | None = 1.0,
    ) -> None:
        self.path = Path(path)
        self._timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: builtins.list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        # With a checkpointer thread, SQLite's own checkpoint (run by the committing
        # connection, holding the write lock) is only a backstop for a WAL it cannot keep up
        # with; without one, SQLite checkpoints every ~40 MB of WAL.
        self._autocheckpoint = 10_000 if checkpoint_interval is None else 50_000
        self._writer = self._connect()
        try:
            migrate(self._writer, MIGRATIONS, path=self.path)
        except BaseException:
            self._writer.close()
            raise
        self._commits = 0
        self._wake = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if checkpoint_interval is not None:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop,
                args=(self._connect(), checkpoint_interval),
                name=f"checkpoint-{self.path.name}",
                daemon=True,
            )
            self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._timeout
        )
        try:
            connection.execute(f"PRAGMA {SECURE_DELETE_PRAGMA}")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA temp_store=MEMORY")
            connection.execute(f"PRAGMA wal_autocheckpoint={self._autocheckpoint}")
            connection.execute("PRAGMA journal_size_limit=67108864")
        except BaseException:
            connection.close()
            raise
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _checkpoint_loop(self, connection: sqlite3.Connection, interval: float) -> None:
        """Copy the WAL back into the database off the request path.

        Every decision commit appends a few hot pages to the WAL. SQLite's own checkpoint
        runs on the committing connection, inside the write lock, so the decide request that
        triggers it (and every request queued behind the lock) waits for the copy and the
        syncs: ~30 ms every few hundred commits. Here the copy runs beside the writer, once
        per `interval` seconds or after `_CHECKPOINT_COMMITS` commits. Such a checkpoint
        never quite catches up with a busy writer, so the WAL would only grow; once it holds
        `_RESTART_FRAMES` pages, a second pass inside the write lock copies the few pages
        committed meanwhile (about a millisecond), and the next commit starts the WAL over.
        """
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            if self._closed:
                return
            if not self._commits:
                continue
            self._commits = 0
            try:
                _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames < _RESTART_FRAMES:
                    continue
                with self._write_lock:
                    if self._closed:
                        return
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as error:  # the next round tries again
                logger.warning("decision log checkpoint failed: %s", error)

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise TouchpointError("the decision log is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def _read(self, sql: str, values: Any = ()) -> builtins.list[Any]:
        try:
            return self._reader().execute(sql, values).fetchall()
        except sqlite3.OperationalError as error:
            raise Unavailable(f"the decision log cannot be read: {error}") from error

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One consistent view for reads that take several statements."""
        connection = self._reader()
        try:
            connection.execute("BEGIN")
        except sqlite3.OperationalError as error:
            raise Unavailable(f"the decision log cannot be read: {error}") from error
        try:
            yield connection
        except sqlite3.OperationalError as error:
            raise Unavailable(f"the decision log cannot be read: {error}") from error
        finally:
            if connection.in_transaction:
                connection.execute("COMMIT")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed at the end, rolled back on any error."""
        if self._closed:
            raise TouchpointError("the decision log is closed")
        with write_transaction(self._writer, self._write_lock, store="decision log") as connection:
            yield connection

    def record(self, decisions: Sequence[DecisionRecord]) -> None:
        """See `DecisionLog.record`: one transaction, so a duplicate stores nothing."""
        rows = [_decision_row(record) for record in decisions]
        if not rows:
            return
        try:
            with self._transaction() as connection:
                connection.executemany(_INSERT_DECISION, rows)
        except sqlite3.IntegrityError as error:
            raise ValueError(f"a decision id and placement is already stored: {error}") from None
        self._committed()

    def get(self, decision_id: str) -> builtins.list[DecisionRecord]:
        """See `DecisionLog.get`; records in the order they were stored."""
        rows = self._read(
            f"SELECT {DECISION_COLUMNS} FROM decisions WHERE decision_id = ? ORDER BY rowid",
            (decision_id,),
        )
        return [decision_from_row(row) for row in rows]

    def outcomes(self, decision_id: str) -> builtins.list[Outcome]:
        """See `DecisionLog.outcomes`."""
        rows = self._read(
            f"SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE decision_id = ? ORDER BY at, message_id",
            (decision_id,),
        )
        return [outcome_from_row(row) for row in rows]

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        """See `DecisionLog.record_outcomes`: `INSERT OR IGNORE` keyed by message id."""
        rows = [outcome_fields(item) for item in outcomes]
        if not rows:
            return 0
        with self._transaction() as connection:
            before = connection.total_changes
            connection.executemany(_INSERT_OUTCOME, rows)
            added = connection.total_changes - before
        self._committed()
        return added

    def shown_counts(
        self,
        *,
        profile_id: str | None,
        subjects: Collection[str],
        content_ids: Collection[str],
        since: str,
    ) -> dict[str, int]:
        """See `DecisionLog.shown_counts`: index lookups on (profile or subject, content, at),
        a decision matched both ways counted once."""
        contents = builtins.list(dict.fromkeys(content_ids))
        people = builtins.list(dict.fromkeys(subjects))
        if not contents or (profile_id is None and not people):
            return {}
        content_marks = ",".join("?" * len(contents))
        branches: builtins.list[str] = []
        values: builtins.list[Any] = []
        if profile_id is not None:
            branches.append(
                "SELECT rowid FROM decisions "
                f"WHERE profile_id = ? AND content_id IN ({content_marks}) AND at >= ?"
            )
            values += [profile_id, *contents, since]
        if people:
            branches.append(
                f"SELECT rowid FROM decisions WHERE subject IN ({','.join('?' * len(people))}) "
                f"AND content_id IN ({content_marks}) AND at >= ?"
            )
            values += [*people, *contents, since]
        sql = (
            "SELECT content_id, COUNT(*) FROM decisions "
            f"WHERE rowid IN ({' UNION '.join(branches)}) GROUP BY content_id"
        )
        return {str(content): int(count) for content, count in self._read(sql, values)}

    def report(self, placement: str, *, since: str, until: str) -> builtins.list[ContentReport]:
        """See `DecisionLog.report`: one query over the placement's window of decisions."""
        rows = self._read(_REPORT, {"placement": placement, "since": since, "until": until})
        # (content_id, decisions, impressions, clicks, conversions, value): the field order.
        return [ContentReport(*row) for row in rows]

    def for_person(
        self, *, profile_ids: Collection[str], subjects: Collection[str]
    ) -> tuple[builtins.list[DecisionRecord], builtins.list[Outcome]]:
        """See `DecisionLog.for_person`: one snapshot, so decisions and outcomes agree."""
        person = (_json_list(profile_ids), _json_list(subjects))
        with self._snapshot() as db:
            decisions = db.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE rowid IN ({_PERSON_DECISIONS}) "
                "ORDER BY at, rowid",
                person,
            ).fetchall()
            outcomes = db.execute(
                f"SELECT {OUTCOME_COLUMNS} FROM outcomes "
                f"WHERE message_id IN ({_PERSON_OUTCOMES}) ORDER BY at, message_id",
                person,
            ).fetchall()
        return [decision_from_row(row) for row in decisions], [
            outcome_from_row(row) for row in outcomes
        ]

    def erase(self, *, profile_ids: Collection[str], subjects: Collection[str]) -> ErasedDecisions:
        """See `DecisionLog.erase`: outcomes first (they are found through the decisions),
        then decisions, in one transaction. Erasing again finds nothing and removes nothing."""
        person = (_json_list(profile_ids), _json_list(subjects))
        with self._transaction() as connection:
            outcomes = connection.execute(
                f"DELETE FROM outcomes WHERE message_id IN ({_PERSON_OUTCOMES})", person
            ).rowcount
            decisions = connection.execute(
                f"DELETE FROM decisions WHERE rowid IN ({_PERSON_DECISIONS})", person
            ).rowcount
        self._committed()
        logger.info("erased %d decision records and %d outcomes", decisions, outcomes)
        return ErasedDecisions(decisions=decisions, outcomes=outcomes)

    def list(
        self, *, placement: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[DecisionRecord]:
        """See `DecisionLog.list`: newest first by (time, storage order); the cursor is the
        last record's place, so records stored meanwhile never shift a page."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        conditions: builtins.list[str] = []
        values: builtins.list[Any] = []
        if placement is not None:
            conditions.append("placement = ?")
            values.append(placement)
        if cursor is not None:
            at, rowid = decode_cursor(cursor)
            # `at <= ?` bounds the index range; the rest skips what the last page returned.
            conditions.append("at <= ? AND (at < ? OR rowid < ?)")
            values += [at, at, rowid]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._read(
            f"SELECT {DECISION_COLUMNS}, rowid FROM decisions{where} "
            "ORDER BY at DESC, rowid DESC LIMIT ?",
            (*values, limit + 1),
        )
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:  # after the decision's columns, its storage order
            next_cursor = encode_cursor(page[-1][9], page[-1][DECISION_WIDTH])
        return Page(items=[decision_from_row(row) for row in page], next_cursor=next_cursor)

    def count(self) -> int:
        """See `DecisionLog.count`."""
        return int(self._read("SELECT COUNT(*) FROM decisions")[0][0])

    def _committed(self) -> None:
        self._commits += 1
        if self._commits >= _CHECKPOINT_COMMITS:
            self._wake.set()

    def scrub(self) -> builtins.list[Leftover]:
        """See `DecisionLog.scrub`: erased rows were zeroed in their pages (secure delete);
        the write-ahead log, which still has their old pages, is truncated."""
        return checkpoint_truncate(self.path, store="decision_log", timeout=self._timeout)

    def close(self) -> None:
        """Stop the checkpointer, then close every connection this log opened (any thread)."""
        self._closed = True
        if self._checkpointer is not None:
            self._wake.set()
            self._checkpointer.join()
        with self._write_lock:
            with self._connections_lock:
                connections, self._connections = self._connections, []
            for connection in connections:
                connection.close()
