"""Copy the event log into the warehouse, behind the profile pipeline.

The writer is the handler of its own consumer group (`warehouse`, see consumers/),
following `profiles`: it reads each partition only up to the profile pipeline's committed
position. By then the pipeline has done what the gates demand to those entries: events
of erased people are gone from the log, events without analytics consent are rewritten
to their anonymized form. So the warehouse never sees what the profiles may not keep,
and the person each event was applied to (`profile_id`) is known.

The log is the buffer: nothing is held in memory between batches. The writer is an
accumulating handler: its consumer hands it the pending entries once there are at least
`flush_rows` of them or the oldest is `flush_interval` old, so files stay large under a
trickle of events. The warehouse's manifest records the files and the copied positions
in one change, and it is the truth about what was copied: entries below its position
are skipped, so a copy cut short by a crash is redone and nothing is copied twice, even
when the group's own position lags it. The warehouse lock makes copies of several
processes (serve, workers, `touchpoint warehouse sync`) and erasures take turns.
`run_once` copies everything pending at once, outside any consumer (the CLI, training).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from touchpoint.consumers.handler import Accumulate
from touchpoint.log.base import EventLog, LogEntry
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.model import Identity
from touchpoint.profiles.store.base import ProfileStore
from touchpoint.warehouse.schema import event_row, events_table
from touchpoint.warehouse.store import Warehouse

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one `run_once` copied: rows and files written, or why it did nothing
    (`skipped`: `empty`, nothing pending)."""

    rows: int = 0
    files: int = 0
    skipped: str | None = None


class WarehouseWriter:
    """Copies applied log entries into Parquet files: the `warehouse` group's handler (an
    accumulating one, see `accumulate`); see the module docstring."""

    name = "warehouse"

    def __init__(
        self,
        warehouse: Warehouse,
        log: EventLog,
        profiles: ProfileStore,
        resolver: IdentityResolver,
        *,
        group: str = "warehouse",
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
        self.group = group
        self.follow_group = follow_group
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.max_file_rows = max_file_rows
        self._clock = clock
        self.rows_written = 0
        self.last_sync_at = 0.0

    @property
    def follows(self) -> str | None:
        """The group this handler follows: the profile pipeline's."""
        return self.follow_group

    @property
    def accumulate(self) -> Accumulate:
        """Hand entries over once `flush_rows` are pending or the oldest is `flush_interval`
        old (read when the consumer decides, so a change of the attributes applies)."""
        return Accumulate(self.flush_rows, self.flush_interval)

    def handle(self, entries: Sequence[LogEntry]) -> None:
        """Copy the entries the manifest does not hold yet (under the warehouse lock, waiting
        for another process's copy or an erasure to finish), every partition into the same
        files, at most `max_file_rows` rows per file; each file is one manifest change."""
        with self.warehouse.lock(wait=True):
            copied = self.warehouse.manifest().positions
            fresh = [entry for entry in entries if entry.offset >= copied.get(entry.partition, 0)]
            rows = files = 0
            owners: dict[Identity, str | None] = {}
            for at in range(0, len(fresh), self.max_file_rows):
                chunk = fresh[at : at + self.max_file_rows]
                moved = {entry.partition: entry.offset + 1 for entry in chunk}
                table = events_table(self._row(entry, owners) for entry in chunk)
                files += len(self.warehouse.append_events(table, moved))
                rows += table.num_rows
        if rows:
            self.rows_written += rows
            self.last_sync_at = self._clock()
            logger.info("warehouse: copied %d events into %d files", rows, files)

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

    def run_once(self) -> SyncResult:
        """Copy everything pending now, whatever its size (`touchpoint warehouse sync`, and
        training before it reads), waiting for another process's copy or an erasure."""
        with self.warehouse.lock(wait=True):
            pending = self.pending()
            if not pending:
                return SyncResult(skipped="empty")
            rows, files = self._copy(pending)
        self.rows_written += rows
        self.last_sync_at = self._clock()
        if rows:
            logger.info("warehouse: copied %d events into %d files", rows, files)
        return SyncResult(rows=rows, files=files)

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
