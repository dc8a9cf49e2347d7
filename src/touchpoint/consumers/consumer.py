"""The generic consumer of the event log: one consumer group, the partitions it owns, a
handler.

A step settles which partitions this member owns (alone, or through a
`PartitionCoordinator` shared with the group's other workers), polls each owned
partition from the group's position, hands everything read to the handler in one call,
and only then commits the new positions in one write. A consumer whose handler follows
another group reads by position instead, from its group's position up to the followed
group's (`EventLog.read`, several pages if its batch is large). A crash in between
handing over and committing hands the batch over again, which is why handlers are
idempotent.

A batch that raises `Unavailable` is retried later whole, nothing skipped; any other
error means a poison entry: each partition's part is re-run alone, a failing part one
entry at a time, and only the entries that still fail are logged, counted (`failed`) and
skipped, so one poison entry never blocks its partition. The thread, backoff and failure
reporting come from `core.background.BackgroundLoop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from touchpoint.consumers.handler import Accumulate, Accumulating, Handler, Ticking
from touchpoint.core.background import BackgroundLoop
from touchpoint.core.clock import utcnow
from touchpoint.core.errors import Unavailable
from touchpoint.log.base import EventLog, LogEntry
from touchpoint.log.coordination import PartitionCoordinator, member_name

logger = logging.getLogger(__name__)

# Per owned partition: the group's position and the bound it may read up to (None: the end).
Ranges = Mapping[int, tuple[int, int | None]]


class LogConsumer(BackgroundLoop):
    """Feeds one handler the log entries of its consumer group; see the module docstring.

    Counters: `handled` (entries past the committed position, poison ones included),
    `failed` (poison entries skipped), `last_handled_at` (epoch seconds by `time` of the last
    committed batch; 0.0 before the first). `idle_wait_seconds`: how long a step that found
    nothing waits; a consumer that reads the log's end wakes at once on an append in this
    process, one that follows another group waits the full time (appends give it nothing).
    """

    def __init__(
        self,
        log: EventLog,
        handler: Handler,
        *,
        partitions: Sequence[int] | None = None,
        max_records: int = 1000,
        idle_wait_seconds: float = 0.25,
        clock: Callable[[], datetime] = utcnow,
        time: Callable[[], float] = time.time,
        consumer: str | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self.name = f"consumer-{handler.name}"
        self.log = log
        self.handler = handler
        self.group = handler.group
        self.follows = handler.follows
        if self.follows == self.group:
            raise ValueError(f"group {self.group} cannot follow itself")
        self.partitions: tuple[int, ...] = tuple(
            range(log.partitions) if partitions is None else partitions
        )
        for partition in self.partitions:
            if not 0 <= partition < log.partitions:
                raise ValueError(
                    f"partition {partition} is not in the log (0..{log.partitions - 1})"
                )
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.max_records = max_records
        self.idle_wait_seconds = idle_wait_seconds
        self._time = time
        self.consumer = consumer or member_name()
        self.coordinator: PartitionCoordinator | None = None
        self._unclaimed = set(self.partitions)
        self._run_lock = threading.Lock()
        self._ticking = handler if isinstance(handler, Ticking) else None
        self._next_tick: float | None = None
        self._accumulating = handler if isinstance(handler, Accumulating) else None
        self._draining = False
        self.handled = 0
        self.failed = 0
        self.last_handled_at = 0.0

    # -- one step -----------------------------------------------------------------------------

    def run_once(self, max_records: int | None = None) -> int:
        """Hand up to `max_records` (default: the consumer's) entries of each owned partition
        to the handler, then commit; the number of entries handled (0: nothing to do, or an
        accumulating handler's entries are not due yet).

        Every entry handled is past the committed position afterwards: applied, or a poison
        entry that was skipped and logged."""
        limit = max_records or self.max_records
        with self._run_lock:
            self._settle_partitions()
            ranges = self._ranges()
            # Read at every step, so a handler may change what it wants.
            accumulate = None if self._accumulating is None else self._accumulating.accumulate
            if accumulate is not None and not self._draining and not self._due(accumulate, ranges):
                return 0
            batches: list[list[LogEntry]] = []
            for partition, (start, bound) in ranges.items():
                if bound is None:
                    read = self.log.poll(self.group, self.consumer, partition, limit)
                else:
                    read = self._read_range(partition, start, bound, limit)
                if read:
                    batches.append(read)
            self._draining = accumulate is not None and any(
                len(batch) >= limit for batch in batches
            )
            if not batches:
                return 0
            self._handle(batches)
            self.log.commit_many(
                self.group, {batch[-1].partition: batch[-1].offset + 1 for batch in batches}
            )
            count = sum(len(batch) for batch in batches)
            self.handled += count
            self.last_handled_at = self._time()
            return count

    def step(self) -> int:
        """One batch, then the handler's periodic work when it is due. A following consumer
        that read less than a full batch then rests `idle_wait_seconds`: chasing every small
        commit of the group it follows would cost a round of reads and a commit each time
        (on Redis, several round trips per partition), for no gain in what it writes."""
        done = self.run_once()
        if self.follows is not None and 0 < done < self.max_records:
            self.pause(self.idle_wait_seconds)
        if self._ticking is not None:
            now = time.monotonic()
            if self._next_tick is None:
                self._next_tick = now + self._ticking.tick_seconds
            elif now >= self._next_tick:
                self._next_tick = now + self._ticking.tick_seconds
                self.tick()
        return done

    def tick(self) -> int:
        """Run the handler's periodic work now (what `step` does when it is due); 0 for a
        handler without any."""
        if self._ticking is None:
            return 0
        with self._run_lock:
            return self._ticking.tick()

    def wait(self, stop: threading.Event) -> None:
        """Wait for an append (or `idle_wait_seconds`); a following consumer waits it out."""
        if self.follows is None:
            self.log.wait_for_append(self.idle_wait_seconds)
        else:
            stop.wait(self.idle_wait_seconds)

    def _ranges(self) -> dict[int, tuple[int, int | None]]:
        """The owned partitions with something to read: the group's position and bound."""
        found: dict[int, tuple[int, int | None]] = {}
        for partition in self.partitions:
            if self.follows is None and self._accumulating is None:
                # Read through the group's deliveries (`poll`): its position is not needed,
                # and on Redis reading it would be one more round trip per partition.
                found[partition] = (0, None)
                continue
            start = self.log.committed(self.group, partition)
            if self.follows is None:
                found[partition] = (start, None)
                continue
            bound = self.log.committed(self.follows, partition)
            if bound > start:
                found[partition] = (start, bound)
        return found

    def _read_range(self, partition: int, start: int, bound: int, limit: int) -> list[LogEntry]:
        """Up to `limit` entries of `partition` in `[start, bound)`, read by position: a
        following group's bound is a committed position, so it reads the log by offset
        (several pages if need be) rather than through the backend's deliveries."""
        found: list[LogEntry] = []
        position = start
        while position < bound and len(found) < limit:
            page = self.log.read(partition, position, min(5_000, limit - len(found)))
            page = [entry for entry in page if entry.offset < bound]
            if not page:
                break
            found += page
            position = page[-1].offset + 1
        return found

    def _due(self, accumulate: Accumulate, ranges: Ranges) -> bool:
        """Whether an accumulating handler's pending entries are enough or old enough."""
        pending = 0
        for partition, (start, bound) in ranges.items():
            end = self.log.end_offset(partition) if bound is None else bound
            pending += max(0, end - start)
        if pending == 0:
            return False
        if pending >= accumulate.min_entries:
            return True
        oldest = min(
            (
                entries[0].appended_at
                for partition, (start, bound) in ranges.items()
                if (entries := self.log.read(partition, start, 1))
                and (bound is None or entries[0].offset < bound)
            ),
            default=None,
        )
        return oldest is not None and self._time() - oldest >= accumulate.max_age_seconds

    # -- poison isolation ---------------------------------------------------------------------

    def _handle(self, batches: Sequence[Sequence[LogEntry]]) -> None:
        """Hand the batch over; on a poison entry, narrow down to it (see module docstring)."""
        try:
            self.handler.handle([entry for batch in batches for entry in batch])
            return
        except Unavailable:
            raise
        except Exception:
            if len(batches) == 1:
                self._isolate(batches[0])
                return
            logger.info(
                "%s: a batch of %d partitions failed; re-running each", self.name, len(batches)
            )
        for batch in batches:
            try:
                self.handler.handle(batch)
            except Unavailable:
                raise
            except Exception:
                self._isolate(batch)

    def _isolate(self, entries: Sequence[LogEntry]) -> None:
        """Re-run a failed partition batch one entry at a time, skipping poison entries."""
        logger.warning(
            "%s: a batch of partition %d failed; re-running it one entry at a time",
            self.name,
            entries[0].partition,
            exc_info=True,
        )
        for entry in entries:
            try:
                self.handler.handle([entry])
            except Unavailable:
                raise
            except Exception as error:
                self.failed += 1
                logger.error(
                    "%s skipped a poison entry: message %s, partition %d, offset %d, %s",
                    self.name,
                    entry.message_id,
                    entry.partition,
                    entry.offset,
                    type(error).__name__,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )

    # -- sharing partitions with other workers ------------------------------------------------

    def coordinate(self, coordinator: PartitionCoordinator) -> None:
        """From now on, process only the partitions `coordinator` assigns this member (other
        workers of the group take the rest); they are settled before every batch."""
        if coordinator.group != self.group:
            raise ValueError(f"the coordinator is for group {coordinator.group}, not {self.group}")
        with self._run_lock:
            self.coordinator = coordinator
            self.consumer = coordinator.member
            self.partitions = ()

    def _settle_partitions(self) -> None:
        if self.coordinator is not None:
            self._rebalance(self.coordinator)
        elif self._unclaimed:
            # Alone on its partitions: what an earlier consumer was delivered and did not
            # commit (it stopped, or was killed) is this one's to process first.
            for partition in sorted(self._unclaimed):
                self.log.claim(self.group, self.consumer, partition)
            self._unclaimed = set()

    def _rebalance(self, coordinator: PartitionCoordinator) -> None:
        """Refresh the membership; take over what newly assigned partitions' previous owners
        were delivered and did not commit, so it is processed (again, idempotently) first."""
        try:
            gained, _ = coordinator.refresh()
        finally:
            self.partitions = tuple(sorted(coordinator.owned))
        for partition in sorted(gained):
            moved = self.log.claim(self.group, self.consumer, partition)
            if moved:
                logger.info(
                    "%s took over %d uncommitted entries of partition %d",
                    self.name,
                    moved,
                    partition,
                )

    def stopped(self) -> None:
        """Leave the group on a clean stop, so the others take the partitions at once."""
        if self.coordinator is not None:
            self.coordinator.leave()
            self.partitions = ()

    # -- state --------------------------------------------------------------------------------

    def idle(self) -> bool:
        """True when every owned partition is handled up to its end (or, following another
        group, up to that group's position)."""
        for partition in self.partitions:
            start = self.log.committed(self.group, partition)
            bound = None if self.follows is None else self.log.committed(self.follows, partition)
            if bound is not None and start >= bound:
                continue
            entries = self.log.read(partition, start, 1)
            if entries and (bound is None or entries[0].offset < bound):
                return False
        return True

    def lag(self) -> dict[int, int]:
        """Per partition of the log, how many offsets the group is behind the log's end (an
        upper bound; a following group cannot be closer than the group it follows)."""
        return self.log.lag(self.group)
