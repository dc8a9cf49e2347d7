"""The stream processor: turns the event log into profiles, features and segment changes.

Each run reads every owned partition from its committed offset, applies what it
read in ONE profile-store transaction (partition after partition, in offset order),
and only then commits the new log positions. A crash between the two re-applies
the batch on restart, which changes nothing: `record_event` refuses a message id
already on a timeline. That is what makes replay from any committed offset
idempotent, and what lets the SQLite profile store run with `synchronous=NORMAL`.

Within a batch a person's profile is loaded and saved once, however many events
they sent; their identities go through the resolution rules once, then are
remembered until a merge; segments are re-evaluated once per changed profile, at
the end. An event that raises is isolated (each partition's part is re-run alone,
and a failing one one event per transaction), logged and skipped, so one poison
event never blocks its partition. A store that cannot take writes (`Unavailable`)
is different: nothing is skipped, the batch is retried later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from touchpoint.collect.events import event_name
from touchpoint.config.workspace import TouchpointConfig
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.consent import ANALYTICS
from touchpoint.core.errors import Unavailable
from touchpoint.log.base import EventLog, LogEntry, LogRewrite
from touchpoint.log.coordination import PartitionCoordinator, member_name
from touchpoint.profiles.features import FeatureEngine, event_time
from touchpoint.profiles.fields import (
    anonymize_event,
    apply_profile_fields,
    consent_record,
    consent_update,
)
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.sinks import AppliedEvent, EventSink
from touchpoint.profiles.store.base import ProfileStore, ProfileWriter, TimelineEvent
from touchpoint.profiles.view import profile_document
from touchpoint.segments.realtime import SegmentEvaluator
from touchpoint.stream.batch import Batch, Counts, Decoded

logger = logging.getLogger(__name__)

_TOMB_MEMO_SIZE = 65_536
_MAX_BACKOFF = 5.0  # seconds between retries while a store or the log is down


class StreamProcessor:
    """Consumes the event log for one consumer group and keeps the profile store current.

    Counters (plain numbers, for metrics): `processed` (events applied), `skipped_no_identity`,
    `duplicates` (already applied: replays), `merges`, `failed` (poison events skipped),
    `segment_changes`, and `last_applied_at` (epoch seconds of the last committed batch, 0.0
    before the first). `clock` gives "now" for windowed features, segment evaluation and
    `entered_at`. `segment_refresh_seconds`: how often `run_forever` sweeps time-dependent
    segments.
    """

    def __init__(
        self,
        config: TouchpointConfig,
        log: EventLog,
        store: ProfileStore,
        *,
        group: str = "profiles",
        partitions: Sequence[int] | None = None,
        segment_refresh_seconds: float = 300.0,
        idle_wait_seconds: float = 0.25,
        clock: Callable[[], datetime] = utcnow,
        sinks: Sequence[EventSink] = (),
        tombstone_key: Callable[[Identity], str] | None = None,
        consumer: str | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.store = store
        self.group = group
        self.partitions: tuple[int, ...] = tuple(
            range(log.partitions) if partitions is None else partitions
        )
        for partition in self.partitions:
            if not 0 <= partition < log.partitions:
                raise ValueError(
                    f"partition {partition} is not in the log (0..{log.partitions - 1})"
                )
        self.resolver = IdentityResolver(config.identity)
        self.engine = FeatureEngine(config.features)
        self.segments = SegmentEvaluator(
            config.segments, time_dependent_features=self.engine.time_dependent
        )
        self.segment_refresh_seconds = segment_refresh_seconds
        self.idle_wait_seconds = idle_wait_seconds
        self._clock = clock
        self.sinks = tuple(sinks)
        self._tombstone_key = tombstone_key
        self.consumer = consumer or member_name()
        self.coordinator: PartitionCoordinator | None = None
        self._unclaimed = set(self.partitions)
        self._tomb_memo: dict[Identity, str] = {}
        self._analytics_by_default = config.consent.allows({}, ANALYTICS)
        self._hidden_traits = self.resolver.pii_traits
        self._order_sensitive = self.engine.order_sensitive()
        self._run_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event: threading.Event | None = None
        self._running = False
        self.processed = 0
        self.skipped_no_identity = 0
        self.duplicates = 0
        self.merges = 0
        self.failed = 0
        self.segment_changes = 0
        self.erased_dropped = 0
        self.consent_suppressed = 0
        self.sink_failures = 0
        self.last_applied_at = 0.0
        self.failure: str | None = None
        self.failing_since: str | None = None

    # -- consuming ----------------------------------------------------------------------------

    def run_once(self, max_records: int = 1000) -> int:
        """Process up to `max_records` entries of each owned partition; the number handled.

        Every entry handled is past the committed position afterwards: applied, a replay,
        without identity, or a poison event that was skipped and logged. The partitions'
        entries are applied in one profile-store transaction (partition by partition, in
        offset order, as separate batches would), then each partition's position is
        committed: one commit instead of one per partition.
        """
        with self._run_lock:
            if self.coordinator is not None:
                self._rebalance(self.coordinator)
            elif self._unclaimed:
                # Alone on its partitions: what an earlier consumer was delivered and did not
                # commit (it stopped, or was killed) is this one's to process first.
                for partition in sorted(self._unclaimed):
                    self.log.claim(self.group, self.consumer, partition)
                self._unclaimed = set()
            batches: list[list[LogEntry]] = []
            for partition in self.partitions:
                read = self.log.poll(self.group, self.consumer, partition, max_records)
                if read:
                    batches.append(read)
            if not batches:
                return 0
            entries = [entry for batch in batches for entry in batch]
            try:
                self._add(self._apply_batch(entries))
            except Unavailable:
                raise
            except Exception:
                if len(batches) == 1:
                    self._isolate(batches[0])
                else:
                    logger.info("a batch of %d partitions failed; re-running each", len(batches))
                    for batch in batches:
                        try:
                            self._add(self._apply_batch(batch))
                        except Unavailable:
                            raise
                        except Exception:
                            self._isolate(batch)
            self.log.commit_many(
                self.group, {batch[-1].partition: batch[-1].offset + 1 for batch in batches}
            )
            self.last_applied_at = time.time()
            return len(entries)

    # -- sharing partitions with other workers --------------------------------------------------

    def coordinate(self, coordinator: PartitionCoordinator) -> None:
        """From now on, process only the partitions `coordinator` assigns this member (other
        workers of the group take the rest); they are settled before every batch."""
        if coordinator.group != self.group:
            raise ValueError(f"the coordinator is for group {coordinator.group}, not {self.group}")
        with self._run_lock:
            self.coordinator = coordinator
            self.consumer = coordinator.member
            self.partitions = ()

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
                logger.info("took over %d uncommitted entries of partition %d", moved, partition)

    def _isolate(self, entries: Sequence[LogEntry]) -> None:
        """Re-run a failed partition batch one event per transaction, skipping poison events."""
        logger.warning(
            "a batch of partition %d failed; re-running it one event at a time",
            entries[0].partition,
            exc_info=True,
        )
        for entry in entries:
            self._apply_alone(entry)

    def _apply_alone(self, entry: LogEntry) -> None:
        try:
            self._add(self._apply_batch([entry]))
        except Unavailable:
            raise
        except Exception as error:
            self.failed += 1
            logger.error(
                "skipped a poison event: message %s, partition %d, offset %d, %s",
                entry.message_id,
                entry.partition,
                entry.offset,
                type(error).__name__,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )

    def _add(self, counts: Counts) -> None:
        self.processed += counts.processed
        self.skipped_no_identity += counts.skipped_no_identity
        self.duplicates += counts.duplicates
        self.merges += counts.merges
        self.segment_changes += counts.segment_changes
        self.erased_dropped += counts.erased_dropped
        self.consent_suppressed += counts.consent_suppressed

    def _apply_batch(self, entries: Iterable[LogEntry]) -> Counts:
        """Apply entries in one transaction, then clean the log and feed the sinks; the counts
        are only valid if all of that succeeded."""
        decoded = [self._decode(entry) for entry in entries]
        with self.store.transaction() as writer:
            batch = Batch(writer)
            batch.tombstoned = self._find_tombstoned(writer, decoded)
            writer.expect_events(
                [item.event.get("messageId") or item.entry.message_id for item in decoded]
            )
            self._prefetch(batch, decoded)
            for item in decoded:
                self._apply_entry(batch, item)
            self._finish(batch)
        self._after_commit(batch)
        return batch.counts

    def _decode(self, entry: LogEntry) -> Decoded:
        event = orjson.loads(entry.payload)
        if not isinstance(event, dict):
            raise ValueError("a stored event must be a JSON object")
        return Decoded(
            entry, event, self.resolver.extract(event), self.resolver.previous_identities(event)
        )

    def _tomb(self, identity: Identity) -> str:
        key = self._tomb_memo.get(identity)
        if key is None:
            assert self._tombstone_key is not None
            if len(self._tomb_memo) >= _TOMB_MEMO_SIZE:
                self._tomb_memo.clear()
            key = self._tomb_memo[identity] = self._tombstone_key(identity)
        return key

    def _find_tombstoned(self, writer: ProfileWriter, decoded: Sequence[Decoded]) -> set[str]:
        """The tombstone keys among the batch's identities: one query per batch."""
        if self._tombstone_key is None:
            return set()
        keys = {self._tomb(identity) for item in decoded for identity in item.identities}
        keys.update(self._tomb(identity) for item in decoded for identity in item.previous)
        return writer.tombstoned(keys) if keys else set()

    def _prefetch(self, batch: Batch, decoded: Sequence[Decoded]) -> None:
        """Resolve the batch's identities to the profiles they already belong to and load
        those at once (one round trip on a server store instead of one per person)."""
        identities = [
            identity
            for item in decoded
            if not self._erased(batch, item)
            for identity in (*item.identities, *item.previous)
        ]
        if identities:
            owners = set(batch.writer.find_many(identities).values())
            batch.profiles.update(batch.writer.load_many(owners - batch.profiles.keys()))

    def _erased(self, batch: Batch, item: Decoded) -> bool:
        if not batch.tombstoned:
            return False
        return any(
            self._tomb(identity) in batch.tombstoned
            for identity in (*item.identities, *item.previous)
        )

    def _after_commit(self, batch: Batch) -> None:
        """Rewrite or erase what the gates said must not stay in the log, then hand the batch
        to the sinks. A sink that cannot write now (`Unavailable`) makes the whole batch come
        back later; any other sink failure is logged and counted, not retried."""
        if batch.rewrites:
            self.log.rewrite(batch.rewrites)
        if batch.erase_messages:
            self.log.erase(message_ids=batch.erase_messages)
        if not batch.applied:
            return
        for sink in self.sinks:
            try:
                sink.write(batch.applied)
            except Unavailable:
                raise
            except Exception:
                self.sink_failures += 1
                logger.exception("the %s sink failed on a batch; it is skipped", sink.name)

    def _apply_entry(self, batch: Batch, item: Decoded) -> None:
        entry, event = item.entry, item.event
        identities, previous = item.identities, item.previous
        if not identities and not previous:
            batch.counts.skipped_no_identity += 1
            batch.applied.append(AppliedEvent(entry, event, None))
            return
        if self._erased(batch, item):
            batch.counts.erased_dropped += 1
            batch.erase_messages.append(entry.message_id)
            return
        moment = event_time(event) or isoformat(datetime.fromtimestamp(entry.appended_at, UTC))
        update = consent_update(event)
        if self._analytics_by_default is False and not self._opted_in(batch, item, update):
            self._suppress(batch, item)
            return
        message_id = event.get("messageId") or entry.message_id
        key = None if previous else tuple(identities)
        found = None if key is None else batch.resolved.get(key)
        profile_id = (
            found
            if found is not None
            else self._resolve(batch, event, key, message_id, identities, previous, moment)
        )
        profile = batch.profile(profile_id)
        encoded: bytes | None = entry.payload
        if not self._allows_analytics(profile, update, moment):
            if update is None:
                self._suppress(batch, item)
                return
            # A consent change is the record of the person's choice: kept, reduced to it.
            event = consent_record(event, update)
            encoded = orjson.dumps(event)
            batch.rewrites.append(LogRewrite(entry.partition, entry.offset, entry.key, encoded))
        timeline_event = TimelineEvent(
            message_id=message_id,
            timestamp=moment,
            type=str(event.get("type")),
            name=event_name(event),
            event=event,
            encoded=encoded,
        )
        if not batch.writer.record_event(profile_id, timeline_event):
            batch.counts.duplicates += 1
            batch.applied.append(AppliedEvent(entry, event, profile_id, duplicate=True))
            return
        batch.counts.processed += 1
        batch.applied.append(AppliedEvent(entry, event, profile_id))
        batch.dirty[profile_id] = None
        if profile_id in batch.recompute_all:
            return  # rebuilt from the whole timeline at the end of the batch
        late = profile.last_event_at is not None and moment < profile.last_event_at
        apply_profile_fields(profile, event, moment, self._hidden_traits)
        if late and self._order_sensitive:
            batch.recompute_features.add(profile_id)
        elif profile_id not in batch.recompute_features:
            self.engine.apply(profile.features, event)

    # -- consent ------------------------------------------------------------------------------

    def _allows_analytics(
        self, profile: Profile, update: dict[str, bool] | None, moment: str
    ) -> bool:
        """Whether the person consents to analytics once this event's own choice (if any, and
        if it is not older than the choice on record) is taken into account."""
        consent: Mapping[str, bool] = profile.consent
        if (
            update is not None
            and ANALYTICS in update
            and moment >= profile.consent_times.get(ANALYTICS, "")
        ):
            consent = {**profile.consent, ANALYTICS: update[ANALYTICS]}
        return self.config.consent.allows(consent, ANALYTICS)

    def _opted_in(self, batch: Batch, item: Decoded, update: dict[str, bool] | None) -> bool:
        """Where analytics is denied by default: whether this event grants it, or a profile
        it would join has granted it. Checked before resolution, so an event of a person who
        never opted in creates nothing."""
        if update is not None and update.get(ANALYTICS) is True:
            return True
        known = batch.writer.find_many([*item.identities, *item.previous])
        return any(
            batch.profile(profile_id).consent.get(ANALYTICS) is True
            for profile_id in set(known.values())
        )

    def _suppress(self, batch: Batch, item: Decoded) -> None:
        """Keep an event without analytics consent only anonymized, or drop it (config)."""
        batch.counts.consent_suppressed += 1
        entry = item.entry
        if self.config.consent.without_analytics == "drop":
            batch.erase_messages.append(entry.message_id)
            return
        anonymized = anonymize_event(item.event)
        payload = orjson.dumps(anonymized)
        batch.rewrites.append(LogRewrite(entry.partition, entry.offset, "", payload))
        batch.applied.append(AppliedEvent(entry, anonymized, None))

    def _resolve(
        self,
        batch: Batch,
        event: Mapping[str, Any],
        key: tuple[Identity, ...] | None,
        message_id: str,
        identities: list[Identity],
        previous: list[Identity],
        moment: str,
    ) -> str:
        """Resolve through the identity rules; remember the outcome when all identities
        now sit on the one profile, so the person's next events skip the rules."""
        received = event.get("receivedAt")
        resolution = self.resolver.resolve(
            batch.writer,
            identities,
            message_id=message_id,
            at=received if isinstance(received, str) and received else moment,
            previous=previous,
            cache=batch.profiles,
        )
        profile_id = resolution.profile_id
        if resolution.skipped:
            logger.debug("message %s: identities skipped %s", message_id, resolution.skipped)
        if resolution.merged:
            batch.resolved.clear()
            batch.counts.merges += len(resolution.merged)
            for merged_id in resolution.merged:
                batch.dirty.pop(merged_id, None)
                batch.recompute_features.discard(merged_id)
                batch.recompute_all.discard(merged_id)
            batch.recompute_all.add(profile_id)
            batch.dirty[profile_id] = None
        if key is not None and not resolution.skipped:
            batch.resolved[key] = profile_id
        return profile_id

    def _finish(self, batch: Batch) -> None:
        """Recompute what must be, re-evaluate segments and save every changed profile."""
        now = self._clock()
        evaluate = bool(self.segments.names)
        for profile_id in batch.dirty:
            profile = batch.profiles[profile_id]
            if profile_id in batch.recompute_all:
                self._rebuild(profile, batch.writer)
            elif profile_id in batch.recompute_features:
                events = [item.event for item in batch.writer.timeline(profile_id)]
                profile.features = self.engine.recompute(events)
            if evaluate:
                document = profile_document(profile, self.engine, now)
                batch.counts.segment_changes += self.segments.update_memberships(
                    batch.writer, profile, document, now
                )
            batch.writer.save(profile)

    def _rebuild(self, profile: Profile, writer: ProfileWriter) -> None:
        """Everything the timeline determines, from scratch (after a merge)."""
        profile.first_seen = profile.last_seen = profile.last_event_at = None
        profile.traits, profile.trait_times = {}, {}
        profile.consent, profile.consent_times = {}, {}
        events = []
        for item in writer.timeline(profile.profile_id):
            apply_profile_fields(profile, item.event, item.timestamp, self._hidden_traits)
            events.append(item.event)
        profile.features = self.engine.recompute(events)

    def refresh_segments(self, now: datetime | None = None) -> int:
        """Sweep time-dependent segments now (what `run_forever` does periodically)."""
        with self._run_lock:
            changes = self.segments.refresh_time_dependent(
                self.store, self.engine, now or self._clock()
            )
        self.segment_changes += changes
        return changes

    # -- running ------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, waking within milliseconds of an append.

        Store or log failures are logged and retried with a growing pause (up to 5 s), so
        the processor resumes by itself within seconds of a server coming back.
        """
        self._running = True
        try:
            self._consume(stop)
        finally:
            self._running = False
            if self.coordinator is not None:
                self.coordinator.leave()
                self.partitions = ()

    def _consume(self, stop: threading.Event) -> None:
        backoff = 0.5
        next_refresh = time.monotonic() + self.segment_refresh_seconds
        while not stop.is_set():
            try:
                handled = self.run_once()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self.segment_refresh_seconds
                    self.refresh_segments()
            except Exception as error:
                logger.exception("the stream processor failed; retrying in %.1f s", backoff)
                self.failure = f"{type(error).__name__}: {error}"[:500]
                if self.failing_since is None:
                    self.failing_since = isoformat(self._clock())
                stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            if self.failure is not None:
                logger.warning("the stream processor recovered from: %s", self.failure)
                self.failure = self.failing_since = None
            backoff = 0.5
            if handled == 0:
                self.log.wait_for_append(self.idle_wait_seconds)

    @property
    def failing(self) -> bool:
        """Whether the last attempt of `run_forever` failed (a store full or unreachable):
        `failure` says why, `failing_since` since when. It clears on the
        first batch that goes through."""
        return self.failure is not None

    @property
    def running(self) -> bool:
        """Whether `run_forever` is consuming now (in a thread of `start()` or the caller's)."""
        return self._running

    def start(self) -> None:
        """Run in a daemon thread (no-op if already running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_event = threading.Event()
        self._running = True  # so a health check right after start() says so
        self._thread = threading.Thread(
            target=self.run_forever, args=(self._stop_event,), name="stream-processor", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the thread to stop after its current batch, and wait for it."""
        if self._stop_event is not None:
            self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def idle(self) -> bool:
        """True when every owned partition is processed up to its end (no lag)."""
        return all(
            not self.log.read(partition, self.log.committed(self.group, partition), 1)
            for partition in self.partitions
        )

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until `idle()` (for tests and the demo); False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True
