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

Round trips in the hot path (the processor's batch, profiles.postgres_writer): one query
for the batch's announced message ids (`expect_events`; their timeline rows are then
inserted in one statement), `find_many` one per set of identities not seen yet in the
transaction, `load` one, `link` one. What needs no answer is buffered and written by
`flush` before the next read of what it changes and at commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from psycopg_pool import PoolTimeout

from touchpoint.core.errors import TouchpointError, Unavailable
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page
from touchpoint.core.postgres import Migration, Postgres
from touchpoint.profiles.model import Identity, MergeRecord, Profile
from touchpoint.profiles.store import postgres_erase
from touchpoint.profiles.store.base import (
    ErasedProfile,
    ProfileStore,
    ProfileWriter,
    SegmentChange,
    TimelineEvent,
)
from touchpoint.profiles.store.postgres_erase import (
    MAX_BIGINT,
    Connection,
    encode_cursor,
    page_limit,
    storable,
    text_cursor,
)
from touchpoint.profiles.store.postgres_writer import EXCLUSIVE_LOCK, FIND_SQL, PostgresWriter

logger = logging.getLogger(__name__)

T = TypeVar("T")
STORE = "profile store"
# The tables an erasure deletes from (postgres_erase), vacuumed after it.
ERASED_TABLES = (
    "profiles",
    "identities",
    "timeline",
    "segment_memberships",
    "segment_changes",
    "merges",
    "profile_redirects",
)
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
# The same for many profiles at once, locked in id order (so two batches cannot deadlock
# on each other's rows through this function).
_LOAD_MANY = """
CREATE FUNCTION profiles_for_update(wanted text[])
RETURNS TABLE (found_id text, found_state bytea, found_version bigint,
               found_identities text, found_segments text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM profiles AS p WHERE p.profile_id = ANY(wanted)
        ORDER BY p.profile_id FOR UPDATE;
    RETURN QUERY
    SELECT p.profile_id::text, p.state, p.version,
        (SELECT json_agg(json_build_array(i.kind, i.value)
                         ORDER BY i.linked_at, i.kind, i.value)::text
         FROM identities AS i WHERE i.profile_id = p.profile_id),
        (SELECT json_object_agg(m.segment, m.entered_at ORDER BY m.segment)::text
         FROM segment_memberships AS m WHERE m.profile_id = p.profile_id)
    FROM profiles AS p WHERE p.profile_id = ANY(wanted);
END
$$;
"""
MIGRATIONS: list[Migration] = [
    Migration("profiles", 1, _SCHEMA),
    Migration("profiles", 2, _LOAD_MANY),
]


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
            writer = PostgresWriter(connection, self._erasure_lock, self._change_log_lock)
            try:
                yield writer
                writer.flush()
            finally:
                writer.close()

    def find(self, identity: Identity) -> str | None:
        if not storable(identity.kind, identity.value):
            return None
        rows = self._query(FIND_SQL, (identity.kind, identity.value))
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
            connection.execute(EXCLUSIVE_LOCK, (self._erasure_lock,))
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

    def scrub(self) -> list[Leftover]:
        """See `ProfileStore.scrub`: the tables an erasure deletes from are vacuumed."""
        return self._postgres.vacuum(STORE, ERASED_TABLES, name="profile_store")

    def close(self) -> None:
        """Refuse further use; the shared pool stays open (the workspace closes it)."""
        self._closed = True
