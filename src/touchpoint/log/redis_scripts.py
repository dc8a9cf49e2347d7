"""What the Redis Streams event log runs on its servers (see `touchpoint.log.redis`):
its Lua scripts, and its dedup-key table when the keys live in PostgreSQL.

Each verb that must not be seen half done runs as one script: Redis runs a script
alone, and with AOF its writes are logged as one MULTI/EXEC block, so a crash keeps
all of them or none. Entries hold four fields in this order: key, message_id,
payload, appended_at (a script reads them by position: f[2], f[4], f[6], f[8]).
A rewritten record lives in the partition's side hash as four fields
`<offset>:k`, `<offset>:m`, `<offset>:p`, `<offset>:t`, its offset in the side ZSET.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from touchpoint.core.postgres import Migration

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres

logger = logging.getLogger(__name__)

STORE = "event log"  # how failures name the log
_PRUNE_CHUNK = 10_000  # expired PostgreSQL dedup keys deleted per statement

# KEYS: offsets hash, append token, the S streams of the batch, then (Redis dedup only) one
# dedup key per record. ARGV: now, dedup since, dedup TTL ms (0: dedup done elsewhere), token
# TTL ms, S, the S partitions, then per record: stream index (1..S), key, message id, payload.
# Returns per record its offset, 0 for a duplicate. Dedup checks and offset counts come
# before any XADD; a retry of the same call (same token) returns the first call's answer.
APPEND = """
local done = redis.call('GET', KEYS[2])
if done then return cjson.decode(done) end
local now, since, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local streams = tonumber(ARGV[5])
local first = 6 + streams
local count = (#ARGV - first + 1) / 4
local chosen, wanted = {}, {}
for i = 1, count do
  local fresh = true
  if ttl > 0 then
    local dedup = KEYS[2 + streams + i]
    local seen = redis.call('GET', dedup)
    if seen and tonumber(seen) >= since then
      fresh = false
    else
      redis.call('SET', dedup, now, 'PX', ttl)
    end
  end
  if fresh then
    local s = tonumber(ARGV[first + (i - 1) * 4])
    chosen[i] = s
    wanted[s] = (wanted[s] or 0) + 1
  end
end
local nexts = {}
for s, n in pairs(wanted) do
  nexts[s] = redis.call('HINCRBY', KEYS[1], ARGV[5 + s], n) - n + 1
end
local result = {}
for i = 1, count do
  local s = chosen[i]
  if s then
    local at = first + (i - 1) * 4
    local offset = nexts[s]
    nexts[s] = offset + 1
    redis.call('XADD', KEYS[2 + s], string.format('%d-0', offset), 'key', ARGV[at + 1],
      'message_id', ARGV[at + 2], 'payload', ARGV[at + 3], 'appended_at', now)
    result[i] = offset
  else
    result[i] = 0
  end
end
redis.call('SET', KEYS[2], cjson.encode(result), 'PX', ARGV[4])
return result
"""

# KEYS: per partition touched, its stream, side ZSET and side hash. ARGV: per change, the
# partition's index (1-based, into those triples), offset, new key, new payload. The entry
# leaves the stream and its rewritten record joins the side structure in the same script,
# so a reader sees one or the other, never neither. Returns how many records existed.
REWRITE = """
local changed = 0
for at = 1, #ARGV, 4 do
  local base = (tonumber(ARGV[at]) - 1) * 3
  local stream, side, records = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3]
  local offset = ARGV[at + 1]
  local id = offset .. '-0'
  local found = redis.call('XRANGE', stream, id, id)
  if #found > 0 then
    local f = found[1][2]
    redis.call('XDEL', stream, id)
    redis.call('ZADD', side, offset, offset)
    redis.call('HSET', records, offset .. ':k', ARGV[at + 2], offset .. ':m', f[4],
      offset .. ':p', ARGV[at + 3], offset .. ':t', f[8])
    changed = changed + 1
  elseif redis.call('HEXISTS', records, offset .. ':m') == 1 then
    redis.call('HSET', records, offset .. ':k', ARGV[at + 2], offset .. ':p', ARGV[at + 3])
    changed = changed + 1
  end
end
return changed
"""

# Shared by the erase scripts: ARGV[3] = how many message ids follow, then they, then the
# routing keys; `ids` and `keys` become sets.
_MATCH_SETS = """
local ids, keys = {}, {}
local n = tonumber(ARGV[3])
for i = 4, 3 + n do ids[ARGV[i]] = true end
for i = 4 + n, #ARGV do keys[ARGV[i]] = true end
"""

# One chunk of an erasure scan of a stream. KEYS: the stream. ARGV: start ('-' or
# '(<id>'), chunk size, then the match sets. Returns {erased, next start or ''}.
ERASE_STREAM_CHUNK = (
    _MATCH_SETS
    + """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local erased = 0
for _, entry in ipairs(entries) do
  local f = entry[2]
  if ids[f[4]] or keys[f[2]] then
    erased = erased + redis.call('XDEL', KEYS[1], entry[1])
  end
end
local following = ''
if #entries == tonumber(ARGV[2]) then following = '(' .. entries[#entries][1] end
return {erased, following}
"""
)

# One chunk of an erasure scan of a partition's rewritten records. KEYS: side ZSET, side
# hash. ARGV: start score ('-inf' or '(<offset>'), chunk size, then the match sets.
ERASE_SIDE_CHUNK = (
    _MATCH_SETS
    + """
local offsets = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
local erased = 0
for _, offset in ipairs(offsets) do
  local r = redis.call('HMGET', KEYS[2], offset .. ':k', offset .. ':m')
  if r[2] and (ids[r[2]] or keys[r[1]]) then
    redis.call('ZREM', KEYS[1], offset)
    redis.call('HDEL', KEYS[2], offset .. ':k', offset .. ':m', offset .. ':p', offset .. ':t')
    erased = erased + 1
  end
end
local following = ''
if #offsets == tonumber(ARGV[2]) then following = '(' .. offsets[#offsets] end
return {erased, following}
"""
)

# Helpers of the consumer-group scripts. `stream`, `side`, `records`, `pending` (the
# group's side-pending hash: offset -> consumer, for rewritten records delivered and not
# committed) and `group` are set by the script first.
_GROUP_HELPERS = """
local function offset_of(id) return tonumber(string.match(id, '^(%d+)')) end

local function last_delivered()
  if redis.call('EXISTS', stream) == 0 then return nil end
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local fields = {}
    for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
    if fields['name'] == group then return offset_of(fields['last-delivered-id']) end
  end
  return nil
end

local function side_record(offset)
  local o = tostring(offset)
  local r = redis.call('HMGET', records, o .. ':k', o .. ':m', o .. ':p', o .. ':t')
  if r[2] then return {tonumber(o), r[1], r[2], r[3], r[4]} end
  return nil
end

local function stream_record(entry)
  local f = entry[2]
  return {offset_of(entry[1]), f[2], f[4], f[6], f[8]}
end

local function ack_pending(upto)
  while true do
    local listed = redis.call('XPENDING', stream, group, '-', upto, 1000)
    if #listed == 0 then return end
    local ids = {}
    for i, item in ipairs(listed) do ids[i] = item[1] end
    redis.call('XACK', stream, group, unpack(ids))
    if #listed < 1000 then return end
  end
end
"""

# KEYS: stream, side ZSET, side hash, side-pending hash, committed hash. ARGV: group,
# consumer, partition, limit. Returns flat [offset, key, message id, payload, appended at]*:
# the consumer's own pending entries first (stream PEL and side-pending), then new ones.
# A new slice is chosen by merging the stream with the side records past the group's
# last-delivered id, so rewritten records are delivered (and tracked as side-pending)
# where their offsets fall; the group's last-delivered id then moves to the slice's end.
POLL = (
    """
local stream, side, records, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer, limit = ARGV[1], ARGV[2], tonumber(ARGV[4])
"""
    + _GROUP_HELPERS
    + """
local last = last_delivered()
if not last then
  last = math.max(0, tonumber(redis.call('HGET', KEYS[5], ARGV[3]) or '0') - 1)
  redis.call('XGROUP', 'CREATE', stream, group, string.format('%d-0', last), 'MKSTREAM')
end
local out = {}
local own = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit,
  'STREAMS', stream, '0')
if own and own[1] then
  for _, entry in ipairs(own[1][2]) do
    if entry[2] then
      out[#out + 1] = stream_record(entry)
    else
      local r = side_record(offset_of(entry[1]))
      if r then out[#out + 1] = r else redis.call('XACK', stream, group, entry[1]) end
    end
  end
end
local held = redis.call('HGETALL', pending)
for i = 1, #held, 2 do
  if held[i + 1] == consumer then
    local r = side_record(held[i])
    if r then out[#out + 1] = r else redis.call('HDEL', pending, held[i]) end
  end
end
table.sort(out, function(a, b) return a[1] < b[1] end)
while #out > limit do table.remove(out) end
local wanted = limit - #out
if wanted > 0 then
  local rewritten = {}
  if redis.call('EXISTS', side) == 1 then
    rewritten = redis.call('ZRANGEBYSCORE', side, '(' .. last, '+inf', 'LIMIT', 0, wanted)
  end
  if #rewritten == 0 then
    local fresh = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', wanted,
      'STREAMS', stream, '>')
    if fresh and fresh[1] then
      for _, entry in ipairs(fresh[1][2]) do out[#out + 1] = stream_record(entry) end
    end
  else
    local ahead = redis.call('XRANGE', stream, string.format('(%d-0', last), '+',
      'COUNT', wanted)
    local i, j, taken, bound, streamed = 1, 1, 0, last, last
    while taken < wanted and (i <= #ahead or j <= #rewritten) do
      local at = ahead[i] and offset_of(ahead[i][1])
      local zo = rewritten[j] and tonumber(rewritten[j])
      if at and (not zo or at < zo) then
        out[#out + 1] = stream_record(ahead[i])
        i, taken, bound, streamed = i + 1, taken + 1, at, at
      else
        local r = side_record(zo)
        if r then
          out[#out + 1] = r
          redis.call('HSET', pending, rewritten[j], consumer)
          taken, bound = taken + 1, zo
        end
        j = j + 1
      end
    end
    if i > 1 then
      redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', i - 1, 'STREAMS', stream, '>')
    end
    if bound > streamed then
      redis.call('XGROUP', 'SETID', stream, group, string.format('%d-0', bound))
    end
  end
end
local flat = {}
for _, r in ipairs(out) do
  for k = 1, 5 do flat[#flat + 1] = r[k] end
end
return flat
"""
)

# KEYS: committed hash, then per partition its stream and side-pending hash. ARGV: group,
# then per partition: its number, the offset. Records the positions, then for a group
# that exists on the stream acknowledges what is below the offset and moves the group's
# last-delivered id to just before it (back, for a replay: then everything pending is
# acknowledged, as the entries will be delivered again anyway).
COMMIT = (
    """
local stream, side, records, pending
local group = ARGV[1]
"""
    + _GROUP_HELPERS
    + """
for at = 2, #ARGV, 2 do
  local index = at / 2
  stream, pending = KEYS[2 * index], KEYS[2 * index + 1]
  local offset = tonumber(ARGV[at + 1])
  redis.call('HSET', KEYS[1], ARGV[at], ARGV[at + 1])
  local last = last_delivered()
  if last then
    local upto = offset - 1
    if upto < last then
      ack_pending('+')
      redis.call('DEL', pending)
    else
      if upto >= 1 then ack_pending(string.format('%d-0', upto)) end
      local held = redis.call('HKEYS', pending)
      for _, o in ipairs(held) do
        if tonumber(o) < offset then redis.call('HDEL', pending, o) end
      end
    end
    if upto ~= last then
      redis.call('XGROUP', 'SETID', stream, group, string.format('%d-0', math.max(0, upto)))
    end
  end
end
return 1
"""
)

# KEYS: stream, side hash, side-pending hash. ARGV: group, consumer. Moves every entry
# other consumers of the group hold (stream PEL and side-pending) to `consumer`; a
# rewritten entry in the PEL becomes side-pending first, since XCLAIM drops deleted
# entries from the PEL. Returns how many moved.
CLAIM = (
    """
local stream, side, records, pending = KEYS[1], nil, KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
"""
    + _GROUP_HELPERS
    + """
if not last_delivered() then return 0 end
local moved, start = 0, '-'
while true do
  local listed = redis.call('XPENDING', stream, group, start, '+', 500)
  local ids = {}
  for _, item in ipairs(listed) do
    if item[2] ~= consumer then
      local offset = tostring(offset_of(item[1]))
      if redis.call('HEXISTS', records, offset .. ':m') == 1 then
        redis.call('HSET', pending, offset, consumer)
        redis.call('XACK', stream, group, item[1])
        moved = moved + 1
      else
        ids[#ids + 1] = item[1]
      end
    end
  end
  if #ids > 0 then
    ids[#ids + 1] = 'JUSTID'
    moved = moved + #redis.call('XCLAIM', stream, group, consumer, 0, unpack(ids))
  end
  if #listed < 500 then break end
  start = '(' .. listed[#listed][1]
end
local held = redis.call('HGETALL', pending)
for i = 1, #held, 2 do
  if held[i + 1] ~= consumer then
    redis.call('HSET', pending, held[i], consumer)
    moved = moved + 1
  end
end
return moved
"""
)


# -- dedup keys in PostgreSQL ---------------------------------------------------------------

MIGRATIONS: list[Migration] = [
    Migration(
        "log",
        1,
        """
        CREATE TABLE dedup_keys (
            message_id text PRIMARY KEY,
            seen_at double precision NOT NULL
        );
        CREATE INDEX dedup_keys_by_seen_at ON dedup_keys (seen_at);
        """,
    )
]

# The batch's ids, sorted (so concurrent appends lock rows in one order). A key seen
# before the window counts as new and starts a new window; RETURNING names the new ones.
_CLAIM = """
INSERT INTO dedup_keys (message_id, seen_at)
SELECT message_id, %s FROM unnest(%s::text[]) AS message_id
ON CONFLICT (message_id) DO UPDATE SET seen_at = EXCLUDED.seen_at
WHERE dedup_keys.seen_at < %s
RETURNING message_id
"""
_DELETE_EXPIRED = """
DELETE FROM dedup_keys WHERE message_id IN
(SELECT message_id FROM dedup_keys WHERE seen_at < %s LIMIT %s)
"""


class PostgresDedupKeys:
    """The log's dedup keys in PostgreSQL's `dedup_keys` (component "log"): `claim` holds a
    transaction open while the caller appends, so a key is stored iff its append may have
    happened; expired keys are deleted in bounded chunks now and then."""

    def __init__(self, postgres: Postgres, *, window: float, prune_interval: float) -> None:
        postgres.ensure(MIGRATIONS)
        self.postgres = postgres
        self.window = window
        self.prune_interval = prune_interval
        self._last_prune: float | None = None
        self._prune_lock = threading.Lock()

    @contextmanager
    def claim(self, message_ids: Sequence[str], now: float) -> Iterator[set[str]]:
        """Store `message_ids` as seen at `now` and yield those that are new (never seen, or
        expired) inside one transaction: it commits when the block ends, and rolls back
        (storing nothing) if the block raises."""
        unique = sorted(set(message_ids))
        with self.postgres.transaction(STORE) as connection:
            rows = connection.execute(_CLAIM, (now, unique, now - self.window)).fetchall()
            yield {str(row[0]) for row in rows}

    def maybe_prune(self, now: float) -> None:
        """Delete a chunk of expired keys every `prune_interval` seconds (sooner while more
        remain); one caller at a time, a failure only logged (the next append retries)."""
        if self._last_prune is None:
            self._last_prune = now
        if now - self._last_prune < self.prune_interval:
            return
        if not self._prune_lock.acquire(blocking=False):
            return
        try:
            if self._delete_expired(now) < _PRUNE_CHUNK:
                self._last_prune = now
        except Exception:  # best effort: the append it follows has committed
            self._last_prune = now
            logger.exception("event log: pruning dedup keys failed")
        finally:
            self._prune_lock.release()

    def prune(self, now: float) -> int:
        """Delete every key older than the window at `now`, chunk by chunk; the count."""
        total = 0
        while True:
            deleted = self._delete_expired(now)
            total += deleted
            if deleted < _PRUNE_CHUNK:
                return total

    def _delete_expired(self, now: float) -> int:
        with self.postgres.connection(STORE) as connection:
            cursor = connection.execute(_DELETE_EXPIRED, (now - self.window, _PRUNE_CHUNK))
            return cursor.rowcount
