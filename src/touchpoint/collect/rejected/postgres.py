"""The server rejected-events store: refused events in one PostgreSQL table, shared by every
API process of the workspace.

The same semantics as `SqliteRejectedStore`: errors and the event are kept as the JSON
text the collector made of them, the identity sequence never reuses an id (so a cursor
never repeats an event), a retried batch finds its items by the unique
(source, message id, reason) index instead of adding them again, identical events
without a message id are counted on one row (unique on source, reason and content
hash), and a source holds at most `max_per_source` rows (checked under a transaction
lock per source, so the cap holds whatever the number of API processes).

Erasure by identity does not scan events: each row carries, in `identities`, a digest of
every value `names_any` would match it by (its top-level ids and trait values, in each
form an identity kind may have normalized them to), computed when the event is added;
`erase_identities` is then one `&&` lookup on a GIN index. Digests rather than values
keep the index entries small (trait values may be long) and add no plain copy of them.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg

from touchpoint.collect.rejected.base import (
    MAX_PAGE,
    Distinct,
    NewRejected,
    RejectedEvent,
    RejectedStore,
    distinct,
    identity_forms,
    rejected_from_row,
)
from touchpoint.core.errors import InvalidInput, Unavailable
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page, parse_id_cursor
from touchpoint.core.postgres import Migration, Postgres, postgres_text

logger = logging.getLogger(__name__)

T = TypeVar("T")
STORE = "rejected store"
_MAX_BIGINT = 2**63 - 1
Connection = psycopg.Connection[tuple[Any, ...]]

MIGRATIONS: list[Migration] = [
    Migration(
        "rejected",
        1,
        """
CREATE TABLE rejected (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, source text NOT NULL, message_id text,
    received_at text NOT NULL, reason text NOT NULL, errors text NOT NULL, event text NOT NULL,
    identities bytea[] NOT NULL);
CREATE UNIQUE INDEX rejected_once
    ON rejected (source, message_id, reason) WHERE message_id IS NOT NULL;
CREATE INDEX rejected_by_reason ON rejected (reason, id);
CREATE INDEX rejected_by_source ON rejected (source, id);
CREATE INDEX rejected_by_message_id ON rejected (message_id);
CREATE INDEX rejected_by_identity ON rejected USING gin (identities);
""",
    ),
    Migration(
        "rejected",
        2,
        """
ALTER TABLE rejected ADD COLUMN payload_hash bytea,
    ADD COLUMN occurrences bigint NOT NULL DEFAULT 1, ADD COLUMN last_seen text;
UPDATE rejected SET last_seen = received_at;
ALTER TABLE rejected ALTER COLUMN last_seen SET NOT NULL;
CREATE UNIQUE INDEX rejected_same ON rejected (source, reason, payload_hash)
    WHERE message_id IS NULL;
CREATE INDEX rejected_by_last_seen ON rejected (last_seen);
""",
    ),
]
_COLUMNS = "id, source, message_id, received_at, reason, errors, event, occurrences, last_seen"
# Every add of a source holds this transaction lock on it, so its count and its new rows are
# decided by one process at a time (the cap holds across API processes).
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('touchpoint.rejected:' || %s, 0))"
# Already stored by message id: (position in the lookup, id).
_NAMED = """
SELECT k.i, r.id FROM rejected r JOIN unnest(%s::text[], %s::text[], %s::text[])
    WITH ORDINALITY AS k(source, message_id, reason, i)
    ON r.source = k.source AND r.message_id = k.message_id AND r.reason = k.reason
"""
# Already stored by content: counted there; (position in the lookup, id).
_SAME = """
UPDATE rejected r SET occurrences = r.occurrences + k.n, last_seen = GREATEST(r.last_seen, k.seen)
FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::bigint[], %s::text[])
    WITH ORDINALITY AS k(source, reason, payload_hash, n, seen, i)
WHERE r.source = k.source AND r.reason = k.reason AND r.payload_hash = k.payload_hash
    AND r.message_id IS NULL
RETURNING k.i, r.id
"""
_INSERT = """
INSERT INTO rejected (source, message_id, received_at, reason, errors, event, identities,
    payload_hash, occurrences, last_seen)
VALUES (%(source)s, %(message_id)s, %(received_at)s, %(reason)s, %(errors)s, %(event)s,
    %(identities)s::bytea[], %(payload_hash)s, %(occurrences)s, %(last_seen)s)
RETURNING id
"""


def identity_digest(value: str) -> bytes:
    """The digest `identities` holds for one identity value (16 bytes of BLAKE2b)."""
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def identity_digests(event: Any) -> list[bytes]:
    """Digests of every value a stored event can be erased by: the forms (as text, trimmed,
    lower-cased) of its `userId`, `anonymousId`, `previousId` and of each value of its
    `traits` and `context.traits`, exactly the values `rejected.names_any` matches."""
    forms = identity_forms(event)
    forms.discard("")
    return sorted(identity_digest(form) for form in forms)


def _where(
    reason: str | None, source: str | None, *, before: int | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause (with a leading space, or empty) and its parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    for condition, value in (
        ("reason = %s", None if reason is None else postgres_text(reason)),
        ("source = %s", None if source is None else postgres_text(source)),
        ("id < %s", before),
    ):
        if value is not None:
            conditions.append(condition)
            params.append(value)
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


def _row(entry: Distinct) -> dict[str, Any]:
    item = entry.item
    return {
        "source": postgres_text(item.source),
        "message_id": None if item.message_id is None else postgres_text(item.message_id),
        "received_at": postgres_text(item.received_at),
        "reason": postgres_text(item.reason),
        "errors": json.dumps(item.errors, ensure_ascii=False, default=str),
        "event": json.dumps(item.event, ensure_ascii=False, default=str),
        "identities": identity_digests(item.event),
        "payload_hash": entry.digest,
        "occurrences": 1 if item.message_id is not None else entry.occurrences,
        "last_seen": postgres_text(entry.last_seen),
    }


def _columns(rows: Sequence[dict[str, Any]], *names: str) -> list[list[Any]]:
    """The values of `names` of every row, one list per name (for `unnest`)."""
    return [[row[name] for row in rows] for name in names]


class PostgresRejectedStore(RejectedStore):
    """Rejected events in PostgreSQL, safe across threads and processes. `close` leaves the
    pool open: it belongs to the process's `Postgres` service. A lost server or connection
    surfaces as `Unavailable`, after one retry on a fresh connection."""

    def __init__(self, postgres: Postgres, *, max_per_source: int | None = None) -> None:
        self._postgres = postgres
        self.max_per_source = max_per_source
        postgres.ensure(MIGRATIONS)

    def add(self, items: Sequence[NewRejected]) -> list[int | None]:
        """See `RejectedStore.add`: one transaction (the batch is stored whole or not) under
        a lock per source, in four statements whatever the batch's size: find the rows
        stored by message id, count those stored by content, count each source's rows, and
        insert the new ones there is room for (pipelined)."""
        entries = distinct(items)
        if not entries:
            return []
        rows = [_row(entry) for entry in entries]

        def insert(connection: Connection) -> list[int | None]:
            for source in sorted({row["source"] for row in rows}):
                connection.execute(_LOCK, (f"{self._postgres.schema}:{source}",))
            found = self._stored(connection, rows)
            room = self._room(connection, rows)
            new = [index for index in range(len(rows)) if index not in found]
            placed: list[int] = []
            for index in new:
                source = rows[index]["source"]
                if room.get(source, 1) > 0:
                    placed.append(index)
                    if source in room:
                        room[source] -= 1
            if placed:
                cursor = connection.cursor()
                cursor.executemany(_INSERT, [rows[index] for index in placed], returning=True)
                for index in placed:
                    found[index] = int(_first(cursor.fetchone()))
                    cursor.nextset()
            ids: list[int | None] = [None] * len(items)
            for index, entry in enumerate(entries):
                for position in entry.positions:
                    ids[position] = found.get(index)
            return ids

        return self._postgres.run(STORE, insert)

    def _stored(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> dict[int, int]:
        """{index in `rows`: id} of the rows already stored, the content ones counted."""
        found: dict[int, int] = {}
        named = [index for index, row in enumerate(rows) if row["message_id"] is not None]
        unnamed = [index for index, row in enumerate(rows) if row["message_id"] is None]
        for indexes, sql, names in (
            (named, _NAMED, ("source", "message_id", "reason")),
            (unnamed, _SAME, ("source", "reason", "payload_hash", "occurrences", "last_seen")),
        ):
            if indexes:
                params = _columns([rows[index] for index in indexes], *names)
                for position, item_id in connection.execute(sql, params).fetchall():
                    found[indexes[int(position) - 1]] = int(item_id)
        return found

    def _room(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        """{source: rows it may still add}; empty when there is no cap."""
        if self.max_per_source is None:
            return {}
        sources = sorted({row["source"] for row in rows})
        room = dict.fromkeys(sources, self.max_per_source)
        sql = "SELECT source, COUNT(*) FROM rejected WHERE source = ANY(%s) GROUP BY source"
        for source, count in connection.execute(sql, (sources,)).fetchall():
            room[source] -= int(count)
        return room

    def purge(self, seen_before: str) -> int:
        """See `RejectedStore.purge`: one `DELETE` through the `last_seen` index."""
        sql = "DELETE FROM rejected WHERE last_seen < %s"
        cutoff = postgres_text(seen_before)
        return int(self._retried(lambda db: db.execute(sql, (cutoff,)).rowcount))

    def list(
        self,
        *,
        reason: str | None = None,
        source: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[RejectedEvent]:
        """See `RejectedStore.list`. The cursor is the id of the last event returned."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", details={"field": "limit"})
        where, params = _where(reason, source, before=parse_id_cursor(cursor))
        sql = f"SELECT {_COLUMNS} FROM rejected{where} ORDER BY id DESC LIMIT %s"
        rows = self._retried(lambda db: db.execute(sql, (*params, limit + 1)).fetchall())
        items = [rejected_from_row(row) for row in rows[:limit]]
        next_cursor = str(items[-1].id) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    def count(self, *, reason: str | None = None, source: str | None = None) -> int:
        """See `RejectedStore.count`."""
        where, params = _where(reason, source)
        sql = f"SELECT COUNT(*) FROM rejected{where}"
        return int(self._retried(lambda db: _first(db.execute(sql, params).fetchone())))

    def counts_by_reason(self) -> dict[str, int]:
        """See `RejectedStore.counts_by_reason`."""
        sql = "SELECT reason, COUNT(*) FROM rejected GROUP BY reason ORDER BY reason"
        rows = self._retried(lambda db: db.execute(sql).fetchall())
        return {str(reason): int(count) for reason, count in rows}

    def remove(self, ids: Sequence[int]) -> int:
        """See `RejectedStore.remove`: one `DELETE`."""
        wanted = [item for item in dict.fromkeys(ids) if 0 < item <= _MAX_BIGINT]
        return self._delete("id = ANY(%s::bigint[])", wanted)

    def erase_identities(self, values: Sequence[str]) -> int:
        """See `RejectedStore.erase_identities`: one `DELETE` through the GIN index on the
        rows' identity digests (see `identity_digests`)."""
        wanted = sorted({identity_digest(value) for value in values if value})
        return self._delete("identities && %s::bytea[]", wanted)

    def erase_message_ids(self, message_ids: Sequence[str]) -> int:
        """See `RejectedStore.erase_message_ids`: one `DELETE`."""
        wanted = [postgres_text(value) for value in dict.fromkeys(message_ids)]
        return self._delete("message_id = ANY(%s::text[])", wanted)

    def scrub(self) -> builtins.list[Leftover]:
        """See `RejectedStore.scrub`: the rejected table is vacuumed."""
        return self._postgres.vacuum(STORE, ("rejected",), name="rejected_store")

    def close(self) -> None:
        """Nothing to release: the connection pool belongs to the `Postgres` service."""

    def _delete(self, condition: str, values: Iterable[Any]) -> int:
        """`DELETE … WHERE condition` with `values` as its one array parameter; the count."""
        wanted = list(values)
        if not wanted:
            return 0
        sql = f"DELETE FROM rejected WHERE {condition}"
        return self._retried(lambda db: db.execute(sql, (wanted,)).rowcount)

    def _retried(self, work: Callable[[Connection], T]) -> T:
        """`work` on an autocommit connection (one statement: its own transaction), retried
        once if the connection failed; for reads and deletes, whose repetition is harmless."""
        try:
            with self._postgres.connection(STORE) as connection:
                return work(connection)
        except Unavailable:
            logger.warning("the %s lost its PostgreSQL connection; retrying", STORE)
        with self._postgres.connection(STORE) as connection:
            return work(connection)


def _first(row: tuple[Any, ...] | None) -> Any:
    return 0 if row is None else row[0]
