"""The event log of server mode: one Redis stream per partition, shared by every process.

Layout (every key under the workspace prefix, see `RedisService.key`):

- `log:<p>`: partition p's stream. Offsets come from a counter per partition (the
  hash `log:offsets`, HINCRBY) and an entry's id is `<offset>-0`, so offsets are
  integers (from 1), strictly increasing and never reused, and `read` is one XRANGE.
  Fields: key, message_id, payload, appended_at.
- Dedup on `message_id` within the window, atomic with the append. Without PostgreSQL
  a dedup key `dedup:<message id>` holds its seen-at time (TTL: the window), checked
  and set in the same Lua script as the XADDs. With PostgreSQL the keys live in its
  `dedup_keys` table: one transaction inserts the batch's ids (an expired key counts
  as new), the script appends the new ones, then the transaction commits. If the Redis
  call fails, the transaction rolls back: no key is stored and the client's retry
  (after a 503) appends. If the commit fails after the append (or Redis ran the script
  and only its reply was lost), the events are in the stream without their keys and a
  retry appends them again: the stream processor records each message id once on the
  timeline, so the second copy changes nothing. Expired keys are deleted now and then
  (a bounded DELETE), not on every append.
- An append is one script call: all of a batch or none of it (with AOF the script's
  writes are one MULTI/EXEC block). redis-py resends a command once when the connection
  drops; the script remembers its answer for a few seconds under a token of the call,
  so a resend cannot append twice.
- Consumer groups: `poll` delivers through a Redis consumer group per stream, created
  at the group's committed position (XREADGROUP: the consumer's own pending entries
  first, then new ones). `commit` acknowledges what was delivered below the offset and
  records the position in the hash `committed:<group>`, which `committed`, `lag` and
  `read`-based consumers use; a commit below what was delivered moves the group back
  (a replay). `claim` uses XPENDING + XCLAIM rather than XAUTOCLAIM, to count only
  other consumers' entries and to keep rewritten ones, which Redis 7 drops from the
  PEL on a claim because they are deleted from the stream.
- Stream entries cannot change, so `rewrite` deletes the entry and keeps the new record
  in a side ZSET (offsets) and hash per partition, in one script; `read` and `poll`
  merge them back in offset order (a rewritten record delivered by `poll` is tracked
  in a per-group "side-pending" hash, as a PEL cannot hold it). `erase` scans each
  stream and side structure in chunks (scripts), deleting matches; dedup keys stay.
  XDEL only marks an entry deleted: its bytes stay in the stream's node (memory, RDB,
  AOF rewrites) until every entry of that node is deleted.

Durability is Redis's: only with AOF (`appendonly yes`) does an acknowledged event
survive a Redis restart; the log warns at open when it is off and changes nothing.
Every Redis failure surfaces as `Unavailable` (503, retry later), never as an
acknowledgement; redis-py reconnects on the next call once Redis is back. A script
touches several keys of the workspace at once: one Redis server (with replicas), not
a Cluster.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import redis

from touchpoint.core.errors import DefinitionError, Unavailable
from touchpoint.core.leftovers import Leftover
from touchpoint.log import redis_scripts
from touchpoint.log.base import (
    AppendResult,
    EventLog,
    LogEntry,
    LogRecord,
    LogRewrite,
    partition_for,
)
from touchpoint.log.redis_scripts import MIGRATIONS, STORE, PostgresDedupKeys

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres
    from touchpoint.core.redis import RedisService

logger = logging.getLogger(__name__)

_TOKEN_TTL_MS = 30_000  # how long an append's answer is kept for a resent call
_ERASE_CHUNK = 1_000  # entries scanned per erasure script call
_MAX_POLL = 256  # entries one `poll` script returns at most

__all__ = ["MIGRATIONS", "RedisEventLog"]


class RedisEventLog(EventLog):
    """The event log on Redis Streams (see the module docstring for the layout).

    Promises: `append` returns once Redis ran the batch's script (durable across a Redis
    restart with AOF); offsets strictly increase per partition from 1 and are never
    reused; dedup is atomic per message id within `dedup_window` of `clock` (epoch
    seconds, injectable for tests), in PostgreSQL when `postgres` is given, else in Redis.
    Safe to share between threads; every process of a workspace opens its own.
    """

    def __init__(
        self,
        redis: RedisService,
        *,
        partitions: int,
        dedup_window: timedelta,
        postgres: Postgres | None = None,
        clock: Callable[[], float] = time.time,
        prune_interval: float = 60.0,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.redis = redis
        self.partitions = partitions
        self.dedup_window = dedup_window.total_seconds()
        self._clock = clock
        self._closed = False
        self._local = threading.local()
        client = redis.client
        self._client = client
        self._offsets_key = redis.key("log", "offsets")
        self._streams = [redis.key("log", p) for p in range(partitions)]
        self._append = client.register_script(redis_scripts.APPEND)
        self._rewrite = client.register_script(redis_scripts.REWRITE)
        self._erase_stream = client.register_script(redis_scripts.ERASE_STREAM_CHUNK)
        self._erase_side = client.register_script(redis_scripts.ERASE_SIDE_CHUNK)
        self._poll = client.register_script(redis_scripts.POLL)
        self._commit = client.register_script(redis_scripts.COMMIT)
        self._claim = client.register_script(redis_scripts.CLAIM)
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._block_seconds = max(0.05, float(socket_timeout) / 2) if socket_timeout else 5.0
        with redis.errors(STORE):
            self._check_partitions()
            self._warn_without_aof()
            self._opened_offsets = self._last_offsets()
        self._dedup_keys = (
            None
            if postgres is None
            else PostgresDedupKeys(
                postgres, window=self.dedup_window, prune_interval=prune_interval
            )
        )

    def _check_partitions(self) -> None:
        meta = self.redis.key("log", "meta")
        self._client.hsetnx(meta, "partitions", self.partitions)
        stored = int(cast(bytes, self._client.hget(meta, "partitions")))
        if stored != self.partitions:
            raise DefinitionError(
                "log.partitions",
                f"the log under {self.redis.prefix!r} has {stored} partitions, not "
                f"{self.partitions}; keys map to partitions by their count, so it cannot "
                "change on a log",
            )

    def _warn_without_aof(self) -> None:
        try:
            config = cast(dict[str, str], self._client.config_get("appendonly"))
        except redis.exceptions.ResponseError:  # CONFIG renamed or disabled: cannot tell
            return
        if config.get("appendonly") == "no":
            logger.warning(
                "Redis at %s runs without AOF (appendonly no): acknowledged events of the "
                "event log are lost if Redis restarts; set appendonly yes",
                self.redis.display_url,
            )

    # -- keys ------------------------------------------------------------------------------

    def _side_keys(self, partition: int) -> tuple[str, str]:
        """The side ZSET (offsets) and hash (records) of rewritten records of `partition`."""
        return (
            self.redis.key("log", partition, "rewritten"),
            self.redis.key("log", partition, "rewritten", "records"),
        )

    def _pending_key(self, group: str, partition: int) -> str:
        """Rewritten records delivered to a consumer of `group` and not committed."""
        return self.redis.key("log", partition, "side-pending", group)

    def _committed_key(self, group: str) -> str:
        return self.redis.key("committed", group)

    # -- appending -------------------------------------------------------------------------

    def append(self, records: Sequence[LogRecord]) -> AppendResult:
        """Durably append `records` (see `EventLog.append`): one script call, plus one
        PostgreSQL transaction around it when the dedup keys live there."""
        if any(not record.message_id for record in records):
            raise ValueError("every log record needs a non-empty message_id")
        batch = tuple(records)
        if not batch:
            return AppendResult(())
        self._check_open()
        now = self._clock()
        if self._dedup_keys is None:
            return AppendResult(self._run_append(batch, now, dedup=True))
        result = AppendResult(self._append_with_postgres(self._dedup_keys, batch, now))
        self._dedup_keys.maybe_prune(now)
        return result

    def _run_append(
        self, batch: Sequence[LogRecord], now: float, *, dedup: bool
    ) -> tuple[tuple[int, int] | None, ...]:
        partitions = [partition_for(record.key, self.partitions) for record in batch]
        streams: dict[int, int] = {}
        for partition in partitions:
            streams.setdefault(partition, len(streams) + 1)
        keys = [
            self._offsets_key,
            self.redis.key("log", "append", secrets.token_hex(12)),
            *(self._streams[partition] for partition in streams),
        ]
        ttl_ms = max(1, round(self.dedup_window * 1000)) if dedup else 0
        if dedup:
            keys += [self.redis.key("dedup", record.message_id) for record in batch]
        args: list[Any] = [repr(now), repr(now - self.dedup_window), ttl_ms, _TOKEN_TTL_MS]
        args += [len(streams), *streams]
        for record, partition in zip(batch, partitions, strict=True):
            args += (streams[partition], record.key, record.message_id, record.payload)
        with self.redis.errors(STORE):
            offsets = cast(list[int], self._append(keys=keys, args=args))
        return tuple(
            (partition, int(offset)) if offset else None
            for partition, offset in zip(partitions, offsets, strict=True)
        )

    def _append_with_postgres(
        self, dedup_keys: PostgresDedupKeys, batch: Sequence[LogRecord], now: float
    ) -> tuple[tuple[int, int] | None, ...]:
        """Append the records whose dedup keys are new, inside the transaction that stores
        the keys (see the module docstring for what each failure leaves behind)."""
        positions: list[tuple[int, int] | None] = [None] * len(batch)
        with dedup_keys.claim([record.message_id for record in batch], now) as new:
            fresh: list[int] = []  # indexes in `batch`: the first record of each new id
            for index, record in enumerate(batch):
                if record.message_id in new:
                    new.discard(record.message_id)
                    fresh.append(index)
            if fresh:
                placed = self._run_append([batch[index] for index in fresh], now, dedup=False)
                for index, position in zip(fresh, placed, strict=True):
                    positions[index] = position
        return tuple(positions)

    def prune_dedup(self, now: float | None = None) -> int:
        """Forget PostgreSQL dedup keys older than the window at `now` (default: the clock);
        the count. Appends also prune now and then; Redis dedup keys expire by themselves."""
        if self._dedup_keys is None:
            return 0
        return self._dedup_keys.prune(self._clock() if now is None else now)

    # -- reading and positions ---------------------------------------------------------------

    def read(self, partition: int, from_offset: int, limit: int = 500) -> list[LogEntry]:
        """Entries of `partition` from `from_offset` on, in offset order: one XRANGE and a
        look at the side ZSET in one MULTI, plus one HMGET when rewritten records fall in
        the range."""
        self._check_partition(partition)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._check_open()
        start = max(0, from_offset)
        side, side_records = self._side_keys(partition)
        with self.redis.errors(STORE):
            pipe = self._client.pipeline(transaction=True)
            pipe.xrange(self._streams[partition], min=f"{start}-0", count=limit)
            pipe.zrangebyscore(side, start, "+inf", start=0, num=limit)
            stream_entries, rewritten = pipe.execute()
            found = [
                _entry(partition, entry_id.split(b"-", 1)[0], *(fields[name] for name in _FIELDS))
                for entry_id, fields in stream_entries
            ]
            if not rewritten:
                return found
            fields = [f"{int(o)}:{part}" for o in rewritten for part in ("k", "m", "p", "t")]
            values = cast(list[bytes | None], self._client.hmget(side_records, fields))
        by_offset = {entry.offset: entry for entry in found}
        for index, offset in enumerate(rewritten):
            record = values[index * 4 : index * 4 + 4]
            if None not in record:  # else erased meanwhile
                by_offset[int(offset)] = _entry(partition, offset, *cast(list[bytes], record))
        return [by_offset[offset] for offset in sorted(by_offset)[:limit]]

    def end_offset(self, partition: int) -> int:
        """The next offset of `partition`: its counter plus one."""
        self._check_partition(partition)
        self._check_open()
        with self.redis.errors(STORE):
            last = self._client.hget(self._offsets_key, partition)
        return int(cast(bytes, last)) + 1 if last is not None else 1

    def commit(self, group: str, partition: int, offset: int) -> None:
        """Record `group`'s position in `partition` (not monotonic: a lower offset starts a
        replay), acknowledging what its consumers were delivered below it."""
        self.commit_many(group, {partition: offset})

    def commit_many(self, group: str, positions: Mapping[int, int]) -> None:
        """Record several partitions' positions in one script call (one round trip)."""
        for partition, offset in positions.items():
            self._check_partition(partition)
            if not group or offset < 0:
                raise ValueError("a commit needs a group name and an offset >= 0")
        if not positions:
            return
        self._check_open()
        keys = [self._committed_key(group)]
        args: list[Any] = [group]
        for partition, offset in positions.items():
            keys += (self._streams[partition], self._pending_key(group, partition))
            args += (partition, offset)
        with self.redis.errors(STORE):
            self._commit(keys=keys, args=args)

    def committed(self, group: str, partition: int) -> int:
        """The next offset `group` should read in `partition` (0 when it never committed)."""
        self._check_partition(partition)
        self._check_open()
        with self.redis.errors(STORE):
            value = self._client.hget(self._committed_key(group), partition)
        return int(cast(bytes, value)) if value is not None else 0

    def lag(self, group: str) -> dict[int, int]:
        """Per partition, how far `group` is behind the end: one round trip."""
        self._check_open()
        fields = list(range(self.partitions))
        with self.redis.errors(STORE):
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(self._offsets_key, fields)
            pipe.hmget(self._committed_key(group), fields)
            lasts, positions = pipe.execute()
        # Offsets start at 1, so a group that never committed (position 0) has read nothing
        # below offset 1: an empty partition is no lag, not one.
        return {
            partition: max(0, int(last or 0) + 1 - max(int(position or 0), 1))
            for partition, last, position in zip(fields, lasts, positions, strict=True)
        }

    # -- consumers of a group ----------------------------------------------------------------

    def poll(self, group: str, consumer: str, partition: int, limit: int = 500) -> list[LogEntry]:
        """See `EventLog.poll`: XREADGROUP (own pending first, then new entries), with
        rewritten records merged in; the group is created at the committed position."""
        self._check_partition(partition)
        if not group or not consumer or limit < 1:
            raise ValueError("poll needs a group, a consumer and a limit >= 1")
        self._check_open()
        # A script holds Redis for its whole run: 1,000 entries of 1 KB took 11-15 ms, during
        # which every other client (the API's appends, the profile cache) waits. Smaller
        # polls keep each pause to a few milliseconds; the processor simply polls again.
        limit = min(limit, _MAX_POLL)
        side, side_records = self._side_keys(partition)
        keys = [
            self._streams[partition],
            side,
            side_records,
            self._pending_key(group, partition),
            self._committed_key(group),
        ]
        with self.redis.errors(STORE):
            flat = cast(list[Any], self._poll(keys=keys, args=[group, consumer, partition, limit]))
        return [_entry(partition, *flat[at : at + 5]) for at in range(0, len(flat), 5)]

    def claim(self, group: str, consumer: str, partition: int) -> int:
        """See `EventLog.claim`: every entry other consumers of `group` hold in `partition`
        moves to `consumer` (XPENDING then XCLAIM, in one script); how many moved."""
        self._check_partition(partition)
        if not group or not consumer:
            raise ValueError("claim needs a group and a consumer")
        self._check_open()
        keys = [
            self._streams[partition],
            self._side_keys(partition)[1],
            self._pending_key(group, partition),
        ]
        with self.redis.errors(STORE):
            return int(cast(int, self._claim(keys=keys, args=[group, consumer])))

    def wait_for_append(self, timeout: float) -> bool:
        """Block until a record was appended (by any process) since this thread's last call
        (or since the log was opened), or `timeout` passes: XREAD BLOCK on every stream
        from the last offsets seen. Redis being down reads as "nothing": it waits the
        timeout out, so a consumer's idle loop keeps its pace and then finds out."""
        deadline = time.monotonic() + timeout
        seen: list[int] = getattr(self._local, "seen", None) or self._opened_offsets
        try:
            with self.redis.errors(STORE):
                current = self._last_offsets()
                if current != seen:
                    self._local.seen = current
                    return True
                streams: dict[Any, Any] = {
                    stream: f"{last}-0" for stream, last in zip(self._streams, seen, strict=True)
                }
                while not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    block = max(1, round(min(remaining, self._block_seconds) * 1000))
                    if self._client.xread(streams, count=1, block=block):
                        self._local.seen = self._last_offsets()
                        return True
        except Unavailable as error:
            logger.debug("event log: waiting for an append: %s", error)
            time.sleep(max(0.0, deadline - time.monotonic()))
        return False

    def count(self) -> int:
        """How many records the log holds: stream lengths plus rewritten records."""
        self._check_open()
        with self.redis.errors(STORE):
            pipe = self._client.pipeline(transaction=False)
            for partition, stream in enumerate(self._streams):
                pipe.xlen(stream)
                pipe.zcard(self._side_keys(partition)[0])
            return sum(int(size) for size in pipe.execute())

    # -- rewriting and erasing ---------------------------------------------------------------

    def rewrite(self, changes: Sequence[LogRewrite]) -> int:
        """See `EventLog.rewrite`: one script for all the changes."""
        for change in changes:
            self._check_partition(change.partition)
        if not changes:
            return 0
        self._check_open()
        index: dict[int, int] = {}
        keys: list[str] = []
        args: list[Any] = []
        for change in changes:
            if change.partition not in index:
                index[change.partition] = len(index) + 1
                keys += (self._streams[change.partition], *self._side_keys(change.partition))
            args += (index[change.partition], change.offset, change.key, change.payload)
        with self.redis.errors(STORE):
            return int(cast(int, self._rewrite(keys=keys, args=args)))

    def erase(self, *, message_ids: Sequence[str] = (), keys: Sequence[str] = ()) -> int:
        """See `EventLog.erase`: scans every stream, then every side structure, in chunks of
        `_ERASE_CHUNK` entries per script call (Redis serves others between chunks).
        Records appended after a partition's scan passed its end are not erased: they came
        after the erasure."""
        ids = list(dict.fromkeys(message_ids))
        routing_keys = list(dict.fromkeys(keys))
        if not ids and not routing_keys:
            return 0
        self._check_open()
        sets: list[Any] = [len(ids), *ids, *routing_keys]
        erased = 0
        with self.redis.errors(STORE):
            for partition, stream in enumerate(self._streams):
                erased += self._erase_chunks(self._erase_stream, [stream], "-", sets)
                side = list(self._side_keys(partition))
                erased += self._erase_chunks(self._erase_side, side, "-inf", sets)
        return erased

    def _erase_chunks(
        self, script: Callable[..., Any], keys: list[str], start: str, sets: list[Any]
    ) -> int:
        erased = 0
        while True:
            count, following = cast(list[Any], script(keys=keys, args=[start, _ERASE_CHUNK, *sets]))
            erased += int(count)
            if not following:
                return erased
            start = following.decode() if isinstance(following, bytes) else str(following)

    def scrub(self) -> list[Leftover]:
        """See `EventLog.scrub`. Nothing Redis offers removes the bytes now: `XDEL` only
        flags an entry deleted inside its stream node (a listpack of up to
        `stream-node-max-entries`), which keeps the bytes until every entry in it is gone;
        snapshots and the append-only file keep the history until rewritten, and rewriting
        them is the server operator's call (it is shared), not one erasure's."""
        return [
            Leftover(
                store="event_log",
                where="Redis stream nodes of the log's partitions (memory), RDB snapshots, "
                "the append-only file, replicas",
                until="the stream node holding them is freed (all its entries deleted or "
                "trimmed by retention), and the snapshots and append-only file written "
                "before are replaced (the next BGSAVE, BGREWRITEAOF) and their backups expire",
            )
        ]

    def close(self) -> None:
        """Stop serving calls. The Redis client (and PostgreSQL pool) belong to their
        services, which the workspace closes."""
        self._closed = True

    # -- helpers -----------------------------------------------------------------------------

    def _last_offsets(self) -> list[int]:
        values = self._client.hmget(self._offsets_key, list(range(self.partitions)))
        return [int(value) if value is not None else 0 for value in values]

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the event log is closed")


_FIELDS = (b"key", b"message_id", b"payload", b"appended_at")  # of a stream entry, in order


def _entry(
    partition: int, offset: bytes | int, key: bytes, message_id: bytes, payload: bytes, at: bytes
) -> LogEntry:
    """A `LogEntry` from what Redis returned (bytes, or an integer offset from a script)."""
    return LogEntry(partition, int(offset), key.decode(), message_id.decode(), payload, float(at))
