"""The embedded timer store: one SQLite table in `timers.sqlite3`.

Every write (schedule, claim, complete, release, cancel) is one `BEGIN IMMEDIATE`
transaction, so processes sharing the file take turns and two owners never claim one timer.
Times are stored as canonical ISO text (`core.clock.isoformat`), which compares as it
sorts. `ready_at` is when a pending timer may next be claimed (its due time, or its lease's
end while someone holds it): one partial index on it makes `claim_due` and `next_due` a
range scan over pending timers only, however many finished keys are remembered.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from touchpoint.core.clock import Clock, isoformat, parse_timestamp
from touchpoint.core.leftovers import Leftover
from touchpoint.core.sqlite import checkpoint_truncate, open_connection, write_transaction
from touchpoint.core.sqlite_migrations import SqliteMigration
from touchpoint.timers.base import (
    DEFAULT_MAX_ATTEMPTS,
    EXHAUSTED_ERROR,
    Timer,
    TimerStore,
    check_claim,
    check_text,
    decode_payload,
    encode_payload,
    error_text,
    split_exhausted,
    to_millisecond,
)

logger = logging.getLogger(__name__)

STORE = "timer store"
_CHUNK = 500
_SCHEMA = """
CREATE TABLE IF NOT EXISTS timers (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, due_at TEXT NOT NULL, payload TEXT NOT NULL,
    profile_id TEXT, attempts INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,
    lease_owner TEXT, lease_until TEXT, ready_at TEXT NOT NULL, scheduled_at TEXT NOT NULL,
    finished_at TEXT, last_error TEXT);
CREATE INDEX IF NOT EXISTS timers_ready ON timers (ready_at, key) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS timers_finished ON timers (finished_at)
    WHERE state IN ('fired', 'cancelled');
CREATE INDEX IF NOT EXISTS timers_profile ON timers (profile_id) WHERE profile_id IS NOT NULL;
"""
MIGRATIONS = [SqliteMigration("timers", 1, _SCHEMA)]
_COLUMNS = (
    "key, kind, due_at, payload, profile_id, attempts, state, lease_owner, lease_until, "
    "scheduled_at, finished_at, last_error"
)


def _time(text: str | None) -> datetime | None:
    return None if text is None else parse_timestamp(text)


def timer_from_row(row: Sequence[Any]) -> Timer:
    """A timer from the columns `_COLUMNS` (times as ISO text)."""
    due_at = _time(row[2])
    assert due_at is not None
    return Timer(
        key=row[0],
        kind=row[1],
        due_at=due_at,
        payload=decode_payload(row[3]),
        profile_id=row[4],
        attempts=int(row[5]),
        state=row[6],
        lease_owner=row[7],
        lease_until=_time(row[8]),
        scheduled_at=_time(row[9]),
        finished_at=_time(row[10]),
        last_error=row[11],
    )


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqliteTimerStore(TimerStore):
    """Timers in one SQLite file (WAL, synchronous FULL: a scheduled or completed timer is
    on disk), safe across threads (one connection behind a lock) and across processes
    sharing the file (`BEGIN IMMEDIATE`)."""

    def __init__(
        self, path: Path, *, clock: Clock, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.path = Path(path)
        self.max_attempts = max_attempts
        self._clock = clock
        self._timeout = 10.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = open_connection(
            self.path, synchronous="full", timeout=self._timeout, migrations=MIGRATIONS
        )

    def _now(self) -> str:
        return isoformat(self._clock.now())

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._connection, self._lock, store=STORE)

    def _select(self, connection: sqlite3.Connection, key: str) -> Timer | None:
        row = connection.execute(f"SELECT {_COLUMNS} FROM timers WHERE key = ?", (key,)).fetchone()
        return None if row is None else timer_from_row(row)

    def schedule(
        self,
        key: str,
        kind: str,
        due_at: datetime,
        payload: dict[str, Any] | None = None,
        profile_id: str | None = None,
    ) -> Timer:
        """See `TimerStore.schedule`."""
        check_text(key, "key")
        check_text(kind, "kind")
        check_text(profile_id, "profile_id", optional=True)
        due = isoformat(to_millisecond(due_at))
        stored_payload = encode_payload(payload)
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO timers (key, kind, due_at, payload, profile_id, state, ready_at, "
                "scheduled_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (key, kind, due, stored_payload, profile_id, due, self._now()),
            )
            timer = self._select(connection, key)
        assert timer is not None
        return timer

    def cancel(self, key: str) -> bool:
        """See `TimerStore.cancel`."""
        with self._transaction() as connection:
            cancelled = connection.execute(
                "UPDATE timers SET state = 'cancelled', finished_at = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE key = ? AND state IN ('pending', 'failed')",
                (self._now(), key),
            ).rowcount
        return cancelled > 0

    def claim_due(self, owner: str, lease_seconds: float, limit: int) -> builtins.list[Timer]:
        """See `TimerStore.claim_due`: one `BEGIN IMMEDIATE` transaction, so a claim sees
        no timer another claim is taking."""
        check_claim(owner, lease_seconds, limit)
        moment = self._clock.now()
        now = isoformat(moment)
        until = isoformat(moment + timedelta(seconds=lease_seconds))
        with self._transaction() as connection:
            rows = connection.execute(
                "SELECT key, attempts FROM timers WHERE state = 'pending' AND ready_at <= ? "
                "ORDER BY ready_at, key LIMIT ?",
                (now, limit),
            ).fetchall()
            claim, exhausted = split_exhausted(
                [(str(row[0]), int(row[1])) for row in rows], self.max_attempts
            )
            for key, attempts in rows:
                if key in exhausted:
                    connection.execute(
                        "UPDATE timers SET state = 'failed', finished_at = ?, lease_owner = NULL, "
                        "lease_until = NULL, last_error = ? WHERE key = ?",
                        (now, EXHAUSTED_ERROR.format(attempts=attempts), key),
                    )
            claimed = []
            if claim:
                connection.execute(
                    "UPDATE timers SET lease_owner = ?, lease_until = ?, ready_at = ?, "
                    f"attempts = attempts + 1 WHERE key IN ({_marks(len(claim))})",
                    (owner, until, until, *claim),
                )
                claimed = connection.execute(
                    f"SELECT {_COLUMNS} FROM timers WHERE key IN ({_marks(len(claim))}) "
                    "ORDER BY due_at, key",
                    claim,
                ).fetchall()
        if exhausted:
            logger.warning("%d timers failed: their attempts ran out", len(exhausted))
        return [timer_from_row(row) for row in claimed]

    def complete(self, key: str, owner: str) -> bool:
        """See `TimerStore.complete`."""
        with self._transaction() as connection:
            done = connection.execute(
                "UPDATE timers SET state = 'fired', finished_at = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE key = ? AND state = 'pending' AND lease_owner = ?",
                (self._now(), key, owner),
            ).rowcount
        return done > 0

    def release(
        self,
        key: str,
        owner: str,
        retry_at: datetime,
        *,
        error: str | None = None,
        attempt_failed: bool = True,
    ) -> bool:
        """See `TimerStore.release`."""
        retry = isoformat(to_millisecond(retry_at))
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT attempts FROM timers WHERE key = ? AND state = 'pending' "
                "AND lease_owner = ?",
                (key, owner),
            ).fetchone()
            if row is None:
                return False
            attempts = int(row[0])
            if attempt_failed and attempts >= self.max_attempts:
                connection.execute(
                    "UPDATE timers SET state = 'failed', finished_at = ?, lease_owner = NULL, "
                    "lease_until = NULL, last_error = ? WHERE key = ?",
                    (self._now(), error_text(error), key),
                )
            else:
                connection.execute(
                    "UPDATE timers SET due_at = ?, ready_at = ?, lease_owner = NULL, "
                    "lease_until = NULL, attempts = ?, last_error = ? WHERE key = ?",
                    (
                        retry,
                        retry,
                        attempts if attempt_failed else max(attempts - 1, 0),
                        error_text(error),
                        key,
                    ),
                )
        return True

    def next_due(self) -> datetime | None:
        """See `TimerStore.next_due`."""
        with self._lock:
            row = self._connection.execute(
                "SELECT ready_at FROM timers WHERE state = 'pending' ORDER BY ready_at LIMIT 1"
            ).fetchone()
        return None if row is None else _time(row[0])

    def get(self, key: str) -> Timer | None:
        """See `TimerStore.get`."""
        with self._lock:
            return self._select(self._connection, key)

    def purge(self, done_before: datetime) -> int:
        """See `TimerStore.purge`."""
        before = isoformat(to_millisecond(done_before))
        with self._transaction() as connection:
            purged = connection.execute(
                "DELETE FROM timers WHERE state IN ('fired', 'cancelled') AND finished_at < ?",
                (before,),
            ).rowcount
        return int(purged)

    def erase_profiles(self, profile_ids: Collection[str]) -> int:
        """See `TimerStore.erase_profiles`: one transaction."""
        ids = sorted({str(profile_id) for profile_id in profile_ids})
        if not ids:
            return 0
        erased = 0
        with self._transaction() as connection:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                erased += connection.execute(
                    f"DELETE FROM timers WHERE profile_id IN ({_marks(len(chunk))})", chunk
                ).rowcount
        logger.info("erased %d timers", erased)
        return erased

    def scrub(self) -> builtins.list[Leftover]:
        """See `TimerStore.scrub`: erased rows were zeroed in their pages (secure delete);
        the write-ahead log, which still has their old pages, is truncated."""
        return checkpoint_truncate(self.path, store="timer_store", timeout=self._timeout)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()
