"""Erasure in the SQLite profile store: the person, everything merged into them, tombstones.

Functions over a connection, so `SqliteProfileStore` keeps its methods thin. `erase_person`
runs inside the caller's write transaction (`BEGIN IMMEDIATE`, under the store's write lock):
the profile rows, identities, timeline, memberships, segment changes, merge lineage and
redirects go in the same commit that writes the tombstones, so no event processed meanwhile
can find the person half erased and rebuild them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

from touchpoint.profiles.model import Identity
from touchpoint.profiles.store.base import ErasedProfile, SegmentChange

TOMBSTONE_SCHEMA = """
CREATE TABLE IF NOT EXISTS tombstones (
    key TEXT PRIMARY KEY, job_id TEXT NOT NULL, at TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS segment_changes_profile ON segment_changes (profile_id);
CREATE INDEX IF NOT EXISTS merges_merged ON merges (merged_id);
"""

# SQLite's default limit on bound parameters is 999 on old builds; stay well under it.
CHUNK = 500
_MAX_MERGE_DEPTH = 64


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """`values` in slices of at most `size` (none for an empty sequence)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _select_in(db: sqlite3.Connection, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run `sql` (with one `{marks}` placeholder) over `values` in chunks; all rows."""
    rows: list[tuple[Any, ...]] = []
    for chunk in chunks(values):
        rows.extend(db.execute(sql.format(marks=_marks(chunk)), tuple(chunk)).fetchall())
    return rows


def _delete_in(db: sqlite3.Connection, table: str, column: str, values: Sequence[Any]) -> int:
    deleted = 0
    for chunk in chunks(values):
        sql = f"DELETE FROM {table} WHERE {column} IN ({_marks(chunk)})"
        deleted += db.execute(sql, tuple(chunk)).rowcount
    return deleted


def person_ids(db: sqlite3.Connection, survivor_id: str) -> list[str]:
    """The survivor and every profile id ever folded into it (redirects and lineage, followed
    transitively: a corrupted or uncompressed chain still finds them all), survivor first."""
    found: dict[str, None] = {survivor_id: None}
    frontier = [survivor_id]
    for _ in range(_MAX_MERGE_DEPTH):
        if not frontier:
            break
        frontier = list(dict.fromkeys(i for i in _merged_into(db, frontier) if i not in found))
        found.update(dict.fromkeys(frontier))
    return list(found)


def _merged_into(db: sqlite3.Connection, survivors: Sequence[str]) -> list[str]:
    merged: list[str] = []
    for table in ("profile_redirects", "merges"):
        rows = _select_in(
            db, f"SELECT merged_id FROM {table} WHERE survivor_id IN ({{marks}})", survivors
        )
        merged.extend(str(row[0]) for row in rows)
    return merged


def segment_history(db: sqlite3.Connection, profile_ids: Sequence[str]) -> list[SegmentChange]:
    """Every enter/exit of these profile ids, oldest first (by change-log id)."""
    rows = _select_in(
        db,
        "SELECT id, segment, profile_id, change, at FROM segment_changes "
        "WHERE profile_id IN ({marks})",
        profile_ids,
    )
    rows.sort(key=lambda row: int(row[0]))
    return [SegmentChange(row[1], row[2], row[3], row[4]) for row in rows]


def erase_person(
    db: sqlite3.Connection,
    survivor_id: str,
    *,
    tombstone_key: Callable[[Identity], str],
    extra_tombstones: Collection[str],
    job_id: str,
    at: str,
) -> ErasedProfile | None:
    """Erase the profile `survivor_id` (already resolved through redirects) and everything
    merged into it, inside the caller's transaction; None if it does not exist."""
    exists = db.execute("SELECT 1 FROM profiles WHERE profile_id = ?", (survivor_id,))
    if exists.fetchone() is None:
        return None
    ids = person_ids(db, survivor_id)
    identities = [
        Identity(str(kind), str(value))
        for kind, value in _select_in(
            db, "SELECT kind, value FROM identities WHERE profile_id IN ({marks})", ids
        )
    ]
    # Identities named in the lineage (moved by a merge) are the person's too.
    for kind, value in _select_in(
        db,
        "SELECT identity_kind, identity_value FROM merges WHERE survivor_id IN ({marks})",
        ids,
    ):
        identity = Identity(str(kind), str(value))
        if identity not in identities:
            identities.append(identity)
    message_ids = [
        str(row[0])
        for row in _select_in(
            db, "SELECT message_id FROM timeline WHERE profile_id IN ({marks})", ids
        )
    ]
    counts = {
        "profiles": _delete_in(db, "profiles", "profile_id", ids),
        "identities": _delete_in(db, "identities", "profile_id", ids),
        "timeline_events": _delete_in(db, "timeline", "profile_id", ids),
        "segment_memberships": _delete_in(db, "segment_memberships", "profile_id", ids),
        "segment_changes": _delete_in(db, "segment_changes", "profile_id", ids),
        "merges": _delete_in(db, "merges", "survivor_id", ids)
        + _delete_in(db, "merges", "merged_id", ids),
        "redirects": _delete_in(db, "profile_redirects", "survivor_id", ids)
        + _delete_in(db, "profile_redirects", "merged_id", ids),
    }
    keys = dict.fromkeys([*(tombstone_key(identity) for identity in identities), *extra_tombstones])
    write_tombstones(db, keys, job_id=job_id, at=at)
    return ErasedProfile(
        profile_ids=tuple(ids),
        identities=tuple(identities),
        message_ids=tuple(message_ids),
        counts=counts,
    )


def write_tombstones(db: sqlite3.Connection, keys: Iterable[str], *, job_id: str, at: str) -> None:
    """Record (or re-point to this job) a tombstone per key."""
    db.executemany(
        "INSERT OR REPLACE INTO tombstones (key, job_id, at) VALUES (?, ?, ?)",
        ((key, job_id, at) for key in keys),
    )


def tombstone_job(db: sqlite3.Connection, key: str) -> str | None:
    """The job id of the erasure that left `key`, or None."""
    row = db.execute("SELECT job_id FROM tombstones WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def tombstoned(db: sqlite3.Connection, keys: Sequence[str]) -> set[str]:
    """Which of `keys` have a tombstone (one query per 500 keys)."""
    return {
        str(row[0])
        for row in _select_in(db, "SELECT key FROM tombstones WHERE key IN ({marks})", keys)
    }


def any_tombstone(db: sqlite3.Connection) -> bool:
    """Whether any erasure ever left a tombstone (lets a writer skip lookups entirely)."""
    return db.execute("SELECT 1 FROM tombstones LIMIT 1").fetchone() is not None
