"""The profile pipeline: turns the event log into profiles, features and segment changes.

It is the handler of the `profiles` consumer group (see consumers/): the consumer polls,
commits and isolates poison entries; this module applies a batch. A batch is applied in
ONE profile-store transaction (partition after partition, in offset order), and the
consumer commits the new log positions only after `handle` returns. A crash between the
two re-applies the batch on restart, which changes nothing: `record_event` refuses a
message id already on a timeline. That is what makes replay from any committed offset
idempotent, and what lets the SQLite profile store run with `synchronous=NORMAL`.

Within a batch a person's profile is loaded and saved once, however many events
they sent; their identities go through the resolution rules once, then are
remembered until a merge; segments are re-evaluated once per changed profile, at
the end. After the commit the log is cleaned as the gates demand (erased people's
events deleted, events without analytics consent rewritten anonymized), so every
group that follows `profiles` reads only what may be kept. A store that cannot take
writes raises `Unavailable`: the consumer retries the batch later, nothing skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from touchpoint.collect.events import event_name
from touchpoint.config.workspace import TouchpointConfig
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.consent import ANALYTICS
from touchpoint.log.base import EventLog, LogEntry, LogRewrite
from touchpoint.profiles.features import FeatureEngine, event_time
from touchpoint.profiles.fields import (
    anonymize_event,
    apply_profile_fields,
    consent_record,
    consent_update,
)
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.base import ProfileStore, ProfileWriter, TimelineEvent
from touchpoint.profiles.view import profile_document
from touchpoint.segments.realtime import SegmentEvaluator
from touchpoint.stream.batch import Batch, Counts, Decoded

logger = logging.getLogger(__name__)

_TOMB_MEMO_SIZE = 65_536


class ProfilePipeline:
    """Keeps the profile store current from the log: the `profiles` group's handler.

    Counters (plain numbers, for metrics): `processed` (events applied),
    `skipped_no_identity`, `duplicates` (already applied: replays), `merges`,
    `segment_changes`, `erased_dropped`, `consent_suppressed`. `clock` gives "now" for
    windowed features, segment evaluation and `entered_at`. Every `tick_seconds`
    (`segment_refresh_seconds`) the consumer calls `tick`, which sweeps time-dependent
    segments. `resolver`, `features` and `segments` are the workspace's (built from `config`
    when not given, for a pipeline used on its own).
    """

    name = "profiles"
    follows: str | None = None

    def __init__(
        self,
        config: TouchpointConfig,
        log: EventLog,
        store: ProfileStore,
        *,
        group: str = "profiles",
        resolver: IdentityResolver | None = None,
        features: FeatureEngine | None = None,
        segments: SegmentEvaluator | None = None,
        segment_refresh_seconds: float = 300.0,
        clock: Callable[[], datetime] = utcnow,
        tombstone_key: Callable[[Identity], str] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.store = store
        self.group = group
        self.resolver = resolver or IdentityResolver(config.identity)
        self.engine = features or FeatureEngine(config.features)
        self.segments = segments or SegmentEvaluator(
            config.segments, time_dependent_features=self.engine.time_dependent
        )
        self.tick_seconds = segment_refresh_seconds
        self._clock = clock
        self._tombstone_key = tombstone_key
        self._tomb_memo: dict[Identity, str] = {}
        self._analytics_by_default = config.consent.allows({}, ANALYTICS)
        self._hidden_traits = self.resolver.pii_traits
        self._order_sensitive = self.engine.order_sensitive()
        self._lock = threading.Lock()
        self.processed = 0
        self.skipped_no_identity = 0
        self.duplicates = 0
        self.merges = 0
        self.segment_changes = 0
        self.erased_dropped = 0
        self.consent_suppressed = 0

    def handle(self, entries: Sequence[LogEntry]) -> None:
        """Apply the entries in one profile-store transaction, then clean the log; the
        counters move only if all of that succeeded."""
        with self._lock:
            self._add(self._apply_batch(entries))

    def tick(self) -> int:
        """The periodic sweep of time-dependent segments (see `refresh_segments`)."""
        return self.refresh_segments()

    def _add(self, counts: Counts) -> None:
        self.processed += counts.processed
        self.skipped_no_identity += counts.skipped_no_identity
        self.duplicates += counts.duplicates
        self.merges += counts.merges
        self.segment_changes += counts.segment_changes
        self.erased_dropped += counts.erased_dropped
        self.consent_suppressed += counts.consent_suppressed

    def _apply_batch(self, entries: Iterable[LogEntry]) -> Counts:
        """Apply entries in one transaction, then clean the log; the counts are only valid if
        all of that succeeded."""
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
        """Rewrite or erase what the gates said must not stay in the log (before the consumer
        commits, so no following group ever reads it)."""
        if batch.rewrites:
            self.log.rewrite(batch.rewrites)
        if batch.erase_messages:
            self.log.erase(message_ids=batch.erase_messages)

    def _apply_entry(self, batch: Batch, item: Decoded) -> None:
        entry, event = item.entry, item.event
        identities, previous = item.identities, item.previous
        if not identities and not previous:
            batch.counts.skipped_no_identity += 1
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
            return
        batch.counts.processed += 1
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
        """Sweep time-dependent segments now (what `tick` does periodically); the changes."""
        with self._lock:
            changes = self.segments.refresh_time_dependent(
                self.store, self.engine, now or self._clock()
            )
        self.segment_changes += changes
        return changes
