"""The server timer store: one PostgreSQL table shared by every process of the workspace.

A claim locks the due rows it takes with `FOR UPDATE SKIP LOCKED`, so concurrent claims
(threads, workers on other machines) each take different timers without waiting on one
another. `ready_at` is when a pending timer may next be claimed (its due time, or its
lease's end while someone holds it): one partial index on it makes `claim_due` and
`next_due` a range scan over pending timers only. Times are `timestamptz`, written from the
workspace clock (never the server's `now()`), to the millisecond.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from touchpoint.core.clock import Clock
from touchpoint.core.leftovers import Leftover
from touchpoint.core.postgres import Migration, Postgres
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
Connection = psycopg.Connection[tuple[Any, ...]]

MIGRATIONS: list[Migration] = [
    Migration(
        "timers",
        1,
        """
CREATE TABLE timers (
    key text PRIMARY KEY, kind text NOT NULL, due_at timestamptz NOT NULL,
    payload text NOT NULL, profile_id text, attempts integer NOT NULL DEFAULT 0,
    state text NOT NULL, lease_owner text, lease_until timestamptz,
    ready_at timestamptz NOT NULL, scheduled_at timestamptz NOT NULL,
    finished_at timestamptz, last_error text);
CREATE INDEX timers_ready ON timers (ready_at, key) WHERE state = 'pending';
CREATE INDEX timers_finished ON timers (finished_at) WHERE state IN ('fired', 'cancelled');
CREATE INDEX timers_profile ON timers (profile_id) WHERE profile_id IS NOT NULL;
""",
    )
]
_COLUMNS = (
    "key, kind, due_at, payload, profile_id, attempts, state, lease_owner, lease_until, "
    "scheduled_at, finished_at, last_error"
)


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def timer_from_row(row: Sequence[Any]) -> Timer:
    """A timer from the columns `_COLUMNS`."""
    return Timer(
        key=row[0],
        kind=row[1],
        due_at=row[2].astimezone(UTC),
        payload=decode_payload(row[3]),
        profile_id=row[4],
        attempts=int(row[5]),
        state=row[6],
        lease_owner=row[7],
        lease_until=_utc(row[8]),
        scheduled_at=_utc(row[9]),
        finished_at=_utc(row[10]),
        last_error=row[11],
    )


def _storable(value: str) -> bool:
    """Whether a key or owner can name a stored timer (none holds NUL: `schedule` refuses
    it, and PostgreSQL text cannot hold it)."""
    return "\x00" not in value


class PostgresTimerStore(TimerStore):
    """Timers in PostgreSQL, safe across threads and processes. `close` leaves the pool
    open: it belongs to the process's `Postgres` service. A lost server or connection
    surfaces as `Unavailable` (each write is retried once on a fresh connection)."""

    def __init__(
        self, postgres: Postgres, *, clock: Clock, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._postgres = postgres
        self._clock = clock
        self.max_attempts = max_attempts
        postgres.ensure(MIGRATIONS)

    def _now(self) -> datetime:
        return to_millisecond(self._clock.now())

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
        due = to_millisecond(due_at)
        values = (key, kind, due, encode_payload(payload), profile_id, due, self._now())

        def insert(connection: Connection) -> Timer:
            connection.execute(
                "INSERT INTO timers (key, kind, due_at, payload, profile_id, state, ready_at, "
                "scheduled_at) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s) "
                "ON CONFLICT (key) DO NOTHING",
                values,
            )
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM timers WHERE key = %s", (key,)
            ).fetchone()
            assert row is not None
            return timer_from_row(row)

        return self._postgres.run(STORE, insert)

    def cancel(self, key: str) -> bool:
        """See `TimerStore.cancel`."""
        if not _storable(key):
            return False
        now = self._now()

        def update(connection: Connection) -> int:
            return connection.execute(
                "UPDATE timers SET state = 'cancelled', finished_at = %s, lease_owner = NULL, "
                "lease_until = NULL WHERE key = %s AND state IN ('pending', 'failed')",
                (now, key),
            ).rowcount

        return self._postgres.run(STORE, update) > 0

    def claim_due(self, owner: str, lease_seconds: float, limit: int) -> builtins.list[Timer]:
        """See `TimerStore.claim_due`: the due rows are locked `FOR UPDATE SKIP LOCKED`, so
        a concurrent claim skips them instead of waiting or taking them too."""
        check_claim(owner, lease_seconds, limit)
        now = self._now()
        until = to_millisecond(now + timedelta(seconds=lease_seconds))

        def claim_rows(connection: Connection) -> tuple[builtins.list[Timer], int]:
            rows = connection.execute(
                "SELECT key, attempts FROM timers WHERE state = 'pending' AND ready_at <= %s "
                "ORDER BY ready_at, key LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, limit),
            ).fetchall()
            claim, exhausted = split_exhausted(
                [(str(row[0]), int(row[1])) for row in rows], self.max_attempts
            )
            for key, attempts in rows:
                if key in exhausted:
                    connection.execute(
                        "UPDATE timers SET state = 'failed', finished_at = %s, "
                        "lease_owner = NULL, lease_until = NULL, last_error = %s WHERE key = %s",
                        (now, EXHAUSTED_ERROR.format(attempts=attempts), key),
                    )
            if not claim:
                return [], len(exhausted)
            claimed = connection.execute(
                "UPDATE timers SET lease_owner = %s, lease_until = %s, ready_at = %s, "
                f"attempts = attempts + 1 WHERE key = ANY(%s) RETURNING {_COLUMNS}",
                (owner, until, until, claim),
            ).fetchall()
            timers = sorted((timer_from_row(row) for row in claimed), key=_due_order)
            return timers, len(exhausted)

        timers, exhausted = self._postgres.run(STORE, claim_rows)
        if exhausted:
            logger.warning("%d timers failed: their attempts ran out", exhausted)
        return timers

    def complete(self, key: str, owner: str) -> bool:
        """See `TimerStore.complete`."""
        if not (_storable(key) and _storable(owner)):
            return False
        now = self._now()

        def update(connection: Connection) -> int:
            return connection.execute(
                "UPDATE timers SET state = 'fired', finished_at = %s, lease_owner = NULL, "
                "lease_until = NULL WHERE key = %s AND state = 'pending' AND lease_owner = %s",
                (now, key, owner),
            ).rowcount

        return self._postgres.run(STORE, update) > 0

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
        retry = to_millisecond(retry_at)
        if not (_storable(key) and _storable(owner)):
            return False
        now = self._now()
        message = error_text(error)

        def update(connection: Connection) -> bool:
            row = connection.execute(
                "SELECT attempts FROM timers WHERE key = %s AND state = 'pending' "
                "AND lease_owner = %s FOR UPDATE",
                (key, owner),
            ).fetchone()
            if row is None:
                return False
            attempts = int(row[0])
            if attempt_failed and attempts >= self.max_attempts:
                connection.execute(
                    "UPDATE timers SET state = 'failed', finished_at = %s, lease_owner = NULL, "
                    "lease_until = NULL, last_error = %s WHERE key = %s",
                    (now, message, key),
                )
            else:
                connection.execute(
                    "UPDATE timers SET due_at = %s, ready_at = %s, lease_owner = NULL, "
                    "lease_until = NULL, attempts = %s, last_error = %s WHERE key = %s",
                    (
                        retry,
                        retry,
                        attempts if attempt_failed else max(attempts - 1, 0),
                        message,
                        key,
                    ),
                )
            return True

        return self._postgres.run(STORE, update)

    def next_due(self) -> datetime | None:
        """See `TimerStore.next_due`."""
        with self._postgres.connection(STORE) as connection:
            row = connection.execute(
                "SELECT ready_at FROM timers WHERE state = 'pending' ORDER BY ready_at LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        ready_at = row[0]
        assert isinstance(ready_at, datetime)
        return ready_at.astimezone(UTC)

    def get(self, key: str) -> Timer | None:
        """See `TimerStore.get`."""
        if not _storable(key):
            return None
        with self._postgres.connection(STORE) as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM timers WHERE key = %s", (key,)
            ).fetchone()
        return None if row is None else timer_from_row(row)

    def purge(self, done_before: datetime) -> int:
        """See `TimerStore.purge`."""
        before = to_millisecond(done_before)

        def delete(connection: Connection) -> int:
            return connection.execute(
                "DELETE FROM timers WHERE state IN ('fired', 'cancelled') AND finished_at < %s",
                (before,),
            ).rowcount

        return int(self._postgres.run(STORE, delete))

    def erase_profiles(self, profile_ids: Collection[str]) -> int:
        """See `TimerStore.erase_profiles`: one transaction."""
        ids = sorted({str(profile_id) for profile_id in profile_ids if _storable(profile_id)})
        if not ids:
            return 0

        def delete(connection: Connection) -> int:
            return connection.execute(
                "DELETE FROM timers WHERE profile_id = ANY(%s)", (ids,)
            ).rowcount

        erased = int(self._postgres.run(STORE, delete))
        logger.info("erased %d timers", erased)
        return erased

    def scrub(self) -> builtins.list[Leftover]:
        """See `TimerStore.scrub`: the timers table is vacuumed."""
        return self._postgres.vacuum(STORE, ("timers",), name="timer_store")

    def close(self) -> None:
        """Nothing to release: the connection pool belongs to the `Postgres` service."""


def _due_order(timer: Timer) -> tuple[datetime, str]:
    return timer.due_at, timer.key
