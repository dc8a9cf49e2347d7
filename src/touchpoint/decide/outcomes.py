"""The outcome joiner: joins outcome events to the decisions they name.

An outcome is an ordinary `track` event whose `properties.decision_id` names a
decision: `Decision Viewed` (a view), `Decision Clicked` (a click), or an event a
placement of that decision declares in its `conversion_events` (a conversion). The
joiner is the handler of its own consumer group (`outcomes`, see consumers/), following
`profiles`: it reads the log as the profile pipeline's gates left it (erased people's
events gone, events without analytics consent anonymized), and a decision log that
cannot take writes holds back only this group, never profile freshness. Most events are
not outcomes, so the check for `decision_id` comes before anything else.

Writes are keyed by the event's message id, so a batch delivered again after a
crash stores nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from touchpoint.core.clock import isoformat
from touchpoint.decide.decision_log.base import (
    CLICK_EVENT,
    VIEW_EVENT,
    DecisionLog,
    DecisionRecord,
    Outcome,
    OutcomeKind,
)
from touchpoint.definitions.store.base import DefinitionStore
from touchpoint.log.base import LogEntry
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.store.base import ProfileStore

logger = logging.getLogger(__name__)

OUTCOMES_GROUP = "outcomes"

_KINDS: dict[str, OutcomeKind] = {VIEW_EVENT: "view", CLICK_EVENT: "click"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _event_time(entry: LogEntry, event: Mapping[str, Any]) -> str:
    """The event's own time; its arrival time, or the log's, when it has none."""
    for key in ("timestamp", "receivedAt"):
        value = event.get(key)
        if isinstance(value, str) and value:
            return value
    return isoformat(datetime.fromtimestamp(entry.appended_at, UTC))


def _which_placement(
    records: Sequence[DecisionRecord], properties: Mapping[str, Any]
) -> DecisionRecord | None:
    """The record an outcome is about: the placement the event names, else the one showing
    the content it names, else the decision's only placement; None when it cannot tell."""
    named = properties.get("placement")
    if isinstance(named, str):
        for record in records:
            if record.placement == named:
                return record
    content_id = properties.get("content_id")
    if isinstance(content_id, str):
        for record in records:
            if record.content_id == content_id:
                return record
    return records[0] if len(records) == 1 else None


class OutcomeHandler:
    """Records outcome events in the decision log: the `outcomes` group's handler.

    Promises: idempotent (the same batch twice stores nothing new); one `record_outcomes`
    call per batch that has outcomes; each distinct decision id looked up once per batch,
    and only for events that can be outcomes (a view, a click, or an event some placement
    declares as a conversion), so clients may tag every event with its decision id.
    Events naming an unknown (never made, or erased) decision are ignored and counted in
    `unknown_decisions`. Anonymized events (the person has not consented to analytics) are
    ignored and counted in `skipped_anonymized`: joining one to its decision would tie it
    to the person again. An outcome's `profile_id` is the profile its identities belong to
    when it is joined (None when they belong to none).

    Conversions: an event is one when a placement of its decision declares the event's
    name in `conversion_events` (in the current definitions, reloaded when their version
    moves). When the event does not say which placement it converts, and exactly one of
    the decision's placements declares it, the conversion is that placement's; an event
    that names a placement not declaring it is not a conversion.
    """

    name = OUTCOMES_GROUP
    follows: str | None = "profiles"

    def __init__(
        self,
        decisions: DecisionLog,
        definitions: DefinitionStore,
        profiles: ProfileStore,
        resolver: IdentityResolver,
        *,
        group: str = OUTCOMES_GROUP,
        follows: str | None = "profiles",
    ) -> None:
        self.decisions = decisions
        self.definitions = definitions
        self.profiles = profiles
        self.resolver = resolver
        self.group = group
        self.follows = follows
        self.recorded = 0
        self.unknown_decisions = 0
        self.skipped_anonymized = 0
        self._version = -1
        self._conversions: dict[str, frozenset[str]] = {}
        self._conversion_names: frozenset[str] = frozenset()

    def _refresh(self) -> None:
        """Reload which events are conversions of which placement when definitions moved."""
        version = self.definitions.latest_version()
        if version != self._version:
            current = self.definitions.current()
            placements = current.definitions.placements if current is not None else []
            self._conversions = {
                placement.name: frozenset(placement.conversion_events)
                for placement in placements
                if placement.conversion_events
            }
            self._conversion_names = frozenset().union(*self._conversions.values())
            self._version = version

    def _profile_of(self, event: Mapping[str, Any]) -> str | None:
        """The profile the event's identities belong to now (None: no profile)."""
        for identity in self.resolver.extract(event):
            profile_id = self.profiles.find(identity)
            if profile_id is not None:
                return profile_id
        return None

    def handle(self, entries: Sequence[LogEntry]) -> None:
        """Join the batch's outcome events to their decisions and record them in one call."""
        candidates: list[tuple[LogEntry, dict[str, Any], str, str, dict[str, Any]]] = []
        for entry in entries:
            if b"decision_id" not in entry.payload:
                continue  # not an outcome: no need to decode it
            event = orjson.loads(entry.payload)
            if not isinstance(event, dict):
                continue
            properties = event.get("properties")
            if not isinstance(properties, dict):
                continue
            decision_id = properties.get("decision_id")
            if not isinstance(decision_id, str) or not decision_id:
                continue
            name = event.get("event")
            if event.get("type") != "track" or not isinstance(name, str):
                continue
            if event.get("anonymized") is True:
                self.skipped_anonymized += 1
                continue
            candidates.append((entry, event, decision_id, name, properties))
        if not candidates:
            return
        self._refresh()
        conversions, conversion_names = self._conversions, self._conversion_names
        known: dict[str, list[DecisionRecord]] = {}
        outcomes: list[Outcome] = []
        for entry, event, decision_id, name, properties in candidates:
            kind = _KINDS.get(name)
            if kind is None and name not in conversion_names:
                continue  # an ordinary event that happens to carry a decision id
            records = known.get(decision_id)
            if records is None:
                records = known[decision_id] = self.decisions.get(decision_id)
            if not records:
                self.unknown_decisions += 1
                logger.debug("outcome %s names unknown decision %s", name, decision_id)
                continue
            record = _which_placement(records, properties)
            value: float | None = None
            if kind is None:
                declaring = [r for r in records if name in conversions.get(r.placement, ())]
                if not declaring or (record is not None and record not in declaring):
                    continue
                if record is None and len(declaring) == 1:
                    record = declaring[0]
                kind = "conversion"
                value = _number(properties.get("value"))
                if value is None:
                    value = _number(properties.get("revenue"))
            outcomes.append(
                Outcome(
                    message_id=entry.message_id,
                    decision_id=decision_id,
                    placement=record.placement if record is not None else None,
                    content_id=record.content_id if record is not None else None,
                    kind=kind,
                    event=name,
                    profile_id=self._profile_of(event),
                    at=_event_time(entry, event),
                    value=value,
                )
            )
        if outcomes:
            self.recorded += self.decisions.record_outcomes(outcomes)
