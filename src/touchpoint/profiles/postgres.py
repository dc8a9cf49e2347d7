"""The server profile store: profiles and the identity graph in PostgreSQL.

Same behaviour as the SQLite store, for several stream workers writing at once:

- `transaction()` is one PostgreSQL transaction on one pooled connection (READ COMMITTED).
- `load` locks the profile row, then reads it (`profile_for_update`, one round trip): two
  transactions never both read-modify-write one profile, and one that waited for the lock
  sees what the other committed.
- Inserts use ON CONFLICT, so a unique-key race never fails a statement. A race the caller
  must redo (another transaction linked the identity this one saw unknown, or merged away a
  profile it found in the graph) raises `Unavailable`: the processor retries the whole batch
  and the retry sees the other transaction's rows. Deadlocks surface as `Unavailable` too.
- Erasure and stream batches exclude each other through an advisory lock (shared for a
  batch, from `tombstoned`; exclusive for `erase`), as SQLite's single writer does: a batch
  either finishes before an erasure or sees its tombstones.
- Segment changes are logged under a transaction-scoped advisory lock, so their ids
  increase in commit order and a reader paging with `since_id` never skips a late commit.

Profile state and timeline payloads are stored as bytea of the JSON the SQLite store keeps,
not JSONB: it round-trips exactly (JSONB refuses "\\u0000" in strings, which would turn
such an event into a poison event, reorders keys and reads 1e16 back as an integer), and
the server does not parse documents on the hot path. Ad hoc SQL can still read them with
`convert_from(state, 'UTF8')::jsonb`. Text columns use the "C" collation: ids, timestamps
and cursors compare byte by byte, as in SQLite, whatever the database's locale.

Round trips in the hot path (the processor's batch): `record_event` one per event (INSERT
... ON CONFLICT DO NOTHING, so a duplicate is False at once), `find_many` one per set of
identities not seen yet in the transaction, `load` one, `link` one. What needs no answer is
buffered and written by `flush` before the next `load` or `merge` and at commit: new
profiles in one INSERT, saves in one UPDATE, segment changes in one pipelined batch (which
also keeps the change-log lock for the last moments of the transaction only).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg_pool import PoolTimeout

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import InvalidInput, NotFound, TouchpointError, Unavailable
from touchpoint.core.postgres import Migration, Postgres, first_line
from touchpoint.profiles import postgres_erase
from touchpoint.profiles.model import Identity, MergeRecord, Profile
from touchpoint.profiles.postgres_erase import (
    MAX_BIGINT,
    TIMELINE_COLUMNS,
    Connection,
    encode_cursor,
    page_limit,
    profile_from_row,
    storable,
    text_cursor,
    timeline_event,
)
from touchpoint.profiles.store import (
    ErasedProfile,
    Page,
    ProfileStore,
    ProfileWriter,
    SegmentChange,
    TimelineEvent,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
STORE = "profile store"
_SCHEMA = """
CREATE TABLE profiles (
    profile_id text COLLATE "C" PRIMARY KEY, state bytea NOT NULL, version bigint NOT NULL,
    created_at text COLLATE "C" NOT NULL, updated_at text COLLATE "C" NOT NULL
) WITH (fillfactor = 80);
CREATE TABLE identities (
    kind text COLLATE "C" NOT NULL, value text COLLATE "C" NOT NULL,
    profile_id text COLLATE "C" NOT NULL, message_id text COLLATE "C" NOT NULL,
    linked_at text COLLATE "C" NOT NULL, PRIMARY KEY (kind, value));
CREATE INDEX identities_profile ON identities (profile_id);
CREATE TABLE profile_redirects (
    merged_id text COLLATE "C" PRIMARY KEY, survivor_id text COLLATE "C" NOT NULL);
CREATE INDEX profile_redirects_survivor ON profile_redirects (survivor_id);
CREATE TABLE merges (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, survivor_id text COLLATE "C" NOT NULL,
    merged_id text COLLATE "C" NOT NULL, identity_kind text COLLATE "C" NOT NULL,
    identity_value text COLLATE "C" NOT NULL, message_id text COLLATE "C" NOT NULL,
    at text COLLATE "C" NOT NULL);
CREATE INDEX merges_survivor ON merges (survivor_id);
CREATE INDEX merges_merged ON merges (merged_id);
CREATE TABLE timeline (
    message_id text COLLATE "C" PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY,
    profile_id text COLLATE "C" NOT NULL, event_time text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL, name text COLLATE "C", event bytea NOT NULL);
CREATE INDEX timeline_profile_time ON timeline (profile_id, event_time, seq);
CREATE TABLE segment_memberships (
    segment text COLLATE "C" NOT NULL, profile_id text COLLATE "C" NOT NULL,
    entered_at text COLLATE "C" NOT NULL, PRIMARY KEY (segment, profile_id));
CREATE INDEX segment_memberships_profile ON segment_memberships (profile_id);
CREATE TABLE segment_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, segment text COLLATE "C" NOT NULL,
    profile_id text COLLATE "C" NOT NULL, change text COLLATE "C" NOT NULL,
    at text COLLATE "C" NOT NULL);
CREATE INDEX segment_changes_profile ON segment_changes (profile_id);
CREATE TABLE tombstones (
    key text COLLATE "C" PRIMARY KEY, job_id text COLLATE "C" NOT NULL,
    at text COLLATE "C" NOT NULL);

-- Lock the profile row, then read it with its identities and segments in a second
-- statement: a VOLATILE function takes a fresh snapshot per statement, so a caller that
-- waited for the lock sees what the holder committed (one statement would read the
-- identities as of before the wait).
CREATE FUNCTION profile_for_update(wanted text)
RETURNS TABLE (found_state bytea, found_version bigint, found_identities text,
               found_segments text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM profiles AS p WHERE p.profile_id = wanted FOR UPDATE;
    RETURN QUERY
    SELECT p.state, p.version,
        (SELECT json_agg(json_build_array(i.kind, i.value)
                         ORDER BY i.linked_at, i.kind, i.value)::text
         FROM identities AS i WHERE i.profile_id = wanted),
        (SELECT json_object_agg(m.segment, m.entered_at ORDER BY m.segment)::text
         FROM segment_memberships AS m WHERE m.profile_id = wanted)
    FROM profiles AS p WHERE p.profile_id = wanted;
END
$$;
"""
MIGRATIONS: list[Migration] = [Migration("profiles", 1, _SCHEMA)]

_SHARED_LOCK = "SELECT pg_advisory_xact_lock_shared(hashtext(%s))"
_EXCLUSIVE_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"

_FIND = "SELECT profile_id FROM identities WHERE kind = %s AND value = %s"
# Identities asked at once; a row-value list per count is prepared once, and costs half
# of what the same lookup with two arrays does (psycopg dumps arrays slowly).
_FIND_CHUNK = 32


@functools.cache
def _find_many_sql(count: int) -> str:
    pairs = ", ".join(["(%s, %s)"] * count)
    return f"SELECT kind, value, profile_id FROM identities WHERE (kind, value) IN ({pairs})"


_LINK = (
    "WITH inserted AS (INSERT INTO identities (kind, value, profile_id, message_id, linked_at) "
    "VALUES (%(kind)s, %(value)s, %(profile_id)s, %(message_id)s, %(at)s) "
    "ON CONFLICT (kind, value) DO NOTHING RETURNING profile_id) "
    "SELECT profile_id, true FROM inserted UNION ALL "
    "SELECT profile_id, false FROM identities WHERE kind = %(kind)s AND value = %(value)s "
    "AND NOT EXISTS (SELECT 1 FROM inserted)"
)
_SAVE = (
    "UPDATE profiles AS p SET state = saved.state, version = p.version + saved.saves, "
    "created_at = saved.created_at, updated_at = %s "
    "FROM unnest(%s::text[], %s::bytea[], %s::text[], %s::int[]) "
    "AS saved (profile_id, state, created_at, saves) "
    "WHERE p.profile_id = saved.profile_id RETURNING p.profile_id"
)
_RECORD = (
    "INSERT INTO timeline (message_id, profile_id, event_time, type, name, event) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING"
)
_RECORD_MANY = (
    "INSERT INTO timeline (message_id, profile_id, event_time, type, name, event) "
    "SELECT m, p, t, y, n, e FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::bytea[]) WITH ORDINALITY AS rows (m, p, t, y, n, e, i) ORDER BY i "
    "ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
)
_CREATE = (
    "INSERT INTO profiles (profile_id, state, version, created_at, updated_at) "
    "SELECT * FROM unnest(%s::text[], %s::bytea[], %s::bigint[], %s::text[], %s::text[]) "
    "ON CONFLICT (profile_id) DO NOTHING RETURNING profile_id"
)
# Enter (insert) or leave (delete) a segment, and log the change only if there was one.
_SET_SEGMENT = (
    "WITH entered AS (INSERT INTO segment_memberships (segment, profile_id, entered_at) "
    "SELECT %(segment)s, %(profile_id)s, %(at)s WHERE %(member)s "
    "ON CONFLICT DO NOTHING RETURNING 1), "
    "left_segment AS (DELETE FROM segment_memberships WHERE NOT %(member)s "
    "AND segment = %(segment)s AND profile_id = %(profile_id)s RETURNING 1) "
    "INSERT INTO segment_changes (segment, profile_id, change, at) "
    "SELECT %(segment)s, %(profile_id)s, CASE WHEN %(member)s THEN 'enter' ELSE 'exit' END, "
    "%(at)s WHERE EXISTS (SELECT 1 FROM entered) OR EXISTS (SELECT 1 FROM left_segment)"
)


def _unstorable(error: psycopg.DataError) -> InvalidInput:
    """A value PostgreSQL cannot hold (a NUL character in text): bad input, not a failure."""
    return InvalidInput(f"the profile store cannot store this value: {first_line(error)}")


class _PostgresWriter(ProfileWriter):
    """The write verbs on the transaction's connection; valid only inside it.

    Like the SQLite writer it remembers which profile owns each identity it looked up or
    linked (`_owners`, None for "unknown") and what it learnt about tombstones, for the
    transaction's lifetime. `_owners` also tells a race from a caller's mistake: linking an
    identity this transaction saw unknown, now owned by another profile, means another
    transaction linked it meanwhile (`Unavailable`: retry), not a refused re-link; and
    loading a profile the graph gave this transaction, now gone, means another one merged
    it away. So a caller loads the profile it links identities to before it commits, as
    the stream processor does: that load waits for a concurrent merge and then fails.
    """

    def __init__(self, connection: Connection, erasure_lock: str, change_log_lock: str) -> None:
        self._connection = connection
        # One cursor for the whole transaction: a new one per statement costs ~10 µs.
        self._cursor = connection.cursor()
        self._open = True
        self._owners: dict[Identity, str | None] = {}
        self._now: str | None = None
        self._tombstoned: dict[str, bool] = {}
        self._erasure_lock: str | None = erasure_lock  # None once held
        self._change_log_lock: str | None = change_log_lock
        # Writes nobody needs an answer from wait for `flush`: new profiles (rows for
        # _CREATE), saves (profile id -> state, created_at, number of saves) and segment
        # changes (in call order).
        self._creates: dict[str, tuple[bytes, int, str]] = {}
        self._saves: dict[str, tuple[bytes, str, int]] = {}
        self._segments: list[dict[str, Any]] = []
        # Timeline rows of message ids announced by `expect_events`: which of them are
        # applied already (or buffered here), and the rows waiting for `flush`.
        self._expected: set[str] = set()
        self._applied: set[str] = set()
        self._events: list[tuple[str, str, str, str, str | None, bytes]] = []

    def _stamp(self) -> str:
        """The `updated_at` of rows this transaction writes: its first write's time."""
        if self._now is None:
            self._now = isoformat(utcnow())
        return self._now

    def _check_open(self) -> None:
        if not self._open:
            raise TouchpointError("this writer's transaction has ended")

    def _run(self, query: str, params: Any = None, *, binary: bool = False) -> psycopg.Cursor[Any]:
        """Execute on the transaction's cursor (results to be read before the next call)."""
        self._check_open()
        try:
            return self._cursor.execute(query, params, binary=binary)
        except psycopg.DataError as error:
            raise _unstorable(error) from error

    def close(self) -> None:
        self._open = False
        self._cursor.close()

    def flush(self) -> None:
        """Write what is buffered, in call order per kind: new profiles (one INSERT), saves
        (one UPDATE), segment changes (one pipelined batch). Before any read of a profile
        or its memberships, and before commit. A duplicate profile id is refused
        (TouchpointError), a save of a missing profile is NotFound."""
        if self._creates:
            creates, self._creates = self._creates, {}
            rows_in = list(creates.values())
            rows = self._run(
                _CREATE,
                (
                    list(creates),
                    [state for state, _, _ in rows_in],
                    [version for _, version, _ in rows_in],
                    [created_at for _, _, created_at in rows_in],
                    [self._stamp()] * len(rows_in),
                ),
            ).fetchall()
            if len(rows) != len(creates):
                taken = sorted(set(creates) - {str(row[0]) for row in rows})
                raise TouchpointError(f"profile {taken[0]} already exists")
        if self._saves:
            saves, self._saves = self._saves, {}
            ids = list(saves)
            saved = list(saves.values())
            rows = self._run(
                _SAVE,
                (
                    self._stamp(),
                    ids,
                    [state for state, _, _ in saved],
                    [created_at for _, created_at, _ in saved],
                    [count for _, _, count in saved],
                ),
            ).fetchall()
            if len(rows) != len(ids):
                missing = sorted(set(ids) - {str(row[0]) for row in rows})
                raise NotFound(f"profile {missing[0]} does not exist")
        if self._events:
            events, self._events = self._events, []
            columns = [list(column) for column in zip(*events, strict=True)]
            inserted = self._run(_RECORD_MANY, columns)
            if len(inserted.fetchall()) != len(events):
                # Another transaction applied one of them since `expect_events` looked.
                raise Unavailable("an event of this batch was applied concurrently; retry")
        if self._segments:
            segments, self._segments = self._segments, []
            self._lock_change_log()
            try:
                self._cursor.executemany(_SET_SEGMENT, segments)
            except psycopg.DataError as error:
                raise _unstorable(error) from error

    def find_many(self, identities: Sequence[Identity]) -> dict[Identity, str]:
        owners = self._owners
        unknown = [identity for identity in dict.fromkeys(identities) if identity not in owners]
        for start in range(0, len(unknown), _FIND_CHUNK):
            chunk = unknown[start : start + _FIND_CHUNK]
            values = [part for identity in chunk for part in (identity.kind, identity.value)]
            for kind, value, profile_id in self._run(_find_many_sql(len(chunk)), values):
                owners[Identity(kind, value)] = profile_id
        for identity in unknown:
            owners.setdefault(identity, None)
        found: dict[Identity, str] = {}
        for identity in identities:
            owner = owners[identity]
            if owner is not None:
                found[identity] = owner
        return found

    def load(self, profile_id: str) -> Profile | None:
        self.flush()
        row = self._run(
            "SELECT * FROM profile_for_update(%s)", (profile_id,), binary=True
        ).fetchone()
        if row is None:
            if profile_id in self._owners.values():
                # The graph said it exists in this transaction: another one merged it away.
                raise Unavailable(f"profile {profile_id} was merged concurrently; retry")
            return None
        return profile_from_row(profile_id, *row)

    def create(self, profile: Profile) -> None:
        self._check_open()
        if profile.profile_id in self._creates:
            raise TouchpointError(f"profile {profile.profile_id} already exists")
        state = orjson.dumps(profile.state())
        self._creates[profile.profile_id] = (state, profile.version, profile.created_at)

    def save(self, profile: Profile) -> None:
        self._check_open()
        pending = self._saves.get(profile.profile_id)
        count = 1 if pending is None else pending[2] + 1
        self._saves[profile.profile_id] = (
            orjson.dumps(profile.state()),
            profile.created_at,
            count,
        )
        profile.version += 1

    def link(self, profile_id: str, identity: Identity, *, message_id: str, at: str) -> None:
        params = {
            "kind": identity.kind,
            "value": identity.value,
            "profile_id": profile_id,
            "message_id": message_id,
            "at": at,
        }
        row = self._run(_LINK, params).fetchone()
        if row is None:
            # The insert conflicted with a row committed after this statement began.
            raise Unavailable(f"identity {identity.kind} was linked concurrently; retry")
        owner, inserted = str(row[0]), bool(row[1])
        seen_unknown = identity in self._owners and self._owners[identity] is None
        self._owners[identity] = owner
        if inserted or owner == profile_id:
            return
        if seen_unknown:
            raise Unavailable(f"identity {identity.kind} was linked concurrently; retry")
        # Moving an identity between profiles is a merge, never a silent re-link.
        raise TouchpointError(f"identity {identity.kind} is already linked to another profile")

    def merge(
        self, survivor_id: str, merged_id: str, *, identity: Identity, message_id: str, at: str
    ) -> None:
        if survivor_id == merged_id:
            raise TouchpointError("a profile cannot be merged into itself")
        self._check_open()
        self.flush()
        postgres_erase.merge(
            self._cursor,
            survivor_id,
            merged_id,
            identity=identity,
            message_id=message_id,
            at=at,
            lock_change_log=self._lock_change_log,
        )
        owners = self._owners
        for known, owner in owners.items():
            if owner == merged_id:
                owners[known] = survivor_id

    def _lock_change_log(self) -> None:
        """Hold the change-log lock until commit, so change ids increase in commit order."""
        if self._change_log_lock is not None:
            self._run(_EXCLUSIVE_LOCK, (self._change_log_lock,))
            self._change_log_lock = None

    def expect_events(self, message_ids: Collection[str]) -> None:
        """See `ProfileWriter.expect_events`: one query finds which are applied already; the
        others' rows are buffered by `record_event` and inserted in one statement by
        `flush`."""
        unknown = [m for m in dict.fromkeys(message_ids) if m not in self._expected]
        if not unknown:
            return
        rows = self._run("SELECT message_id FROM timeline WHERE message_id = ANY(%s)", (unknown,))
        self._applied.update(str(row[0]) for row in rows.fetchall())
        self._expected.update(unknown)

    def record_event(self, profile_id: str, event: TimelineEvent) -> bool:
        encoded = event.encoded if event.encoded is not None else orjson.dumps(event.event)
        if event.message_id in self._expected:
            self._check_open()
            if event.message_id in self._applied:
                return False
            self._applied.add(event.message_id)
            self._events.append(
                (event.message_id, profile_id, event.timestamp, event.type, event.name, encoded)
            )
            return True
        cursor = self._run(
            _RECORD,
            (
                event.message_id,
                profile_id,
                event.timestamp,
                event.type,
                event.name,
                encoded,
            ),
        )
        return cursor.rowcount > 0

    def timeline(self, profile_id: str) -> Iterator[TimelineEvent]:
        self.flush()
        rows = self._run(
            f"SELECT {TIMELINE_COLUMNS} FROM timeline WHERE profile_id = %s "
            "ORDER BY event_time, seq",
            (profile_id,),
            binary=True,
        ).fetchall()
        return (timeline_event(row) for row in rows)

    def tombstoned(self, keys: Collection[str]) -> set[str]:
        """See `ProfileWriter.tombstoned`. The first call holds the erasure lock (shared)
        until commit, so no erasure commits while this transaction applies events; each key
        is looked up once per transaction."""
        if self._erasure_lock is not None:
            self._run(_SHARED_LOCK, (self._erasure_lock,))
            self._erasure_lock = None
        known = self._tombstoned
        unknown = [key for key in dict.fromkeys(keys) if key not in known]
        if unknown:
            rows = self._run("SELECT key FROM tombstones WHERE key = ANY(%s)", (unknown,))
            found = {str(row[0]) for row in rows.fetchall()}
            for key in unknown:
                known[key] = key in found
        return {key for key in keys if known[key]}

    def set_segment(self, profile_id: str, segment: str, *, member: bool, at: str) -> None:
        self._check_open()
        values = {"segment": segment, "profile_id": profile_id, "member": member, "at": at}
        self._segments.append(values)


class PostgresProfileStore(ProfileStore):
    """Profiles, identity graph, timelines and segments in PostgreSQL (server mode).

    Runs on the workspace's shared `Postgres` pool (which `close` leaves open: the
    workspace closes it). Creates or upgrades its tables on open (`MIGRATIONS`).
    """

    def __init__(self, postgres: Postgres) -> None:
        self._postgres = postgres
        postgres.ensure(MIGRATIONS)
        self._erasure_lock = f"touchpoint.profiles.erasure.{postgres.schema}"
        self._change_log_lock = f"touchpoint.profiles.segment_changes.{postgres.schema}"
        self._closed = False

    def _read(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` on a pooled connection, again on a fresh one if that one was
        dead (a restarted server leaves every idle pooled connection so): a read can always
        be repeated. No second wait when the pool found no server at all."""
        if self._closed:
            raise TouchpointError("the profile store is closed")
        try:
            with self._postgres.connection(STORE) as connection:
                return work(connection)
        except Unavailable as error:
            if isinstance(error.__cause__, PoolTimeout):
                raise
            logger.warning("the %s lost a PostgreSQL connection; reading again", STORE)
        with self._postgres.connection(STORE) as connection:
            return work(connection)

    def _query(self, query: str, params: Any) -> list[tuple[Any, ...]]:
        return self._read(lambda connection: connection.execute(query, params).fetchall())

    @contextmanager
    def transaction(self) -> Iterator[ProfileWriter]:
        """One PostgreSQL transaction on one pooled connection: committed when the block
        ends, rolled back on an exception. A lost connection, a deadlock or a race with
        another writer surfaces as `Unavailable` (retry the whole block)."""
        if self._closed:
            raise TouchpointError("the profile store is closed")
        with self._postgres.transaction(STORE) as connection:
            writer = _PostgresWriter(connection, self._erasure_lock, self._change_log_lock)
            try:
                yield writer
                writer.flush()
            finally:
                writer.close()

    def find(self, identity: Identity) -> str | None:
        if not storable(identity.kind, identity.value):
            return None
        rows = self._query(_FIND, (identity.kind, identity.value))
        return str(rows[0][0]) if rows else None

    def get(self, profile_id: str) -> Profile | None:
        if not storable(profile_id):
            return None
        return self._read(lambda connection: postgres_erase.get_profile(connection, profile_id))

    def events(
        self, profile_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> Page[TimelineEvent]:
        if not storable(profile_id):
            profile_id = ""  # nothing like it was stored; the cursor is still checked
        return self._read(
            lambda connection: postgres_erase.events_page(connection, profile_id, cursor, limit)
        )

    def lineage(self, profile_id: str) -> list[MergeRecord]:
        if not storable(profile_id):
            return []
        return self._read(lambda connection: postgres_erase.lineage(connection, profile_id))

    def segment_members(
        self, segment: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[tuple[str, str]]:
        limit = page_limit(limit)
        after = text_cursor(cursor)
        if not storable(segment):
            return Page([], None)
        rows = self._query(
            "SELECT profile_id, entered_at FROM segment_memberships "
            "WHERE segment = %s AND profile_id > %s ORDER BY profile_id LIMIT %s",
            (segment, after, limit + 1),
        )
        items = [(str(row[0]), str(row[1])) for row in rows[:limit]]
        return Page(items, encode_cursor(items[-1][0]) if len(rows) > limit else None)

    def segment_sizes(self) -> dict[str, int]:
        rows = self._query(
            "SELECT segment, count(*) FROM segment_memberships GROUP BY segment ORDER BY segment",
            (),
        )
        return {str(segment): int(size) for segment, size in rows}

    def segment_changes(
        self, *, since_id: int = 0, limit: int = 1000
    ) -> list[tuple[int, SegmentChange]]:
        rows = self._query(
            "SELECT id, segment, profile_id, change, at FROM segment_changes "
            "WHERE id > %s ORDER BY id LIMIT %s",
            (min(max(since_id, -1), MAX_BIGINT), page_limit(limit)),
        )
        return [(int(row[0]), SegmentChange(row[1], row[2], row[3], row[4])) for row in rows]

    def profile_ids(self, *, cursor: str | None = None, limit: int = 1000) -> Page[str]:
        limit = page_limit(limit)
        rows = self._query(
            "SELECT profile_id FROM profiles WHERE profile_id > %s ORDER BY profile_id LIMIT %s",
            (text_cursor(cursor), limit + 1),
        )
        items = [str(row[0]) for row in rows[:limit]]
        return Page(items, encode_cursor(items[-1]) if len(rows) > limit else None)

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM profiles", ())[0][0])

    def segment_history(self, profile_id: str) -> list[SegmentChange]:
        """See `ProfileStore.segment_history`: the survivor's changes and those of every
        profile merged into it, oldest first (one query)."""
        if not storable(profile_id):
            return []
        return self._read(lambda connection: postgres_erase.segment_history(connection, profile_id))

    def erase(
        self,
        profile_id: str,
        *,
        tombstone_key: Callable[[Identity], str],
        extra_tombstones: Collection[str] = (),
        job_id: str,
        at: str,
    ) -> ErasedProfile | None:
        """See `ProfileStore.erase`: one transaction holding the erasure lock exclusively (it
        waits for the stream batches in flight; later ones wait for it and see its
        tombstones)."""
        if not storable(profile_id):
            return None
        if self._closed:
            raise TouchpointError("the profile store is closed")
        with self._postgres.transaction(STORE) as connection:
            connection.execute(_EXCLUSIVE_LOCK, (self._erasure_lock,))
            return postgres_erase.erase_person(
                connection,
                profile_id,
                tombstone_key=tombstone_key,
                extra_tombstones=extra_tombstones,
                job_id=job_id,
                at=at,
            )

    def tombstone(self, key: str) -> str | None:
        """See `ProfileStore.tombstone`."""
        if not storable(key):
            return None
        rows = self._query("SELECT job_id FROM tombstones WHERE key = %s", (key,))
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        """Refuse further use; the shared pool stays open (the workspace closes it)."""
        self._closed = True
