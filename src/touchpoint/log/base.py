"""The durable event log: one interface, several backends.

The log is shaped like Kafka's model so that SQLite (embedded), Redis Streams
and Kafka backends all fit it without change:

- a record carries a routing key (the person); the key picks the partition, so
  every record of one key is read in order by whichever consumer owns that
  partition;
- offsets are integers, strictly increasing within a partition (not necessarily
  contiguous);
- consumers read a partition from an offset and commit their position per
  consumer group (the committed position is the next offset to read);
- `append` is durable when it returns and deduplicates atomically on the
  record's `message_id` within a window, so a retried batch changes nothing and
  a crash between "check" and "write" cannot lose or double an event.
"""

from __future__ import annotations

import abc
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from touchpoint.core.clock import parse_duration
from touchpoint.core.leftovers import Leftover

if TYPE_CHECKING:
    from touchpoint.core.config_stores import LogConfig
    from touchpoint.core.postgres import Postgres
    from touchpoint.core.redis import RedisService

DEFAULT_LOG_FILE = "log.sqlite3"
DEFAULT_DEDUP_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record to append. `payload` is the JSON-encoded event."""

    key: str
    message_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A record as read back, with its place in the log."""

    partition: int
    offset: int
    key: str
    message_id: str
    payload: bytes
    appended_at: float


@dataclass(frozen=True, slots=True)
class LogRewrite:
    """A record to rewrite in place: its position, and the key and payload it gets."""

    partition: int
    offset: int
    key: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Per appended record, its `(partition, offset)`, or None if it was a duplicate."""

    positions: tuple[tuple[int, int] | None, ...]

    @property
    def appended(self) -> int:
        return sum(1 for position in self.positions if position is not None)

    @property
    def duplicates(self) -> int:
        return sum(1 for position in self.positions if position is None)


def partition_for(key: str, partitions: int) -> int:
    """The partition of a routing key: a stable hash (CRC-32), the same in every process."""
    return zlib.crc32(key.encode("utf-8")) % partitions


class EventLog(abc.ABC):
    """A durable, append-only, partitioned log of events."""

    partitions: int

    def partition_for(self, key: str) -> int:
        return partition_for(key, self.partitions)

    @abc.abstractmethod
    def append(self, records: Sequence[LogRecord]) -> AppendResult:
        """Durably append, skipping records whose `message_id` was appended within the
        dedup window (or earlier in the same call). Safe to call from many threads."""

    @abc.abstractmethod
    def read(self, partition: int, from_offset: int, limit: int = 500) -> list[LogEntry]:
        """Entries of `partition` with offset >= `from_offset`, in offset order."""

    @abc.abstractmethod
    def end_offset(self, partition: int) -> int:
        """The offset the next appended record of `partition` will have at least."""

    @abc.abstractmethod
    def commit(self, group: str, partition: int, offset: int) -> None:
        """Record that `group` has processed `partition` up to (not including) `offset`."""

    def commit_many(self, group: str, positions: Mapping[int, int]) -> None:
        """Commit several partitions' positions at once (one durable write where the backend
        can). The default commits them one by one."""
        for partition, offset in positions.items():
            self.commit(group, partition, offset)

    @abc.abstractmethod
    def committed(self, group: str, partition: int) -> int:
        """The next offset `group` should read in `partition` (0 when it never committed)."""

    # -- a consumer of a group (a worker's view) ---------------------------------------------

    def poll(self, group: str, consumer: str, partition: int, limit: int = 500) -> list[LogEntry]:
        """The next entries of `partition` for `consumer`, a member of `group`, in offset order:
        first those delivered to it and not committed yet (a batch that failed, or entries
        claimed from a consumer that died), then new ones. Committing (`commit` /
        `commit_many`) acknowledges them. Only the partition's current owner (see
        log.coordination) polls it, which keeps one person's events in order.

        The default reads from the group's committed position; a backend with consumer
        groups of its own (Redis Streams) delivers through them."""
        return self.read(partition, self.committed(group, partition), limit)

    def claim(self, group: str, consumer: str, partition: int) -> int:
        """Take over what other consumers of `group` were delivered in `partition` and did not
        commit (they died or lost the partition), so `consumer`'s next polls return it first;
        how many entries moved. Call after acquiring the partition. The default has nothing
        to move: uncommitted entries are simply read again from the committed position."""
        return 0

    def lag(self, group: str) -> dict[int, int]:
        """Per partition, how many offsets `group` is behind the end (an upper bound)."""
        return {
            partition: max(0, self.end_offset(partition) - self.committed(group, partition))
            for partition in range(self.partitions)
        }

    @abc.abstractmethod
    def wait_for_append(self, timeout: float) -> bool:
        """Block until something may have been appended, or `timeout` seconds pass.

        A hint, not a guarantee: readers must still read to find out. Lets an
        in-process consumer react within milliseconds without busy polling.
        """

    @abc.abstractmethod
    def count(self) -> int:
        """How many records the log holds (for metrics and tests)."""

    @abc.abstractmethod
    def erase(self, *, message_ids: Sequence[str] = (), keys: Sequence[str] = ()) -> int:
        """Delete every record with one of these message ids or routing keys (erasure); how
        many were deleted. Offsets are never reused; dedup entries stay, so a client's retry
        of an erased event is still a duplicate."""

    @abc.abstractmethod
    def rewrite(self, changes: Sequence[LogRewrite]) -> int:
        """Replace the key and payload of records in place (anonymization); how many
        existed. Message ids and offsets stay; the partition is not recomputed."""

    def scrub(self) -> list[Leftover]:
        """After an erasure: make the backend overwrite what the erased rows left in its
        files, where it can; what may still hold their bytes, and until when (empty when
        nothing does). Nothing to do by default (a backend without files of its own)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections and threads."""


def build_event_log(
    config: LogConfig,
    data_dir: Path,
    *,
    dedup_window: timedelta | str = DEFAULT_DEDUP_WINDOW,
    redis: RedisService | None = None,
    postgres: Postgres | None = None,
    clock: Callable[[], float] = time.time,
) -> EventLog:
    """Open the event log the configuration names, creating its file and folders if needed.

    `config.path` defaults to `<data_dir>/log.sqlite3`; a relative `config.path` is taken
    as is (relative to the working directory). The dedup window is the collector's
    (`collect.dedup_window`, a duration such as "24h"), hence a separate argument.
    """
    if isinstance(dedup_window, str):
        dedup_window = parse_duration(dedup_window)
    if config.type == "redis" or (config.type == "auto" and redis is not None):
        if redis is None:
            raise ValueError("log.type is redis, but no Redis service is open")
        from touchpoint.log.redis import RedisEventLog

        return RedisEventLog(
            redis,
            partitions=config.partitions,
            dedup_window=dedup_window,
            postgres=postgres,
            clock=clock,
        )
    if config.type in ("sqlite", "auto"):
        from touchpoint.log.sqlite import SqliteEventLog

        path = Path(config.path).expanduser() if config.path else Path(data_dir) / DEFAULT_LOG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteEventLog(
            path,
            partitions=config.partitions,
            dedup_window=dedup_window,
            synchronous=config.synchronous,
            clock=clock,
        )
    raise ValueError(f"unknown event log type {config.type!r}")  # pragma: no cover
