"""Merges in the PostgreSQL profile store: making them, the reads that follow them (a
merged-away id resolves to its survivor; a person is every id merged into them), and
erasing a person with everything merged into them.

Functions over a connection, so `PostgresProfileStore` keeps its methods thin. Each read
is one statement: the redirect chain is followed in SQL (`TARGET`), then the profile with
its identities and segments (JSON aggregates), a timeline page or the lineage is read in
the same query.

`erase_person` runs inside the caller's transaction, which holds the erasure lock
exclusively: the profile rows, identities, timeline, memberships, segment changes, merge
lineage and redirects go in the same commit that writes the tombstones, so no stream batch
can find the person half erased and rebuild them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson
import psycopg

from touchpoint.core.errors import BadRequest, NotFound
from touchpoint.core.pages import Page
from touchpoint.profiles.model import Identity, MergeRecord, Profile
from touchpoint.profiles.store.base import ErasedProfile, SegmentChange, TimelineEvent

Connection = psycopg.Connection[tuple[Any, ...]]
Cursor = psycopg.Cursor[tuple[Any, ...]]

# A merge chain is compressed on every merge, so one hop is the norm; the bound only guards
# against corrupted rows looping forever (as in the SQLite store).
MAX_HOPS = 64
# Larger than any page a caller can want, small enough for a bigint with room for `+ 1`.
MAX_LIMIT = 1 << 40
MAX_BIGINT = (1 << 63) - 1

# `target`: the profile id `%(id)s` resolves to through redirects (itself if none).
TARGET = (
    "WITH RECURSIVE chain (profile_id, hops) AS ("
    'SELECT %(id)s::text COLLATE "C", 0 UNION ALL '
    "SELECT r.survivor_id, c.hops + 1 FROM chain AS c "
    f"JOIN profile_redirects AS r ON r.merged_id = c.profile_id WHERE c.hops < {MAX_HOPS}), "
    "target AS (SELECT profile_id FROM chain ORDER BY hops DESC LIMIT 1)"
)
# `person`: the target and every profile id ever folded into it (redirects and lineage,
# followed transitively: an uncompressed or corrupted chain still finds them all).
_PERSON = (
    f"{TARGET}, person (profile_id, depth) AS ("
    "SELECT profile_id, 0 FROM target UNION "
    "SELECT link.merged_id, person.depth + 1 FROM person JOIN ("
    "SELECT survivor_id, merged_id FROM profile_redirects UNION ALL "
    "SELECT survivor_id, merged_id FROM merges) AS link ON link.survivor_id = person.profile_id "
    f"WHERE person.depth < {MAX_HOPS})"
)
_PROFILE_COLUMNS = (
    "p.state, p.version, "
    "(SELECT json_agg(json_build_array(i.kind, i.value) ORDER BY i.linked_at, i.kind, i.value)"
    "::text FROM identities AS i WHERE i.profile_id = p.profile_id), "
    "(SELECT json_object_agg(m.segment, m.entered_at ORDER BY m.segment)::text "
    "FROM segment_memberships AS m WHERE m.profile_id = p.profile_id)"
)
_GET = (
    f"{TARGET} SELECT p.profile_id, {_PROFILE_COLUMNS} FROM profiles AS p "
    "WHERE p.profile_id = (SELECT profile_id FROM target)"
)
# The same through one redirect at most: chains are compressed at every merge, so this finds
# every profile, ~50 µs sooner than the recursive walk (which only an id it misses needs).
_GET_ONE_HOP = (
    "SELECT p.profile_id, " + _PROFILE_COLUMNS + " FROM profiles AS p WHERE p.profile_id = "
    "COALESCE((SELECT survivor_id FROM profile_redirects WHERE merged_id = %(id)s), %(id)s)"
)
TIMELINE_COLUMNS = "message_id, event_time, type, name, event, seq"
_LINEAGE = (
    f"{TARGET} SELECT survivor_id, merged_id, identity_kind, identity_value, message_id, at "
    "FROM merges WHERE survivor_id = (SELECT profile_id FROM target) OR survivor_id IN "
    "(SELECT merged_id FROM profile_redirects WHERE survivor_id = (SELECT profile_id FROM target))"
    " ORDER BY id"
)
_HISTORY = (
    f"{_PERSON} SELECT segment, profile_id, change, at FROM segment_changes "
    "WHERE profile_id IN (SELECT profile_id FROM person) ORDER BY id"
)
_LOG_CHANGE = (
    "INSERT INTO segment_changes (segment, profile_id, change, at) VALUES (%s, %s, %s, %s)"
)
_MERGE = (
    "WITH moved_identities AS (UPDATE identities SET profile_id = %(survivor)s "
    "WHERE profile_id = %(merged)s), "
    "moved_events AS (UPDATE timeline SET profile_id = %(survivor)s "
    "WHERE profile_id = %(merged)s), "
    # Compress the chain: whatever pointed at the merged id now points at the survivor.
    "compressed AS (UPDATE profile_redirects SET survivor_id = %(survivor)s "
    "WHERE survivor_id = %(merged)s), "
    "redirected AS (INSERT INTO profile_redirects (merged_id, survivor_id) "
    "VALUES (%(merged)s, %(survivor)s) "
    "ON CONFLICT (merged_id) DO UPDATE SET survivor_id = EXCLUDED.survivor_id), "
    "recorded AS (INSERT INTO merges (survivor_id, merged_id, identity_kind, identity_value, "
    "message_id, at) VALUES (%(survivor)s, %(merged)s, %(kind)s, %(value)s, %(message_id)s, "
    "%(at)s)) "
    "DELETE FROM profiles WHERE profile_id = %(merged)s"
)
_MOVED_MEMBERSHIPS = (
    "SELECT moved.segment, moved.entered_at, kept.entered_at FROM segment_memberships AS moved "
    "LEFT JOIN segment_memberships AS kept "
    "ON kept.segment = moved.segment AND kept.profile_id = %(survivor)s "
    "WHERE moved.profile_id = %(merged)s ORDER BY moved.segment"
)
_MOVE_MEMBERSHIPS = (
    "WITH moved AS (DELETE FROM segment_memberships WHERE profile_id = %(merged)s "
    "RETURNING segment, entered_at) "
    "INSERT INTO segment_memberships (segment, profile_id, entered_at) "
    "SELECT segment, %(survivor)s, entered_at FROM moved "
    "ON CONFLICT (segment, profile_id) DO UPDATE "
    "SET entered_at = LEAST(segment_memberships.entered_at, EXCLUDED.entered_at)"
)

_DELETES = {
    "profiles": "DELETE FROM profiles WHERE profile_id = ANY(%(ids)s)",
    "identities": "DELETE FROM identities WHERE profile_id = ANY(%(ids)s)",
    "timeline_events": "DELETE FROM timeline WHERE profile_id = ANY(%(ids)s)",
    "segment_memberships": "DELETE FROM segment_memberships WHERE profile_id = ANY(%(ids)s)",
    "segment_changes": "DELETE FROM segment_changes WHERE profile_id = ANY(%(ids)s)",
    "merges": "DELETE FROM merges WHERE survivor_id = ANY(%(ids)s) OR merged_id = ANY(%(ids)s)",
    "redirects": (
        "DELETE FROM profile_redirects WHERE survivor_id = ANY(%(ids)s) OR merged_id = ANY(%(ids)s)"
    ),
}


def storable(*values: str) -> bool:
    """Whether PostgreSQL text can hold these values (no NUL character). A lookup of one
    that cannot finds nothing, since nothing like it was ever stored."""
    return not any("\x00" in value for value in values)


def encode_cursor(*parts: str | int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode("ascii")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The parts of a cursor `encode_cursor` made; BadRequest for anything else."""
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeError) as error:
        raise BadRequest("invalid cursor") from error
    if not isinstance(parts, list) or len(parts) != arity:
        raise BadRequest("invalid cursor")
    return parts


def text_cursor(cursor: str | None) -> str:
    """The key a one-part cursor resumes after ("" for the first page)."""
    after = "" if cursor is None else str(decode_cursor(cursor, 1)[0])
    if not storable(after):
        raise BadRequest("invalid cursor")
    return after


def page_limit(limit: int) -> int:
    return min(max(1, limit), MAX_LIMIT)


def profile_from_row(
    profile_id: str, state: Any, version: Any, identities: Any, segments: Any
) -> Profile:
    """A profile from `_PROFILE_COLUMNS`: state bytes, version, identities and segments."""
    pairs = orjson.loads(identities) if identities is not None else []
    return Profile.from_state(
        profile_id,
        orjson.loads(state),
        identities=[Identity(kind, value) for kind, value in pairs],
        segments=orjson.loads(segments) if segments is not None else {},
        version=int(version),
    )


def timeline_event(row: Sequence[Any]) -> TimelineEvent:
    """A timeline event from `TIMELINE_COLUMNS` (the stored payload kept as `encoded`)."""
    event = bytes(row[4])
    return TimelineEvent(row[0], row[1], row[2], row[3], orjson.loads(event), encoded=event)


def get_profile(db: Connection, profile_id: str) -> Profile | None:
    """The profile `profile_id` resolves to, with identities and segments; one query."""
    row = db.execute(_GET_ONE_HOP, {"id": profile_id}, binary=True).fetchone()
    if row is None:
        row = db.execute(_GET, {"id": profile_id}, binary=True).fetchone()
    return None if row is None else profile_from_row(*row)


def events_page(
    db: Connection, profile_id: str, cursor: str | None, limit: int
) -> Page[TimelineEvent]:
    """A page of the timeline of the profile `profile_id` resolves to, newest first."""
    limit = page_limit(limit)
    after, params = "", {"id": profile_id, "limit": limit + 1}
    if cursor is not None:
        timestamp, seq = decode_cursor(cursor, 2)
        if not isinstance(timestamp, str) or not storable(timestamp):
            raise BadRequest("invalid cursor")
        if type(seq) is not int or not 0 <= seq <= MAX_BIGINT:
            raise BadRequest("invalid cursor")
        after = "AND (event_time, seq) < (%(time)s, %(seq)s)"
        params.update(time=timestamp, seq=seq)
    rows = db.execute(
        f"{TARGET} SELECT {TIMELINE_COLUMNS} FROM timeline "
        f"WHERE profile_id = (SELECT profile_id FROM target) {after} "
        "ORDER BY event_time DESC, seq DESC LIMIT %(limit)s",
        params,
        binary=True,
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1][1], rows[-1][5]) if more else None
    return Page(items=[timeline_event(row) for row in rows], next_cursor=next_cursor)


def lineage(db: Connection, profile_id: str) -> list[MergeRecord]:
    """Every merge that built the profile `profile_id` resolves to, oldest first."""
    rows = db.execute(_LINEAGE, {"id": profile_id}).fetchall()
    return [MergeRecord(row[0], row[1], Identity(row[2], row[3]), row[4], row[5]) for row in rows]


def segment_history(db: Connection, profile_id: str) -> list[SegmentChange]:
    """Every enter/exit of the person `profile_id` resolves to (every id merged into them
    too), oldest first by change-log id."""
    rows = db.execute(_HISTORY, {"id": profile_id}).fetchall()
    return [SegmentChange(row[0], row[1], row[2], row[3]) for row in rows]


def merge(
    cursor: Cursor,
    survivor_id: str,
    merged_id: str,
    *,
    identity: Identity,
    message_id: str,
    at: str,
    lock_change_log: Callable[[], None],
) -> None:
    """Fold `merged_id` into `survivor_id` (see `ProfileWriter.merge`), both locked first;
    NotFound, before any write, if either does not exist. `lock_change_log` is called before
    the segment change log is written."""
    rows = cursor.execute(
        "SELECT profile_id FROM profiles WHERE profile_id = ANY(%s) FOR UPDATE",
        ([survivor_id, merged_id],),
    ).fetchall()
    present = {str(row[0]) for row in rows}
    for wanted in (survivor_id, merged_id):
        if wanted not in present:
            raise NotFound(f"profile {wanted} does not exist")
    ids = {"survivor": survivor_id, "merged": merged_id, "at": at}
    # The survivor takes the merged profile's memberships (the earlier entry time wins).
    # The change log says what happened to each id, in the SQLite store's order: per
    # segment, the merged id exits, and the survivor enters if it was not in it.
    changes: list[tuple[str, str, str, str]] = []
    for segment, _, kept in cursor.execute(_MOVED_MEMBERSHIPS, ids).fetchall():
        changes.append((segment, merged_id, "exit", at))
        if kept is None:
            changes.append((segment, survivor_id, "enter", at))
    if changes:
        lock_change_log()
        cursor.executemany(_LOG_CHANGE, changes)
        cursor.execute(_MOVE_MEMBERSHIPS, ids)
    merge_record = {"kind": identity.kind, "value": identity.value, "message_id": message_id}
    cursor.execute(_MERGE, {**ids, **merge_record})


def erase_person(
    db: Connection,
    profile_id: str,
    *,
    tombstone_key: Callable[[Identity], str],
    extra_tombstones: Collection[str],
    job_id: str,
    at: str,
) -> ErasedProfile | None:
    """Erase the person `profile_id` resolves to and everything merged into them, inside
    the caller's transaction; None if that profile does not exist."""
    exists = db.execute(
        f"{TARGET} SELECT profile_id FROM profiles "
        "WHERE profile_id = (SELECT profile_id FROM target) FOR UPDATE",
        {"id": profile_id},
    ).fetchone()
    if exists is None:
        return None
    ids = [
        str(row[0])
        for row in db.execute(
            f"{_PERSON} SELECT profile_id FROM person GROUP BY profile_id "
            "ORDER BY min(depth), profile_id",
            {"id": exists[0]},
        ).fetchall()
    ]
    found = {"ids": ids}
    # The identities of the graph, then those named in the lineage (moved by a merge).
    identities = [
        Identity(str(kind), str(value))
        for kind, value in db.execute(
            "SELECT kind, value FROM identities WHERE profile_id = ANY(%(ids)s) "
            "UNION ALL SELECT identity_kind, identity_value FROM merges "
            "WHERE survivor_id = ANY(%(ids)s)",
            found,
        ).fetchall()
    ]
    identities = list(dict.fromkeys(identities))
    message_ids = [
        str(row[0])
        for row in db.execute(
            "SELECT message_id FROM timeline WHERE profile_id = ANY(%(ids)s)", found
        ).fetchall()
    ]
    counts = {kind: db.execute(sql, found).rowcount for kind, sql in _DELETES.items()}
    keys = dict.fromkeys([*(tombstone_key(identity) for identity in identities), *extra_tombstones])
    if keys:  # recorded, or re-pointed to this job
        db.execute(
            "INSERT INTO tombstones (key, job_id, at) SELECT key, %s, %s FROM unnest(%s::text[]) "
            "AS key ON CONFLICT (key) DO UPDATE SET job_id = EXCLUDED.job_id, at = EXCLUDED.at",
            (job_id, at, list(keys)),
        )
    return ErasedProfile(
        profile_ids=tuple(ids),
        identities=tuple(identities),
        message_ids=tuple(message_ids),
        counts=counts,
    )
