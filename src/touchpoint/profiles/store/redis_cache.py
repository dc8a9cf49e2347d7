"""A read-through Redis cache in front of a profile store, for the lookups of the hot path.

The profile API and the decide engine resolve a person with `find(identity)` then
`get(profile_id)`: `CachedProfileStore` answers both from Redis, reading through to the
wrapped store (SQLite or PostgreSQL) on a miss; everything else goes to the wrapped store.
Keys: `cache:profile:<id>` (orjson: state, identities, segments, version) and
`cache:identity:<sha256 of kind and value>` (a profile id, empty for none): no identifier
appears in a key. Not cached: a merged id (`get` answers with its survivor), a missing profile.

Invalidation: a write transaction records the profile ids and identities it touches (create,
save, link, set_segment; merge: both ids and the merged profile's identities) and invalidates
them after the wrapped transaction ended, never before its commit (a reader would re-fill the
old value); `erase` invalidates every id and identity of the person.

The race this closes: a reader misses and reads the old profile, is delayed; the writer
commits and invalidates; the reader then caches the old profile. So an invalidation, as it
deletes an entry, sets the marker beside it to a token of its own (random, never reused), and
a fill is a Lua script that stores only if the marker is still the one the reader saw when it
missed. `Profile.version` cannot be the marker: a segment change (the time-dependent sweep)
or a link changes a profile without a save, so without a new version. Markers live
`MARKER_TTL_SECONDS`; a reader slower than half of that does not fill.

Redis never fails a read: on any Redis error the lookup reads the wrapped store, the error is
counted (`touchpoint_profile_cache_total{result="error"}`) and logged at most once a minute,
and Redis is left alone for a pause (1 s, doubling while it keeps failing, up to 30 s) so a
hung server does not cost every lookup its socket timeout. An invalidation that fails after
a commit is remembered and sent before this process uses the cache again. Other processes
may serve the stale entry until then, and if this process stops first (or more than
`MAX_PENDING` wait) the entry lives until its TTL (`redis.cache_ttl`), which bounds it all.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar, cast

import orjson
from redis.exceptions import RedisError

from touchpoint.core.leftovers import Leftover
from touchpoint.core.metrics import Metrics
from touchpoint.core.pages import Page
from touchpoint.core.redis import RedisService
from touchpoint.core.servers import first_line
from touchpoint.profiles.model import Identity, MergeRecord, Profile
from touchpoint.profiles.store.base import (
    ErasedProfile,
    ProfileStore,
    ProfileWriter,
    SegmentChange,
    TimelineEvent,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

MARKER_TTL_SECONDS = 60.0
PAUSE_SECONDS, MAX_PAUSE_SECONDS = 1.0, 30.0
LOG_EVERY_SECONDS = 60.0
MAX_PENDING = 100_000
_CHUNK = 500  # entries per invalidation script call

# KEYS: the entry, its marker. ARGV: the marker the reader saw ("" for none), payload, TTL ms.
_FILL = """
local marker = redis.call('GET', KEYS[2])
if (marker or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS: entry, marker, entry, marker, ... ARGV: this invalidation's token, marker TTL ms.
_INVALIDATE = """
for index = 1, #KEYS, 2 do
    redis.call('SET', KEYS[index + 1], ARGV[1], 'PX', ARGV[2])
    redis.call('DEL', KEYS[index])
end
return #KEYS / 2
"""


def _profile(profile_id: str) -> str:
    return f"profile:{profile_id}"


def _identity(identity: Identity) -> str:
    digest = hashlib.sha256(orjson.dumps([identity.kind, identity.value])).hexdigest()
    return f"identity:{digest}"


def _encode_profile(profile: Profile) -> bytes:
    identities = [[identity.kind, identity.value] for identity in profile.identities]
    state, segments, version = profile.state(), profile.segments, profile.version
    return orjson.dumps(
        {"state": state, "identities": identities, "segments": segments, "version": version}
    )


def _decode_profile(profile_id: str, payload: bytes) -> Profile:
    data = orjson.loads(payload)
    return Profile.from_state(
        profile_id,
        data["state"],
        identities=[Identity(kind, value) for kind, value in data["identities"]],
        segments=data["segments"],
        version=data["version"],
    )


class _TrackingWriter(ProfileWriter):
    """The wrapped writer, noting the entry of every profile and identity a verb changes."""

    def __init__(self, inner: ProfileWriter, touched: set[str]) -> None:
        self._inner = inner
        self._touched = touched

    def find_many(self, identities: Sequence[Identity]) -> dict[Identity, str]:
        return self._inner.find_many(identities)

    def load(self, profile_id: str) -> Profile | None:
        return self._inner.load(profile_id)

    def create(self, profile: Profile) -> None:
        self._touched.add(_profile(profile.profile_id))
        self._inner.create(profile)

    def save(self, profile: Profile) -> None:
        self._touched.add(_profile(profile.profile_id))
        self._inner.save(profile)

    def link(self, profile_id: str, identity: Identity, *, message_id: str, at: str) -> None:
        self._touched.update((_profile(profile_id), _identity(identity)))
        self._inner.link(profile_id, identity, message_id=message_id, at=at)

    def merge(
        self, survivor_id: str, merged_id: str, *, identity: Identity, message_id: str, at: str
    ) -> None:
        merged = self._inner.load(merged_id)  # its identities now resolve to the survivor
        if merged is not None:
            self._touched.update(_identity(known) for known in merged.identities)
        self._touched.update((_profile(survivor_id), _profile(merged_id), _identity(identity)))
        self._inner.merge(survivor_id, merged_id, identity=identity, message_id=message_id, at=at)

    def load_many(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        return self._inner.load_many(profile_ids)

    def expect_events(self, message_ids: Collection[str]) -> None:
        self._inner.expect_events(message_ids)

    def record_event(self, profile_id: str, event: TimelineEvent) -> bool:
        return self._inner.record_event(profile_id, event)

    def timeline(self, profile_id: str) -> Iterator[TimelineEvent]:
        return self._inner.timeline(profile_id)

    def set_segment(self, profile_id: str, segment: str, *, member: bool, at: str) -> None:
        self._touched.add(_profile(profile_id))
        self._inner.set_segment(profile_id, segment, member=member, at=at)

    def tombstoned(self, keys: Collection[str]) -> set[str]:
        return self._inner.tombstoned(keys)


class CachedProfileStore(ProfileStore):
    """`inner`, with `find` and `get` served from Redis (see the module docstring).

    Entries live `redis.cache_ttl` seconds at most. Thread-safe, like the stores it wraps.
    `clock` (monotonic seconds) is for tests.
    """

    def __init__(
        self,
        inner: ProfileStore,
        redis: RedisService,
        *,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if redis.cache_ttl <= 0:
            raise ValueError("the profile cache needs a positive redis.cache_ttl")
        self.inner = inner
        self._client = redis.client
        self._entry_prefix = redis.key("cache", "")
        self._marker_prefix = redis.key("cache-marker", "")
        self._ttl_ms = max(1, int(redis.cache_ttl * 1000))
        self._fill = redis.client.register_script(_FILL)
        self._invalidate_script = redis.client.register_script(_INVALIDATE)
        self._hits = metrics.profile_cache.labels(result="hit")
        self._misses = metrics.profile_cache.labels(result="miss")
        self._errors = metrics.profile_cache.labels(result="error")
        self._clock = clock
        self._skip_until = 0.0
        self._pause = PAUSE_SECONDS
        self._last_logged: float | None = None
        self._unlogged = 0
        # Entry name -> the number of the failed invalidation that left it here.
        self._pending: dict[str, int] = {}
        self._failures = 0
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    # -- the cached reads ---------------------------------------------------------------

    def find(self, identity: Identity) -> str | None:
        return self._lookup(
            _identity(identity),
            lambda: self.inner.find(identity),
            lambda profile_id: b"" if profile_id is None else profile_id.encode(),
            lambda payload: payload.decode() or None,
        )

    def get(self, profile_id: str) -> Profile | None:
        def encode(profile: Profile | None) -> bytes | None:
            if profile is None or profile.profile_id != profile_id:
                return None  # nothing, or a survivor of a merge: not cached
            return _encode_profile(profile)

        return self._lookup(
            _profile(profile_id),
            lambda: self.inner.get(profile_id),
            encode,
            lambda payload: _decode_profile(profile_id, payload),
        )

    def _lookup(
        self,
        name: str,
        load: Callable[[], T],
        encode: Callable[[T], bytes | None],
        decode: Callable[[bytes], T],
    ) -> T:
        """The cached value of entry `name`, else `load()`, cached if `encode` gives bytes.

        Counts exactly one result per lookup: hit, miss, or error (Redis failed).
        """
        if not self._ready():
            self._errors.inc()
            return load()
        entry, marker = self._entry_prefix + name, self._marker_prefix + name
        try:
            cached, seen = cast(list[bytes | None], self._client.mget((entry, marker)))
        except RedisError as error:
            self._failed(error)
            self._errors.inc()
            return load()
        self._pause = PAUSE_SECONDS
        if cached is not None:
            try:
                value = decode(cached)
            except (ValueError, KeyError, TypeError):
                logger.debug("profile cache: an unreadable entry is read again from the store")
            else:
                self._hits.inc()
                return value
        started = self._clock()
        value = load()
        payload = encode(value)
        if payload is not None and self._clock() - started < MARKER_TTL_SECONDS / 2:
            try:
                self._fill(keys=(entry, marker), args=(seen or b"", payload, self._ttl_ms))
            except RedisError as error:
                self._failed(error)
                self._errors.inc()
                return value
        self._misses.inc()
        return value

    # -- writes and invalidation --------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[ProfileWriter]:
        """The wrapped transaction; what it touched is invalidated after it ends (committed,
        or rolled back: invalidating then costs a miss and covers a commit of unknown
        outcome)."""
        touched: set[str] = set()
        try:
            with self.inner.transaction() as writer:
                yield _TrackingWriter(writer, touched)
        finally:
            self._invalidate(touched)

    def erase(
        self,
        profile_id: str,
        *,
        tombstone_key: Callable[[Identity], str],
        extra_tombstones: Collection[str] = (),
        job_id: str,
        at: str,
    ) -> ErasedProfile | None:
        """The wrapped erase, then every profile id and identity of the person invalidated."""
        erased: ErasedProfile | None = None
        try:
            erased = self.inner.erase(
                profile_id,
                tombstone_key=tombstone_key,
                extra_tombstones=extra_tombstones,
                job_id=job_id,
                at=at,
            )
            return erased
        finally:
            names = {_profile(profile_id)}
            if erased is not None:
                names.update(_profile(erased_id) for erased_id in erased.profile_ids)
                names.update(_identity(identity) for identity in erased.identities)
            self._invalidate(names)

    def _invalidate(self, names: Collection[str]) -> None:
        if not names:
            return
        if self._skipping():
            self._errors.inc()
            self._remember(names)
            return
        try:
            self._run_invalidation(names)
        except RedisError as error:
            self._failed(error)
            self._errors.inc()
            self._remember(names)

    def _run_invalidation(self, names: Collection[str]) -> None:
        """One script call per `_CHUNK` entries: a fresh marker each, the entry deleted."""
        token = secrets.token_hex(8)
        ordered = list(names)
        for start in range(0, len(ordered), _CHUNK):
            keys: list[str] = []
            for name in ordered[start : start + _CHUNK]:
                keys += (self._entry_prefix + name, self._marker_prefix + name)
            self._invalidate_script(keys=keys, args=(token, int(MARKER_TTL_SECONDS * 1000)))

    def _remember(self, names: Collection[str]) -> None:
        with self._pending_lock:
            self._failures += 1
            dropped = 0
            for name in names:
                if len(self._pending) >= MAX_PENDING and name not in self._pending:
                    dropped += 1
                else:
                    self._pending[name] = self._failures
        if dropped:
            logger.error(
                "profile cache: %d invalidations cannot be remembered (%d are waiting for "
                "Redis); those entries may be stale until their TTL",
                dropped,
                MAX_PENDING,
            )

    def _ready(self) -> bool:
        """Whether lookups may use Redis now: not skipped after a failure, and nothing left
        to invalidate from an earlier failure."""
        if self._skipping():
            return False
        return not self._pending or self._flush_pending()

    def _flush_pending(self) -> bool:
        with self._flush_lock:
            with self._pending_lock:
                snapshot = dict(self._pending)
            if not snapshot:
                return True
            try:
                self._run_invalidation(snapshot)
            except RedisError as error:
                self._failed(error)
                return False
            with self._pending_lock:
                for name, failure in snapshot.items():
                    if self._pending.get(name) == failure:  # not failed again meanwhile
                        del self._pending[name]
        logger.info("profile cache: %d invalidations retried after a Redis failure", len(snapshot))
        return True

    def _skipping(self) -> bool:
        return bool(self._skip_until) and self._clock() < self._skip_until

    def _failed(self, error: RedisError) -> None:
        """Skip Redis for a while after a failure, and log at most once a minute (the caller
        counts the lookup or invalidation that failed)."""
        now = self._clock()
        self._skip_until = now + self._pause
        self._pause = min(self._pause * 2, MAX_PAUSE_SECONDS)
        self._unlogged += 1
        if self._last_logged is None or now - self._last_logged >= LOG_EVERY_SECONDS:
            logger.warning(
                "profile cache: Redis failed (%s); reading through to the profile store "
                "(%d failures since the last message, %d invalidations waiting)",
                first_line(error),
                self._unlogged,
                len(self._pending),
            )
            self._last_logged, self._unlogged = now, 0

    # -- everything else goes to the wrapped store -------------------------------------

    def events(
        self, profile_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> Page[TimelineEvent]:
        return self.inner.events(profile_id, cursor=cursor, limit=limit)

    def lineage(self, profile_id: str) -> list[MergeRecord]:
        return self.inner.lineage(profile_id)

    def segment_members(
        self, segment: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[tuple[str, str]]:
        return self.inner.segment_members(segment, cursor=cursor, limit=limit)

    def segment_sizes(self) -> dict[str, int]:
        return self.inner.segment_sizes()

    def segment_changes(
        self, *, since_id: int = 0, limit: int = 1000
    ) -> list[tuple[int, SegmentChange]]:
        return self.inner.segment_changes(since_id=since_id, limit=limit)

    def profile_ids(self, *, cursor: str | None = None, limit: int = 1000) -> Page[str]:
        return self.inner.profile_ids(cursor=cursor, limit=limit)

    def count(self) -> int:
        return self.inner.count()

    def segment_history(self, profile_id: str) -> list[SegmentChange]:
        return self.inner.segment_history(profile_id)

    def tombstone(self, key: str) -> str | None:
        return self.inner.tombstone(key)

    def scrub(self) -> list[Leftover]:
        """The wrapped store's scrub; the cache's deleted entries are freed from Redis's
        memory, but snapshots and the append-only file written before keep them."""
        return [
            *self.inner.scrub(),
            Leftover(
                store="profile_store",
                where="Redis profile cache entries in RDB snapshots, the append-only file, "
                "replicas",
                until="the snapshots and append-only file written before the erasure are "
                "replaced (the next BGSAVE, BGREWRITEAOF) and their backups expire",
            ),
        ]

    def close(self) -> None:
        """Try once more to send waiting invalidations, then close the wrapped store (the
        Redis service is shared and closed by its owner)."""
        if self._pending and not self._skipping():
            self._flush_pending()
        if self._pending:
            logger.warning(
                "profile cache: closing with %d invalidations Redis never got; those entries "
                "expire within %s s",
                len(self._pending),
                self._ttl_ms / 1000,
            )
        self.inner.close()
