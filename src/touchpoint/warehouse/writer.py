"""Copy the event log into the warehouse, behind the stream processor.

The writer reads each partition only up to the stream processor's committed position.
By then the processor has done what the gates demand to those entries: events of erased
people are gone from the log, events without analytics consent are rewritten to their
anonymized form. So the warehouse never sees what the profiles may not keep, and the
person each event was applied to (`profile_id`) is known.

The log is the buffer: nothing is held in memory between runs. A run copies what is
pending once there is at least `flush_rows` of it or its oldest entry is `flush_interval`
old, so files stay large under a trickle of events. The warehouse's manifest records the
files and the copied positions in one change, so a run cut short by a crash is redone
and nothing is copied twice. The warehouse lock makes runs of several processes (serve,
workers, the CLI) and erasures take turns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from touchpoint.log.base import EventLog, LogEntry
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.model import Identity
from touchpoint.profiles.store.base import ProfileStore
from touchpoint.warehouse.schema import event_row, events_table
from touchpoint.warehouse.store import Warehouse

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one run copied: rows and files written, or why it did nothing (`skipped`:
    `locked`, `waiting` for more rows or older ones, `empty`)."""

    rows: int = 0
    files: int = 0
    skipped: str | None = None


class WarehouseWriter:
    """Copies applied log entries into Parquet files; see the module docstring."""

    def __init__(
        self,
        warehouse: Warehouse,
        log: EventLog,
        profiles: ProfileStore,
        resolver: IdentityResolver,
        *,
        follow_group: str = "profiles",
        flush_rows: int = 50_000,
        flush_interval: float = 60.0,
        max_file_rows: int = 250_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.warehouse = warehouse
        self.log = log
        self.profiles = profiles
        self.resolver = resolver
        self.follow_group = follow_group
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.max_file_rows = max_file_rows
        self._clock = clock
        self.rows_written = 0
        self.last_sync_at = 0.0

    def pending(self) -> dict[int, tuple[int, int]]:
        """Per partition with something to copy, `(start, end)`: the next offset to copy and
        the processor's committed position."""
        copied = self.warehouse.manifest().positions
        found = {}
        for partition in range(self.log.partitions):
            start = copied.get(partition, 0)
            end = self.log.committed(self.follow_group, partition)
            if end > start:
                found[partition] = (start, end)
        return found

    def run_once(self, *, force: bool = False) -> SyncResult:
        """Copy what is pending if there is enough of it (or `force`); never blocks on
        another process's run."""
        with self.warehouse.lock(wait=force) as held:
            if not held:
                return SyncResult(skipped="locked")
            pending = self.pending()
            if not pending:
                return SyncResult(skipped="empty")
            if not force and not self._due(pending):
                return SyncResult(skipped="waiting")
            rows, files = self._copy(pending)
        self.rows_written += rows
        self.last_sync_at = self._clock()
        if rows:
            logger.info("warehouse: copied %d events into %d files", rows, files)
        return SyncResult(rows=rows, files=files)

    def _due(self, pending: dict[int, tuple[int, int]]) -> bool:
        if sum(end - start for start, end in pending.values()) >= self.flush_rows:
            return True
        oldest = min(
            (
                entries[0].appended_at
                for partition, (start, _) in pending.items()
                if (entries := self.log.read(partition, start, 1))
            ),
            default=None,
        )
        return oldest is not None and self._clock() - oldest >= self.flush_interval

    def _copy(self, pending: dict[int, tuple[int, int]]) -> tuple[int, int]:
        """Copy the pending ranges, every partition into the same files, in steps of at
        most `max_file_rows` rows; each step is one manifest change. (rows, files)."""
        rows = files = 0
        owners: dict[Identity, str | None] = {}
        positions = {partition: start for partition, (start, _) in pending.items()}
        while True:
            chunk: list[LogEntry] = []
            moved: dict[int, int] = {}
            for partition, (_, end) in sorted(pending.items()):
                position = positions[partition]
                while position < end and len(chunk) < self.max_file_rows:
                    page = self.log.read(partition, position, 5_000)
                    page = [entry for entry in page if entry.offset < end]
                    if not page:
                        position = end
                        break
                    chunk += page
                    position = page[-1].offset + 1
                if position != positions[partition]:
                    moved[partition] = positions[partition] = position
            if not moved:
                return rows, files
            table = events_table(self._row(entry, owners) for entry in chunk)
            files += len(self.warehouse.append_events(table, moved))
            rows += table.num_rows

    def _row(self, entry: LogEntry, owners: dict[Identity, str | None]) -> dict[str, object]:
        event = orjson.loads(entry.payload)
        if not isinstance(event, dict):
            event = {}
        profile_id = None
        for identity in self.resolver.extract(event):
            if identity not in owners:
                owners[identity] = self.profiles.find(identity)
            profile_id = owners[identity]
            if profile_id is not None:
                break
        return event_row(
            event, partition=entry.partition, offset=entry.offset, profile_id=profile_id
        )
