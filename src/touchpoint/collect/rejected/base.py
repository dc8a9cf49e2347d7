"""Rejected events: never silently dropped, kept with their reason for review and replay.

The collector stores every event it refuses (invalid, over the size limit, against
an enforced tracking plan) here, with the errors that explain why and the raw event
as received, so an operator can fix the plan or the client and replay them.

Anyone holding a public write key can make refusals, so what they cost is bounded:
identical refusals (same source, reason and event, no message id) share one row that
counts them (`occurrences`, first seen `received_at`, `last_seen`); each source keeps at
most `max_per_source` rows (beyond that a new refusal is counted by the caller, not
stored); and `purge` drops rows not seen within the retention window.
"""

from __future__ import annotations

import abc
import builtins
import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchpoint.core.errors import InvalidInput
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page, parse_id_cursor
from touchpoint.core.sqlite import checkpoint_truncate, open_connection, write_transaction
from touchpoint.profiles.pii import identifier_text

if TYPE_CHECKING:
    from touchpoint.core.config_stores import StoreConfig
    from touchpoint.core.postgres import Postgres

logger = logging.getLogger(__name__)

DEFAULT_REJECTED_FILE = "rejected.sqlite3"
MAX_PAGE = 1000
_CHUNK = 500


@dataclass(frozen=True)
class NewRejected:
    """A refused event to store: where it came from, why, and the event as received."""

    source: str
    message_id: str | None
    received_at: str
    reason: str
    errors: list[dict[str, Any]]
    event: Any


@dataclass(frozen=True)
class RejectedEvent:
    """A stored rejected event; `id` is assigned by the store and orders them by arrival.
    `received_at` is when it was first refused, `last_seen` the latest of its
    `occurrences` (identical refusals without a message id share one row)."""

    id: int
    source: str
    message_id: str | None
    received_at: str
    reason: str
    errors: list[dict[str, Any]]
    event: Any
    occurrences: int = 1
    last_seen: str = ""


def payload_hash(event: Any) -> bytes:
    """What identifies an event's content: 16 bytes of BLAKE2b over its canonical JSON (keys
    sorted), so the same event sent twice is known as such whatever its key order."""
    text = json.dumps(event, ensure_ascii=False, default=str, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass
class Distinct:
    """One distinct refusal of a batch given to `add`: the first item, the positions of
    every item it stands for, and how many times it occurs (at least 1)."""

    item: NewRejected
    digest: bytes
    positions: list[int] = field(default_factory=list)
    last_seen: str = ""

    @property
    def occurrences(self) -> int:
        return len(self.positions)


def distinct(items: Sequence[NewRejected]) -> list[Distinct]:
    """`items` collapsed in input order: those with a message id by (source, message id,
    reason), the others by (source, reason, content), as the stores keep them."""
    found: dict[tuple[Any, ...], Distinct] = {}
    for position, item in enumerate(items):
        digest = payload_hash(item.event)
        if item.message_id is not None:
            key: tuple[Any, ...] = (item.source, item.reason, "id", item.message_id)
        else:
            key = (item.source, item.reason, "hash", digest)
        entry = found.get(key)
        if entry is None:
            entry = found[key] = Distinct(item, digest, last_seen=item.received_at)
        entry.positions.append(position)
        entry.last_seen = max(entry.last_seen, item.received_at)
    return list(found.values())


class RejectedStore(abc.ABC):
    """Where rejected events wait for review and replay. `max_per_source`: the most rows one
    source may hold (None: no cap)."""

    max_per_source: int | None = None

    @abc.abstractmethod
    def add(self, items: Sequence[NewRejected]) -> list[int | None]:
        """Store `items` durably; the id of each, in input order (None: not stored, its
        source is at `max_per_source`).

        Idempotent for a retried batch: an item whose `(source, message_id, reason)` is
        already stored (and not yet removed by a replay) is not added again, and its
        existing id is returned. Items without a message id that equal a stored one (same
        source, reason and event) are counted on its row (`occurrences`, `last_seen`)
        rather than stored again, even when the source is at its cap.
        """

    @abc.abstractmethod
    def purge(self, seen_before: str) -> int:
        """Delete the events last seen before `seen_before` (canonical text time, see
        `core.clock.isoformat`): the retention window. How many were deleted."""

    @abc.abstractmethod
    def list(
        self,
        *,
        reason: str | None = None,
        source: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[RejectedEvent]:
        """Stored events, newest first, filtered by reason and source; pass
        `next_cursor` back for the next page."""

    @abc.abstractmethod
    def count(self, *, reason: str | None = None, source: str | None = None) -> int:
        """How many stored events match the filters."""

    @abc.abstractmethod
    def counts_by_reason(self) -> dict[str, int]:
        """How many stored events there are per reason (reasons with none are absent)."""

    @abc.abstractmethod
    def remove(self, ids: Sequence[int]) -> int:
        """Delete events by id, after a successful replay; how many were deleted."""

    @abc.abstractmethod
    def erase_identities(self, values: Sequence[str]) -> int:
        """Delete rejected events naming any of these identity values (as stored: PII ones
        hashed) as `userId`, `anonymousId`, `previousId` or an identity trait; the count."""

    @abc.abstractmethod
    def erase_message_ids(self, message_ids: Sequence[str]) -> int:
        """Delete every stored event with one of these message ids (erasure); the count."""

    def scrub(self) -> builtins.list[Leftover]:
        """After an erasure: make the backend overwrite what the erased rows left in its
        files, where it can; what may still hold their bytes, and until when (empty when
        nothing does). Nothing to do by default (a backend without files of its own)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, message_id TEXT,
    received_at TEXT NOT NULL, reason TEXT NOT NULL, errors TEXT NOT NULL, event TEXT NOT NULL,
    payload_hash BLOB, occurrences INTEGER NOT NULL DEFAULT 1, last_seen TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS rejected_once
    ON rejected (source, message_id, reason) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rejected_by_reason ON rejected (reason, id);
CREATE INDEX IF NOT EXISTS rejected_by_source ON rejected (source, id);
CREATE INDEX IF NOT EXISTS rejected_by_message_id ON rejected (message_id);
"""
# Columns added since the first schema: a data directory made before gets them on open.
_ADDED_COLUMNS = {
    "payload_hash": "BLOB",
    "occurrences": "INTEGER NOT NULL DEFAULT 1",
    "last_seen": "TEXT",
}
_ADDED_INDEXES = """
UPDATE rejected SET last_seen = received_at WHERE last_seen IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS rejected_same
    ON rejected (source, reason, payload_hash) WHERE message_id IS NULL;
CREATE INDEX IF NOT EXISTS rejected_by_last_seen ON rejected (last_seen);
"""
_COLUMNS = "id, source, message_id, received_at, reason, errors, event, occurrences, last_seen"


# The fields an identity can come from, extracted by SQLite without decoding whole events:
# the top-level ids, and the trait objects (only when they are objects) as JSON text.
_IDENTIFYING_FIELDS = """
SELECT id,
    json_extract(event, '$.userId'), json_extract(event, '$.anonymousId'),
    json_extract(event, '$.previousId'),
    CASE json_type(event, '$.traits') WHEN 'object' THEN json_extract(event, '$.traits') END,
    CASE json_type(event, '$.context.traits')
        WHEN 'object' THEN json_extract(event, '$.context.traits') END
FROM rejected WHERE json_valid(event) AND json_type(event) = 'object'
"""
TOP_LEVEL_IDS = ("userId", "anonymousId", "previousId")


def identity_forms(event: Any) -> set[str]:
    """Every form under which a stored event may name a person: its `userId`,
    `anonymousId`, `previousId` and each value of its `traits` and `context.traits`, as
    text, trimmed and lower-cased (the normalizations an identity kind can apply, short of
    email and phone, whose kinds are PII and so stored hashed)."""
    if not isinstance(event, dict):
        return set()
    context = event.get("context")
    values: list[Any] = [event.get(key) for key in TOP_LEVEL_IDS]
    for traits in (
        event.get("traits"),
        context.get("traits") if isinstance(context, dict) else None,
    ):
        if isinstance(traits, dict):
            values.extend(traits.values())
    forms: set[str] = set()
    for value in values:
        text = identifier_text(value)
        if text is not None:
            forms.update((text, text.strip(), text.strip().lower()))
    return forms


def _identifying_forms(row: Sequence[Any]) -> set[str]:
    """`identity_forms` of an event from the fields `_IDENTIFYING_FIELDS` extracts."""
    user_id, anonymous_id, previous_id, traits, context_traits = row[1:6]
    return identity_forms(
        {
            "userId": user_id,
            "anonymousId": anonymous_id,
            "previousId": previous_id,
            "traits": None if traits is None else json.loads(traits),
            "context": {"traits": None if context_traits is None else json.loads(context_traits)},
        }
    )


def rejected_from_row(row: Sequence[Any]) -> RejectedEvent:
    """An event from the columns `id, source, message_id, received_at, reason, errors (JSON),
    event (JSON), occurrences, last_seen`, as every backend stores them."""
    return RejectedEvent(
        id=int(row[0]),
        source=row[1],
        message_id=row[2],
        received_at=row[3],
        reason=row[4],
        errors=json.loads(row[5]),
        event=json.loads(row[6]),
        occurrences=int(row[7]),
        last_seen=row[8] or row[3],
    )


def names_any(event: Any, values: Collection[str]) -> bool:
    """Whether a stored rejected event names one of these identity values (as stored: PII
    ones hashed) as `userId`, `anonymousId`, `previousId`, or as any value of its `traits`
    or `context.traits` (where identity traits such as a hashed email live).

    Errs on the side of erasure: a trait value equal to an erased identifier counts, even
    if that trait is not an identity kind, so no rejected event of the person survives.
    """
    return not identity_forms(event).isdisjoint(values)


def _where(
    reason: str | None, source: str | None, *, before: int | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause (with a leading space, or empty) and its parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    for condition, value in (("reason = ?", reason), ("source = ?", source), ("id < ?", before)):
        if value is not None:
            conditions.append(condition)
            params.append(value)
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


class SqliteRejectedStore(RejectedStore):
    """Rejected events in one SQLite file (WAL, synchronous FULL).

    One connection behind a lock: rejections are the exception, so simplicity wins
    over concurrency here. `AUTOINCREMENT` keeps ids from being reused after removal,
    so a cursor never skips or repeats an event.
    """

    def __init__(self, path: Path, *, max_per_source: int | None = None) -> None:
        self.path = Path(path)
        self.max_per_source = max_per_source
        self._lock = threading.Lock()
        self._connection = open_connection(self.path, synchronous="full", schema=_SCHEMA)
        try:
            self._upgrade()
        except BaseException:
            self._connection.close()
            raise

    def _upgrade(self) -> None:
        """Add the columns and indexes a file made by an older version lacks."""
        with self._transaction() as connection:
            present = {row[1] for row in connection.execute("PRAGMA table_info(rejected)")}
            for column, declaration in _ADDED_COLUMNS.items():
                if column not in present:
                    connection.execute(f"ALTER TABLE rejected ADD COLUMN {column} {declaration}")
            for statement in _ADDED_INDEXES.split(";"):
                if statement.strip():
                    connection.execute(statement)

    def add(self, items: Sequence[NewRejected]) -> list[int | None]:
        """See `RejectedStore.add`; one transaction, so the batch is stored whole or not."""
        ids: list[int | None] = [None] * len(items)
        room: dict[str, int] = {}
        with self._transaction() as connection:
            for entry in distinct(items):
                item_id = self._existing(connection, entry)
                if item_id is None:
                    item_id = self._insert(connection, entry, room)
                for position in entry.positions:
                    ids[position] = item_id
        return ids

    def _existing(self, connection: sqlite3.Connection, entry: Distinct) -> int | None:
        """The row `entry` is already stored as (counting it there), or None."""
        item = entry.item
        if item.message_id is not None:
            row = connection.execute(
                "SELECT id FROM rejected WHERE source = ? AND message_id = ? AND reason = ?",
                (item.source, item.message_id, item.reason),
            ).fetchone()
            return None if row is None else int(row[0])
        row = connection.execute(
            "UPDATE rejected SET occurrences = occurrences + ?, last_seen = max(last_seen, ?) "
            "WHERE source = ? AND reason = ? AND payload_hash = ? AND message_id IS NULL "
            "RETURNING id",
            (entry.occurrences, entry.last_seen, item.source, item.reason, entry.digest),
        ).fetchone()
        return None if row is None else int(row[0])

    def _insert(
        self, connection: sqlite3.Connection, entry: Distinct, room: dict[str, int]
    ) -> int | None:
        """Store `entry` as a new row if its source has room (None if not)."""
        item = entry.item
        if self.max_per_source is not None:
            if item.source not in room:
                sql = "SELECT COUNT(*) FROM rejected WHERE source = ?"
                stored = int(connection.execute(sql, (item.source,)).fetchone()[0])
                room[item.source] = self.max_per_source - stored
            if room[item.source] <= 0:
                return None
            room[item.source] -= 1
        occurrences = 1 if item.message_id is not None else entry.occurrences
        cursor = connection.execute(
            "INSERT INTO rejected (source, message_id, received_at, reason, errors, event, "
            "payload_hash, occurrences, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.source,
                item.message_id,
                item.received_at,
                item.reason,
                json.dumps(item.errors, ensure_ascii=False, default=str),
                json.dumps(item.event, ensure_ascii=False, default=str),
                entry.digest,
                occurrences,
                entry.last_seen,
            ),
        )
        return int(cursor.lastrowid or 0)

    def purge(self, seen_before: str) -> int:
        """See `RejectedStore.purge`."""
        with self._transaction() as connection:
            sql = "DELETE FROM rejected WHERE last_seen < ?"
            return int(connection.execute(sql, (seen_before,)).rowcount)

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
        sql = f"SELECT {_COLUMNS} FROM rejected{where} ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._connection.execute(sql, (*params, limit + 1)).fetchall()
        items = [rejected_from_row(row) for row in rows[:limit]]
        next_cursor = str(items[-1].id) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    def count(self, *, reason: str | None = None, source: str | None = None) -> int:
        """See `RejectedStore.count`."""
        where, params = _where(reason, source)
        with self._lock:
            sql = f"SELECT COUNT(*) FROM rejected{where}"
            return int(self._connection.execute(sql, params).fetchone()[0])

    def counts_by_reason(self) -> dict[str, int]:
        """See `RejectedStore.counts_by_reason`."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT reason, COUNT(*) FROM rejected GROUP BY reason ORDER BY reason"
            ).fetchall()
        return {str(reason): int(count) for reason, count in rows}

    def remove(self, ids: Sequence[int]) -> int:
        """See `RejectedStore.remove`."""
        return self._delete("id", list(dict.fromkeys(ids)))

    def erase_identities(self, values: Sequence[str]) -> int:
        """See `RejectedStore.erase_identities`. The store is small (rejections are the
        exception), so this scans it: SQLite extracts the identifying fields, Python matches
        them with `names_any`, and the matches are deleted in the same transaction."""
        wanted = frozenset(value for value in values if value)
        if not wanted:
            return 0
        with self._transaction() as connection:
            rows = connection.execute(_IDENTIFYING_FIELDS).fetchall()
            ids = [row[0] for row in rows if not _identifying_forms(row).isdisjoint(wanted)]
            deleted = 0
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"DELETE FROM rejected WHERE id IN ({marks})"
                deleted += connection.execute(sql, tuple(chunk)).rowcount
        return deleted

    def erase_message_ids(self, message_ids: Sequence[str]) -> int:
        """See `RejectedStore.erase_message_ids`."""
        return self._delete("message_id", list(dict.fromkeys(message_ids)))

    def scrub(self) -> builtins.list[Leftover]:
        """See `RejectedStore.scrub`: erased rows were zeroed in their pages (secure
        delete); the write-ahead log, which still has their old pages, is truncated."""
        return checkpoint_truncate(self.path, store="rejected_store")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()

    def _delete(self, column: str, values: Sequence[Any]) -> int:
        deleted = 0
        with self._transaction() as connection:
            for start in range(0, len(values), _CHUNK):
                chunk = values[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"DELETE FROM rejected WHERE {column} IN ({marks})"
                deleted += connection.execute(sql, tuple(chunk)).rowcount
        return deleted

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction under the lock: committed on success, else rolled back."""
        return write_transaction(self._connection, self._lock, store="rejected store")


def build_rejected_store(
    config: StoreConfig,
    data_dir: Path,
    postgres: Postgres | None = None,
    *,
    max_per_source: int | None = None,
) -> RejectedStore:
    """Open the rejected-events store the configuration names: PostgreSQL when `postgres` is
    given (the store runs on it), else SQLite (default `<data_dir>/rejected.sqlite3`),
    creating its folders if needed; at most `max_per_source` events per source."""
    if postgres is not None:
        from touchpoint.collect.rejected.postgres import PostgresRejectedStore

        return PostgresRejectedStore(postgres, max_per_source=max_per_source)
    if config.type in ("sqlite", "auto"):
        path = (
            Path(config.path).expanduser()
            if config.path
            else Path(data_dir) / DEFAULT_REJECTED_FILE
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteRejectedStore(path, max_per_source=max_per_source)
    raise ValueError(f"unknown rejected store type {config.type!r}")  # pragma: no cover
