"""The server decision log: decisions and their outcomes in PostgreSQL, shared by every API
process and worker of the workspace.

`record` runs inside every decide request, so it is ONE round trip: a single multi-row
`INSERT` in autocommit mode (a statement is its own transaction, so the batch is stored
whole or not at all), measured faster than `unnest` arrays or a pipelined `executemany`.
Caps read `shown_counts`, one query over the (profile, content, at) and (subject,
content, at) indexes; reports aggregate in SQL over the (placement, at) index.

Timestamps stay ISO-8601 text, as in the SQLite log, and every compared text column is
`COLLATE "C"`, so comparisons and sort orders are byte order whatever the database's
locale (the same as SQLite's). `seq` (an identity column) stands for SQLite's rowid:
storage order, the tie-break of `list` and its cursor.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from touchpoint.core.errors import InvalidInput, Unavailable
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page
from touchpoint.core.postgres import Migration, Postgres, postgres_text
from touchpoint.decide.decision_log.base import (
    ContentReport,
    DecisionLog,
    DecisionRecord,
    ErasedDecisions,
    Outcome,
)
from touchpoint.decide.decision_log.rows import (
    DECISION_COLUMNS,
    DECISION_FIELDS,
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

T = TypeVar("T")
STORE = "decision log"
MAX_PAGE = 1000
_MAX_BIGINT = 2**63 - 1
Connection = psycopg.Connection[tuple[Any, ...]]

MIGRATIONS: list[Migration] = [
    Migration(
        "decisions",
        1,
        """
CREATE TABLE decisions (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    decision_id text COLLATE "C" NOT NULL, placement text COLLATE "C" NOT NULL,
    content_id text COLLATE "C", profile_id text COLLATE "C", subject text COLLATE "C" NOT NULL,
    policy text NOT NULL, definitions_version bigint NOT NULL, reason text NOT NULL,
    propensity double precision NOT NULL, at text COLLATE "C" NOT NULL, experiment text,
    arm text, context bytea NOT NULL, PRIMARY KEY (decision_id, placement));
CREATE INDEX decisions_profile ON decisions (profile_id, content_id, at)
    WHERE profile_id IS NOT NULL;
CREATE INDEX decisions_subject ON decisions (subject, content_id, at);
CREATE INDEX decisions_placement ON decisions (placement, at, seq);
CREATE INDEX decisions_at ON decisions (at, seq);
CREATE TABLE outcomes (
    message_id text COLLATE "C" PRIMARY KEY, decision_id text COLLATE "C" NOT NULL,
    placement text COLLATE "C", content_id text COLLATE "C", kind text NOT NULL,
    event text NOT NULL, profile_id text COLLATE "C", at text COLLATE "C" NOT NULL,
    value double precision);
CREATE INDEX outcomes_decision ON outcomes (decision_id, at);
CREATE INDEX outcomes_profile ON outcomes (profile_id) WHERE profile_id IS NOT NULL;
""",
    ),
    # The features a policy read to choose (JSON; `{}` for decisions made before).
    Migration(
        "decisions", 2, "ALTER TABLE decisions ADD COLUMN features bytea NOT NULL DEFAULT '\\x7b7d'"
    ),
]

_SUBJECT = DECISION_FIELDS.index("subject")
_DECISION_ROW = f"({', '.join(['%s'] * DECISION_WIDTH)})"
_OUTCOME_ROW = f"({', '.join(['%s'] * 9)})"
# A person: any of their profile ids (%(profiles)s) or subjects (%(subjects)s).
_PERSON = "(profile_id = ANY(%(profiles)s::text[]) OR subject = ANY(%(subjects)s::text[]))"
# Their outcomes: those of their decisions, and any recorded with one of their profile ids.
# A union of two index lookups (an OR across them would scan every outcome).
_PERSON_OUTCOMES = (
    "message_id IN (SELECT o.message_id FROM outcomes AS o JOIN decisions AS d "
    "ON o.decision_id = d.decision_id WHERE d.profile_id = ANY(%(profiles)s::text[]) "
    "OR d.subject = ANY(%(subjects)s::text[]) "
    "UNION ALL SELECT message_id FROM outcomes WHERE profile_id = ANY(%(profiles)s::text[]))"
)
# Each decision matched by profile or by subject (a bitmap OR of both indexes) counts once.
_SHOWN_COUNTS = (
    "SELECT content_id, COUNT(*) FROM decisions "
    "WHERE (profile_id = %s OR subject = ANY(%s::text[])) AND content_id = ANY(%s::text[]) "
    "AND at >= %s GROUP BY content_id"
)
# As in the SQLite log: per content id of the placement over [since, until), decisions, then
# distinct decisions with each outcome kind. An outcome counts for this placement when it
# names it, or names no placement and its decision has no other placement.
_REPORT = """
SELECT content_id, COUNT(*), COUNT(*) FILTER (WHERE viewed), COUNT(*) FILTER (WHERE clicked),
       COUNT(*) FILTER (WHERE converted), COALESCE(SUM(value), 0)::double precision
FROM (
    SELECT d.seq, d.content_id,
           bool_or(o.kind = 'view') AS viewed,
           bool_or(o.kind = 'click') AS clicked,
           bool_or(o.kind = 'conversion') AS converted,
           SUM(o.value) FILTER (WHERE o.kind = 'conversion') AS value
    FROM decisions AS d
    LEFT JOIN outcomes AS o ON o.decision_id = d.decision_id AND (
        o.placement = %(placement)s OR (o.placement IS NULL AND NOT EXISTS (
            SELECT 1 FROM decisions AS other
            WHERE other.decision_id = d.decision_id AND other.placement <> %(placement)s)))
    WHERE d.placement = %(placement)s AND d.at >= %(since)s AND d.at < %(until)s
    GROUP BY d.seq, d.content_id
) AS per_decision
GROUP BY content_id
ORDER BY COUNT(*) DESC, content_id NULLS FIRST
"""


def _texts(values: Collection[str]) -> builtins.list[str]:
    return [postgres_text(value) for value in dict.fromkeys(values)]


def _decision_row(record: DecisionRecord) -> builtins.list[Any]:
    row: builtins.list[Any] = [*decision_fields(record), *json_columns(record)]
    row[_SUBJECT] = postgres_text(row[_SUBJECT])
    return row


def _outcome_row(outcome: Outcome) -> builtins.list[Any]:
    return [
        postgres_text(value) if isinstance(value, str) else value
        for value in outcome_fields(outcome)
    ]


class PostgresDecisionLog(DecisionLog):
    """Decisions and outcomes in PostgreSQL: the server-mode backend.

    Thread-safe (each call borrows a pooled connection). `close` leaves the pool open: it
    belongs to the process's `Postgres` service, shared by every store. A lost server or
    connection surfaces as `Unavailable`; calls whose repetition changes nothing retry once
    on a fresh connection first.
    """

    def __init__(self, postgres: Postgres) -> None:
        self._postgres = postgres
        postgres.ensure(MIGRATIONS)

    def _retried(self, work: Callable[[Connection], T]) -> T:
        """`work` on an autocommit connection, retried once if the connection failed (safe
        for reads and for idempotent single statements)."""
        try:
            with self._postgres.connection(STORE) as connection:
                return work(connection)
        except Unavailable:
            logger.warning("the %s lost its PostgreSQL connection; retrying", STORE)
        with self._postgres.connection(STORE) as connection:
            return work(connection)

    def _read(self, sql: str, values: Any = ()) -> builtins.list[tuple[Any, ...]]:
        return self._retried(lambda connection: connection.execute(sql, values).fetchall())

    def record(self, decisions: Sequence[DecisionRecord]) -> None:
        """See `DecisionLog.record`: one multi-row `INSERT`, one round trip.

        Retried once when the connection failed. Should the first attempt have committed
        before the failure reached us, the retry meets its own rows: decision ids are never
        reused, so finding exactly these records stored means the first attempt succeeded.
        """
        rows = [_decision_row(record) for record in decisions]
        if not rows:
            return
        sql = f"INSERT INTO decisions ({DECISION_COLUMNS}) VALUES " + ", ".join(
            [_DECISION_ROW] * len(rows)
        )
        values = [value for row in rows for value in row]
        for attempt in (1, 2):
            try:
                with self._postgres.connection(STORE) as connection:
                    connection.execute(sql, values, binary=True)
                return
            except pg_errors.UniqueViolation as error:
                if attempt == 2 and self._already_stored(decisions):
                    return
                raise ValueError(
                    f"a decision id and placement is already stored: {error}"
                ) from None
            except Unavailable:
                if attempt == 2:
                    raise
                logger.warning("the %s lost its PostgreSQL connection; retrying", STORE)

    def _already_stored(self, decisions: Sequence[DecisionRecord]) -> bool:
        """Whether the batch's (decision id, placement) keys are all stored, and no others of
        its decision ids: the trace of an earlier attempt of this very batch."""
        keys = {(record.decision_id, record.placement) for record in decisions}
        ids = builtins.list(dict.fromkeys(postgres_text(key[0]) for key in keys))
        rows = self._read(
            "SELECT decision_id, placement FROM decisions WHERE decision_id = ANY(%s::text[])",
            (ids,),
        )
        return len(keys) == len(decisions) and {(row[0], row[1]) for row in rows} == keys

    def get(self, decision_id: str) -> builtins.list[DecisionRecord]:
        """See `DecisionLog.get`; records in the order they were stored."""
        rows = self._read(
            f"SELECT {DECISION_COLUMNS} FROM decisions WHERE decision_id = %s ORDER BY seq",
            (postgres_text(decision_id),),
        )
        return [decision_from_row(row) for row in rows]

    def outcomes(self, decision_id: str) -> builtins.list[Outcome]:
        """See `DecisionLog.outcomes`."""
        rows = self._read(
            f"SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE decision_id = %s "
            "ORDER BY at, message_id",
            (postgres_text(decision_id),),
        )
        return [outcome_from_row(row) for row in rows]

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        """See `DecisionLog.record_outcomes`: one `INSERT … ON CONFLICT DO NOTHING` keyed by
        message id (so a retry after a lost connection is harmless)."""
        rows = [_outcome_row(item) for item in outcomes]
        if not rows:
            return 0
        sql = (
            f"INSERT INTO outcomes ({OUTCOME_COLUMNS}) VALUES "
            + ", ".join([_OUTCOME_ROW] * len(rows))
            + " ON CONFLICT (message_id) DO NOTHING"
        )
        values = [value for row in rows for value in row]
        return self._retried(lambda connection: connection.execute(sql, values).rowcount)

    def shown_counts(
        self,
        *,
        profile_id: str | None,
        subjects: Collection[str],
        content_ids: Collection[str],
        since: str,
    ) -> dict[str, int]:
        """See `DecisionLog.shown_counts`: one query, index lookups on (profile or subject,
        content, at), a decision matched both ways counted once."""
        contents = _texts(content_ids)
        people = _texts(subjects)
        if not contents or (profile_id is None and not people):
            return {}
        profile = None if profile_id is None else postgres_text(profile_id)
        rows = self._read(_SHOWN_COUNTS, (profile, people, contents, since))
        return {str(content): int(count) for content, count in rows}

    def report(self, placement: str, *, since: str, until: str) -> builtins.list[ContentReport]:
        """See `DecisionLog.report`: one aggregate query over the placement's window."""
        values = {"placement": postgres_text(placement), "since": since, "until": until}
        rows = self._read(_REPORT, values)
        # (content_id, decisions, impressions, clicks, conversions, value): the field order.
        return [ContentReport(*row) for row in rows]

    def for_person(
        self, *, profile_ids: Collection[str], subjects: Collection[str]
    ) -> tuple[builtins.list[DecisionRecord], builtins.list[Outcome]]:
        """See `DecisionLog.for_person`: one repeatable-read snapshot, so decisions and
        outcomes agree."""
        person = {"profiles": _texts(profile_ids), "subjects": _texts(subjects)}
        if not person["profiles"] and not person["subjects"]:
            return [], []

        def read(connection: Connection) -> tuple[builtins.list[Any], builtins.list[Any]]:
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            decisions = connection.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE {_PERSON} ORDER BY at, seq",
                person,
            ).fetchall()
            outcomes = connection.execute(
                f"SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE {_PERSON_OUTCOMES} "
                "ORDER BY at, message_id",
                person,
            ).fetchall()
            return decisions, outcomes

        decisions, outcomes = self._postgres.run(STORE, read)
        return [decision_from_row(row) for row in decisions], [
            outcome_from_row(row) for row in outcomes
        ]

    def erase(self, *, profile_ids: Collection[str], subjects: Collection[str]) -> ErasedDecisions:
        """See `DecisionLog.erase`: outcomes first (they are found through the decisions),
        then decisions, in one transaction. Erasing again finds nothing and removes nothing."""
        person = {"profiles": _texts(profile_ids), "subjects": _texts(subjects)}
        if not person["profiles"] and not person["subjects"]:
            return ErasedDecisions(decisions=0, outcomes=0)

        def delete(connection: Connection) -> ErasedDecisions:
            outcomes = connection.execute(
                f"DELETE FROM outcomes WHERE {_PERSON_OUTCOMES}", person
            ).rowcount
            decisions = connection.execute(
                f"DELETE FROM decisions WHERE {_PERSON}", person
            ).rowcount
            return ErasedDecisions(decisions=decisions, outcomes=outcomes)

        erased = self._postgres.run(STORE, delete)
        logger.info("erased %d decision records and %d outcomes", erased.decisions, erased.outcomes)
        return erased

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
            conditions.append("placement = %s")
            values.append(postgres_text(placement))
        if cursor is not None:
            at, seq = decode_cursor(cursor)
            conditions.append("(at, seq) < (%s, %s)")
            values += [postgres_text(at), seq]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._read(
            f"SELECT {DECISION_COLUMNS}, seq FROM decisions{where} "
            "ORDER BY at DESC, seq DESC LIMIT %s",
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

    def scrub(self) -> builtins.list[Leftover]:
        """See `DecisionLog.scrub`: the decision and outcome tables are vacuumed."""
        return self._postgres.vacuum(STORE, ("decisions", "outcomes"), name="decision_log")

    def close(self) -> None:
        """Nothing to release: the connection pool belongs to the `Postgres` service."""
