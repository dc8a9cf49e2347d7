"""The PostgreSQL profile store's writer: the verbs of one transaction (see
profiles.postgres for the store and the design).

What needs no answer is buffered and written by `flush` before the next `load`,
`merge` or `timeline` read and at commit: new profiles in one INSERT, saves in one
UPDATE, the timeline rows of message ids announced by `expect_events` in one INSERT,
segment changes in one pipelined batch (which also keeps the change-log lock for the
last moments of the transaction only).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import orjson
import psycopg

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import InvalidInput, NotFound, TouchpointError, Unavailable
from touchpoint.core.servers import first_line
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store import postgres_erase
from touchpoint.profiles.store.base import ProfileWriter, TimelineEvent
from touchpoint.profiles.store.postgres_erase import (
    TIMELINE_COLUMNS,
    Connection,
    profile_from_row,
    timeline_event,
)

_SHARED_LOCK = "SELECT pg_advisory_xact_lock_shared(hashtext(%s))"
EXCLUSIVE_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"

FIND_SQL = "SELECT profile_id FROM identities WHERE kind = %s AND value = %s"
# Identities asked at once; a row-value list per count is prepared once, and costs half
# of what the same lookup with two arrays does (psycopg dumps arrays slowly).
_FIND_CHUNK = 32  # up to this many identities: a row-value IN list; more: an unnest join
_FIND_JOIN = (
    "SELECT i.kind, i.value, i.profile_id FROM unnest(%s::text[], %s::text[]) AS w (kind, value) "
    "JOIN identities AS i ON i.kind = w.kind AND i.value = w.value"
)


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


class PostgresWriter(ProfileWriter):
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
        if len(unknown) <= _FIND_CHUNK:
            if unknown:
                values = [part for identity in unknown for part in (identity.kind, identity.value)]
                for kind, value, profile_id in self._run(_find_many_sql(len(unknown)), values):
                    owners[Identity(kind, value)] = profile_id
        else:  # a whole batch's identities (the processor's prefetch): one join
            kinds = [identity.kind for identity in unknown]
            values = [identity.value for identity in unknown]
            for kind, value, profile_id in self._run(_FIND_JOIN, (kinds, values)):
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

    def load_many(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """See `ProfileWriter.load_many`: every row locked (in id order) and read in one
        round trip."""
        wanted = sorted(set(profile_ids))
        if not wanted:
            return {}
        self.flush()
        rows = self._run(
            "SELECT * FROM profiles_for_update(%s::text[])", (wanted,), binary=True
        ).fetchall()
        return {str(row[0]): profile_from_row(str(row[0]), *row[1:]) for row in rows}

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
            self._run(EXCLUSIVE_LOCK, (self._change_log_lock,))
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
