"""The embedded profile store: one SQLite file in WAL mode.

Writes go through one dedicated connection behind a lock (`BEGIN IMMEDIATE`),
so the stream processor's transactions never interleave; reads use one
connection per thread, so the HTTP API reads a consistent snapshot while the
processor writes.

Durability: the file runs with `synchronous=NORMAL` by default. In WAL mode a
power loss may then lose the last committed transactions, but never corrupts
the file. That is safe here because the stream processor commits its log
position only *after* the profile transaction: a lost profile commit leaves the
log position behind it, and the events are simply re-applied on restart
(`record_event` makes that idempotent). A caller without that guarantee passes
`synchronous="full"`.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

import orjson

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import BadRequest, NotFound, TouchpointError
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page
from touchpoint.core.sqlite import (
    SECURE_DELETE_PRAGMA,
    WAL_AUTOCHECKPOINT_PAGES,
    WAL_SIZE_LIMIT_BYTES,
    checkpoint_truncate,
    write_transaction,
)
from touchpoint.core.sqlite_migrations import SqliteMigration, migrate
from touchpoint.profiles.model import Identity, MergeRecord, Profile
from touchpoint.profiles.store import sqlite_erase
from touchpoint.profiles.store.base import (
    ErasedProfile,
    ProfileStore,
    ProfileWriter,
    SegmentChange,
    TimelineEvent,
)

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    profile_id TEXT PRIMARY KEY, state BLOB NOT NULL, version INTEGER NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS identities (
    kind TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
    message_id TEXT NOT NULL, linked_at TEXT NOT NULL, PRIMARY KEY (kind, value)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identities_profile ON identities (profile_id);
CREATE TABLE IF NOT EXISTS profile_redirects (
    merged_id TEXT PRIMARY KEY, survivor_id TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS profile_redirects_survivor ON profile_redirects (survivor_id);
CREATE TABLE IF NOT EXISTS merges (
    id INTEGER PRIMARY KEY AUTOINCREMENT, survivor_id TEXT NOT NULL, merged_id TEXT NOT NULL,
    identity_kind TEXT NOT NULL, identity_value TEXT NOT NULL, message_id TEXT NOT NULL,
    at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS merges_survivor ON merges (survivor_id);
CREATE TABLE IF NOT EXISTS timeline (
    message_id TEXT NOT NULL UNIQUE, profile_id TEXT NOT NULL, timestamp TEXT NOT NULL,
    type TEXT NOT NULL, name TEXT, event BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS timeline_profile_time ON timeline (profile_id, timestamp);
CREATE TABLE IF NOT EXISTS segment_memberships (
    segment TEXT NOT NULL, profile_id TEXT NOT NULL, entered_at TEXT NOT NULL,
    PRIMARY KEY (segment, profile_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS segment_memberships_profile ON segment_memberships (profile_id);
CREATE TABLE IF NOT EXISTS segment_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, segment TEXT NOT NULL, profile_id TEXT NOT NULL,
    change TEXT NOT NULL, at TEXT NOT NULL);
"""
# The schema, version by version (see core.sqlite_migrations).
MIGRATIONS = [SqliteMigration("profiles", 1, _SCHEMA + sqlite_erase.TOMBSTONE_SCHEMA)]
_FIND = "SELECT profile_id FROM identities WHERE kind = ? AND value = ?"
_LOG_CHANGE = "INSERT INTO segment_changes (segment, profile_id, change, at) VALUES (?, ?, ?, ?)"
_TIMELINE_COLUMNS = "message_id, timestamp, type, name, event, rowid"

# A merge chain is compressed on every merge, so one hop is the norm; the bound
# only guards against a corrupted file looping forever.
_MAX_REDIRECT_HOPS = 64


def _encode_cursor(*parts: str | int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode("ascii")


def _decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeError) as error:
        raise BadRequest("invalid cursor") from error
    if not isinstance(parts, list) or len(parts) != arity:
        raise BadRequest("invalid cursor")
    return parts


def _timeline_event(row: tuple[Any, ...]) -> TimelineEvent:
    return TimelineEvent(row[0], row[1], row[2], row[3], orjson.loads(row[4]))


def _load_profile(db: sqlite3.Connection, profile_id: str) -> Profile | None:
    row = db.execute("SELECT state, version FROM profiles WHERE profile_id = ?", (profile_id,))
    found = row.fetchone()
    if found is None:
        return None
    identities = db.execute(
        "SELECT kind, value FROM identities WHERE profile_id = ? ORDER BY linked_at, kind, value",
        (profile_id,),
    )
    segments = db.execute(
        "SELECT segment, entered_at FROM segment_memberships WHERE profile_id = ?", (profile_id,)
    )
    return Profile.from_state(
        profile_id,
        orjson.loads(found[0]),
        identities=[Identity(kind, value) for kind, value in identities],
        segments=dict(segments.fetchall()),
        version=found[1],
    )


def _resolve_redirect(db: sqlite3.Connection, profile_id: str) -> str:
    current = profile_id
    for _ in range(_MAX_REDIRECT_HOPS):
        row = db.execute(
            "SELECT survivor_id FROM profile_redirects WHERE merged_id = ?", (current,)
        ).fetchone()
        if row is None:
            return current
        current = row[0]
    logger.error("redirect chain from profile %s does not end", profile_id)
    return current


class _SqliteWriter(ProfileWriter):
    """The write verbs on the store's write connection; valid only inside its transaction.

    It remembers which profile owns each identity it looked up or linked (`_owners`, None for
    "unknown"), and keeps that map true through `link` and `merge`, the only verbs that change
    the identity graph. A stream batch asks about the same few identities once per event, so
    most `find_many` calls cost dict lookups instead of SELECTs. The map lives and dies with
    the transaction, so a rollback cannot leave it stale.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._open = True
        self._owners: dict[Identity, str | None] = {}
        self._now: str | None = None
        # Tombstones only change in `SqliteProfileStore.erase`, which holds the same write
        # lock, so what this transaction learnt about them stays true until it ends.
        self._any_tombstone: bool | None = None
        self._tombstoned: dict[str, bool] = {}

    def _stamp(self) -> str:
        """The `updated_at` of rows this transaction writes: its first write's time."""
        if self._now is None:
            self._now = isoformat(utcnow())
        return self._now

    def _db(self) -> sqlite3.Connection:
        if not self._open:
            raise TouchpointError("this writer's transaction has ended")
        return self._connection

    def close(self) -> None:
        self._open = False

    def find_many(self, identities: Sequence[Identity]) -> dict[Identity, str]:
        db = self._db()
        owners = self._owners
        found: dict[Identity, str] = {}
        for identity in identities:
            if identity in owners:
                owner = owners[identity]
            else:
                row = db.execute(_FIND, (identity.kind, identity.value)).fetchone()
                owner = owners[identity] = None if row is None else row[0]
            if owner is not None:
                found[identity] = owner
        return found

    def load(self, profile_id: str) -> Profile | None:
        return _load_profile(self._db(), profile_id)

    def create(self, profile: Profile) -> None:
        values = (
            profile.profile_id,
            orjson.dumps(profile.state()),
            profile.version,
            profile.created_at,
            self._stamp(),
        )
        try:
            self._db().execute("INSERT INTO profiles VALUES (?, ?, ?, ?, ?)", values)
        except sqlite3.IntegrityError as error:
            raise TouchpointError(f"profile {profile.profile_id} already exists") from error

    def save(self, profile: Profile) -> None:
        cursor = self._db().execute(
            "UPDATE profiles SET state = ?, version = version + 1, created_at = ?, updated_at = ? "
            "WHERE profile_id = ?",
            (
                orjson.dumps(profile.state()),
                profile.created_at,
                self._stamp(),
                profile.profile_id,
            ),
        )
        if cursor.rowcount == 0:
            raise NotFound(f"profile {profile.profile_id} does not exist")
        profile.version += 1

    def link(self, profile_id: str, identity: Identity, *, message_id: str, at: str) -> None:
        db = self._db()
        inserted = db.execute(
            "INSERT OR IGNORE INTO identities VALUES (?, ?, ?, ?, ?)",
            (identity.kind, identity.value, profile_id, message_id, at),
        ).rowcount
        if inserted:
            self._owners[identity] = profile_id
            return
        owner = db.execute(_FIND, (identity.kind, identity.value)).fetchone()[0]
        self._owners[identity] = owner
        if owner != profile_id:
            # Moving an identity between profiles is a merge, never a silent re-link.
            raise TouchpointError(f"identity {identity.kind} is already linked to another profile")

    def merge(
        self, survivor_id: str, merged_id: str, *, identity: Identity, message_id: str, at: str
    ) -> None:
        db = self._db()
        if survivor_id == merged_id:
            raise TouchpointError("a profile cannot be merged into itself")
        exists = db.execute("SELECT 1 FROM profiles WHERE profile_id = ?", (survivor_id,))
        if exists.fetchone() is None:
            raise NotFound(f"profile {survivor_id} does not exist")
        if db.execute("DELETE FROM profiles WHERE profile_id = ?", (merged_id,)).rowcount == 0:
            raise NotFound(f"profile {merged_id} does not exist")
        moved = (survivor_id, merged_id)
        db.execute("UPDATE identities SET profile_id = ? WHERE profile_id = ?", moved)
        db.execute("UPDATE timeline SET profile_id = ? WHERE profile_id = ?", moved)
        self._move_memberships(db, survivor_id, merged_id, at)
        # Compress the chain: whatever pointed at the merged id now points at the survivor.
        db.execute("UPDATE profile_redirects SET survivor_id = ? WHERE survivor_id = ?", moved)
        db.execute(
            "INSERT OR REPLACE INTO profile_redirects VALUES (?, ?)", (merged_id, survivor_id)
        )
        db.execute(
            "INSERT INTO merges (survivor_id, merged_id, identity_kind, identity_value, "
            "message_id, at) VALUES (?, ?, ?, ?, ?, ?)",
            (survivor_id, merged_id, identity.kind, identity.value, message_id, at),
        )
        owners = self._owners
        for known, owner in owners.items():
            if owner == merged_id:
                owners[known] = survivor_id

    @staticmethod
    def _move_memberships(
        db: sqlite3.Connection, survivor_id: str, merged_id: str, at: str
    ) -> None:
        """The survivor takes the merged profile's memberships (the earlier entry time wins).

        The change log says what happened to each id: the merged id exits its segments, and
        the survivor enters those it was not in, so a journey keyed by profile id stays right.
        """
        moved = db.execute(
            "SELECT segment, entered_at FROM segment_memberships WHERE profile_id = ?", (merged_id,)
        ).fetchall()
        for segment, entered_at in moved:
            db.execute(_LOG_CHANGE, (segment, merged_id, "exit", at))
            current = db.execute(
                "SELECT entered_at FROM segment_memberships WHERE segment = ? AND profile_id = ?",
                (segment, survivor_id),
            ).fetchone()
            if current is None:
                db.execute(
                    "INSERT INTO segment_memberships VALUES (?, ?, ?)",
                    (segment, survivor_id, entered_at),
                )
                db.execute(_LOG_CHANGE, (segment, survivor_id, "enter", at))
            elif entered_at < current[0]:
                db.execute(
                    "UPDATE segment_memberships SET entered_at = ? "
                    "WHERE segment = ? AND profile_id = ?",
                    (entered_at, segment, survivor_id),
                )
        db.execute("DELETE FROM segment_memberships WHERE profile_id = ?", (merged_id,))

    def record_event(self, profile_id: str, event: TimelineEvent) -> bool:
        cursor = self._db().execute(
            "INSERT OR IGNORE INTO timeline VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.message_id,
                profile_id,
                event.timestamp,
                event.type,
                event.name,
                event.encoded if event.encoded is not None else orjson.dumps(event.event),
            ),
        )
        return cursor.rowcount > 0

    def timeline(self, profile_id: str) -> Iterator[TimelineEvent]:
        rows = self._db().execute(
            f"SELECT {_TIMELINE_COLUMNS} FROM timeline WHERE profile_id = ? "
            "ORDER BY timestamp, rowid",
            (profile_id,),
        )
        return (_timeline_event(row) for row in rows.fetchall())

    def tombstoned(self, keys: Collection[str]) -> set[str]:
        """See `ProfileWriter.tombstoned`: no query at all while no tombstone exists, and
        each key is looked up once per transaction (one query per 500 new keys)."""
        db = self._db()
        if self._any_tombstone is None:
            self._any_tombstone = sqlite_erase.any_tombstone(db)
        if not self._any_tombstone:
            return set()
        known = self._tombstoned
        unknown = [key for key in dict.fromkeys(keys) if key not in known]
        if unknown:
            found = sqlite_erase.tombstoned(db, unknown)
            for key in unknown:
                known[key] = key in found
        return {key for key in keys if known[key]}

    def set_segment(self, profile_id: str, segment: str, *, member: bool, at: str) -> None:
        db = self._db()
        if member:
            sql = "INSERT OR IGNORE INTO segment_memberships VALUES (?, ?, ?)"
            values: tuple[str, ...] = (segment, profile_id, at)
        else:
            sql = "DELETE FROM segment_memberships WHERE segment = ? AND profile_id = ?"
            values = (segment, profile_id)
        if db.execute(sql, values).rowcount:
            db.execute(_LOG_CHANGE, (segment, profile_id, "enter" if member else "exit", at))


class SqliteProfileStore(ProfileStore):
    """Profiles, identity graph, timelines and segments in one SQLite file (the embedded default).

    Thread-safe: one writer at a time (a lock around `transaction()`), any number of readers,
    each thread on its own connection. A path is required (`:memory:` would give each
    connection its own empty database).
    """

    def __init__(
        self, path: str | Path, *, synchronous: Literal["normal", "full"] = "normal"
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._writer_connection = self._connect()
        try:
            migrate(self._writer_connection, MIGRATIONS, path=self.path)
        except BaseException:
            self._writer_connection.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        connection.execute(f"PRAGMA {SECURE_DELETE_PRAGMA}")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute("PRAGMA temp_store=MEMORY")
        connection.execute("PRAGMA cache_size=-16000")
        # Checkpoint every 8 MiB of WAL instead of SQLite's 4 MiB: a stream batch dirties
        # hundreds of pages (timeline rows, random message-id index pages, profile documents),
        # so the default checkpointed after nearly every batch, re-copying hot index pages
        # and syncing each time. Not more: a full disk needs that much free to recover (see
        # core.sqlite).
        connection.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise TouchpointError("the profile store is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def _query(self, sql: str, values: tuple[Any, ...]) -> list[Any]:
        return self._reader().execute(sql, values).fetchall()

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One consistent view for reads that take several statements."""
        connection = self._reader()
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[ProfileWriter]:
        """One unit of work on the write connection: committed at the end, rolled back on error.

        SQLite errors of the store itself (locked, disk full, I/O) surface as `Unavailable`, so
        a caller can tell "retry later" from a problem with its own input.
        """
        with self._write_transaction() as connection:
            writer = _SqliteWriter(connection)
            try:
                yield writer
            finally:
                writer.close()

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` on the write connection under the write lock; see `transaction`."""
        if self._closed:
            raise TouchpointError("the profile store is closed")
        with write_transaction(
            self._writer_connection, self._write_lock, store="profile store"
        ) as connection:
            yield connection

    def find(self, identity: Identity) -> str | None:
        rows = self._query(_FIND, (identity.kind, identity.value))
        return str(rows[0][0]) if rows else None

    def get(self, profile_id: str) -> Profile | None:
        with self._snapshot() as db:
            return _load_profile(db, _resolve_redirect(db, profile_id))

    def events(
        self, profile_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> Page[TimelineEvent]:
        limit = max(1, limit)
        after, values = "", cast(tuple[Any, ...], ())
        if cursor is not None:
            timestamp, rowid = _decode_cursor(cursor, 2)
            after = "AND (timestamp < ? OR (timestamp = ? AND rowid < ?))"
            values = (timestamp, timestamp, rowid)
        with self._snapshot() as db:
            rows = db.execute(
                f"SELECT {_TIMELINE_COLUMNS} FROM timeline WHERE profile_id = ? {after} "
                "ORDER BY timestamp DESC, rowid DESC LIMIT ?",
                (_resolve_redirect(db, profile_id), *values, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1][1], rows[-1][5]) if more else None
        return Page(items=[_timeline_event(row) for row in rows], next_cursor=next_cursor)

    def lineage(self, profile_id: str) -> list[MergeRecord]:
        with self._snapshot() as db:
            survivor = _resolve_redirect(db, profile_id)
            rows = db.execute(
                "SELECT survivor_id, merged_id, identity_kind, identity_value, message_id, at "
                "FROM merges WHERE survivor_id = ? OR survivor_id IN "
                "(SELECT merged_id FROM profile_redirects WHERE survivor_id = ?) ORDER BY id",
                (survivor, survivor),
            ).fetchall()
        return [
            MergeRecord(row[0], row[1], Identity(row[2], row[3]), row[4], row[5]) for row in rows
        ]

    def segment_members(
        self, segment: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[tuple[str, str]]:
        limit = max(1, limit)
        after = "" if cursor is None else str(_decode_cursor(cursor, 1)[0])
        rows = self._query(
            "SELECT profile_id, entered_at FROM segment_memberships "
            "WHERE segment = ? AND profile_id > ? ORDER BY profile_id LIMIT ?",
            (segment, after, limit + 1),
        )
        items = [(str(row[0]), str(row[1])) for row in rows[:limit]]
        return Page(items, _encode_cursor(items[-1][0]) if len(rows) > limit else None)

    def segment_sizes(self) -> dict[str, int]:
        rows = self._query(
            "SELECT segment, COUNT(*) FROM segment_memberships GROUP BY segment ORDER BY segment",
            (),
        )
        return {str(segment): int(size) for segment, size in rows}

    def segment_changes(
        self, *, since_id: int = 0, limit: int = 1000
    ) -> list[tuple[int, SegmentChange]]:
        rows = self._query(
            "SELECT id, segment, profile_id, change, at FROM segment_changes "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (since_id, max(1, limit)),
        )
        return [(int(row[0]), SegmentChange(row[1], row[2], row[3], row[4])) for row in rows]

    def profile_ids(self, *, cursor: str | None = None, limit: int = 1000) -> Page[str]:
        limit = max(1, limit)
        after = "" if cursor is None else str(_decode_cursor(cursor, 1)[0])
        rows = self._query(
            "SELECT profile_id FROM profiles WHERE profile_id > ? ORDER BY profile_id LIMIT ?",
            (after, limit + 1),
        )
        items = [str(row[0]) for row in rows[:limit]]
        return Page(items, _encode_cursor(items[-1]) if len(rows) > limit else None)

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM profiles", ())[0][0])

    def segment_history(self, profile_id: str) -> list[SegmentChange]:
        """See `ProfileStore.segment_history`: the survivor's changes and those of every
        profile merged into it, oldest first."""
        with self._snapshot() as db:
            ids = sqlite_erase.person_ids(db, _resolve_redirect(db, profile_id))
            return sqlite_erase.segment_history(db, ids)

    def erase(
        self,
        profile_id: str,
        *,
        tombstone_key: Callable[[Identity], str],
        extra_tombstones: Collection[str] = (),
        job_id: str,
        at: str,
    ) -> ErasedProfile | None:
        """See `ProfileStore.erase`: one `BEGIN IMMEDIATE` transaction on the write connection
        (so it never interleaves with a stream batch), tombstones in the same commit."""
        with self._write_transaction() as db:
            return sqlite_erase.erase_person(
                db,
                _resolve_redirect(db, profile_id),
                tombstone_key=tombstone_key,
                extra_tombstones=extra_tombstones,
                job_id=job_id,
                at=at,
            )

    def tombstone(self, key: str) -> str | None:
        """See `ProfileStore.tombstone`."""
        return sqlite_erase.tombstone_job(self._reader(), key)

    def scrub(self) -> list[Leftover]:
        """See `ProfileStore.scrub`: erased rows were zeroed in their pages (secure delete);
        the write-ahead log, which still has their old pages, is truncated."""
        return checkpoint_truncate(self.path, store="profile_store", timeout=30.0)

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._write_lock:
            self._closed = True
            with self._connections_lock:
                connections, self._connections = self._connections, []
            for connection in connections:
                connection.close()
